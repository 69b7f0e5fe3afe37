//! PostgreSQL, the same way in every service: one pool builder whose
//! sessions the server bounds ([`pool`]), and one call with a deadline
//! measured here ([`within`]), not only the server's `statement_timeout`:
//! behind a path that swallows packets (a dead NAT, a firewall that drops,
//! a hung pooler) an answer may never come, and the server's own timer
//! cannot help.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres};

/// Server-side bounds of every session of a pool: what the server ends by
/// itself when the client is slow, stuck or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionGuards {
    /// `statement_timeout`: a statement running longer fails.
    pub statement: Duration,
    /// `lock_timeout`: waiting longer for a row or table lock fails
    /// (`None`: bounded by the statement timeout only).
    pub lock: Option<Duration>,
    /// `idle_in_transaction_session_timeout`, and the sockets'
    /// `tcp_user_timeout`: the server ends a session that sits in an open
    /// transaction this long, or whose sent data stays unacknowledged this
    /// long. It must exceed the longest pause a live client makes inside a
    /// transaction. It is what ends the transactions of clients that are
    /// gone (killed, or cut off behind a path that still answers the
    /// server's keepalives, such as a pooler or proxy): their locks
    /// (row locks, advisory locks) would otherwise live until the server
    /// noticed, hours later.
    pub idle_in_transaction: Duration,
    /// `default_transaction_read_only`: sessions that only read.
    pub read_only: bool,
}

impl SessionGuards {
    /// Guards for sessions that never pause inside a transaction:
    /// statements bounded by `statement`, abandoned transactions ended
    /// after twice that (at least 5 s).
    pub fn for_statements(statement: Duration) -> Self {
        Self {
            statement,
            lock: None,
            idle_in_transaction: (statement * 2).max(Duration::from_secs(5)),
            read_only: false,
        }
    }

    /// The same guards, for sessions that only read.
    pub fn read_only(self) -> Self {
        Self {
            read_only: true,
            ..self
        }
    }

    /// The run-time parameters the server is given for each session.
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
        let mut parameters = vec![("statement_timeout", ms(self.statement))];
        if let Some(lock) = self.lock {
            parameters.push(("lock_timeout", ms(lock)));
        }
        parameters.extend([
            (
                "idle_in_transaction_session_timeout",
                ms(self.idle_in_transaction),
            ),
            // sqlx sets no TCP keepalive or user timeout on its sockets; the
            // server's side of each connection gets them instead, so that
            // it drops a client that vanished (within about a minute, not
            // the kernel's two hours) and with it whatever that session held.
            ("tcp_keepalives_idle", "30".to_owned()),
            ("tcp_keepalives_interval", "10".to_owned()),
            ("tcp_keepalives_count", "3".to_owned()),
            ("tcp_user_timeout", ms(self.idle_in_transaction)),
        ]);
        if self.read_only {
            parameters.push(("default_transaction_read_only", "on".to_owned()));
        }
        parameters
    }
}

/// What a pool is: who connects, how many connections, how long a caller
/// waits for one, and the guards of its sessions.
#[derive(Debug, Clone, Copy)]
pub struct PoolSpec<'a> {
    /// `application_name`, so that `pg_stat_activity` says whose session it is.
    pub application: &'a str,
    /// Most connections.
    pub max_connections: u32,
    /// Longest wait for a connection.
    pub acquire: Duration,
    /// The server-side bounds of each session.
    pub guards: SessionGuards,
}

/// Opens a pool to `url` without connecting yet (a database that is down
/// is a readiness answer and an error per call, not a failed start-up).
/// Every pool of the project is made here, so that each has the same
/// session guards.
pub fn pool(url: &str, spec: PoolSpec<'_>) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let parameters = spec.guards.parameters();
    let options = options
        .application_name(spec.application)
        .options(parameters.iter().map(|(k, v)| (*k, v.as_str())));
    Ok(PgPoolOptions::new()
        .max_connections(spec.max_connections)
        .acquire_timeout(spec.acquire)
        .connect_lazy_with(options))
}

/// Runs `work` on a connection of `pool` within `deadline`, acquiring
/// included. Past it, `timed_out()` is the error and the connection is
/// closed, never reused (a connection that swallowed a request may answer
/// it later, or never). `failed` turns a failed acquisition into the
/// caller's error.
pub async fn within<T, E>(
    pool: &PgPool,
    deadline: Duration,
    failed: impl FnOnce(sqlx::Error) -> E,
    timed_out: impl FnOnce() -> E,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    let started = tokio::time::Instant::now();
    let mut conn: PoolConnection<Postgres> =
        match tokio::time::timeout(deadline, pool.acquire()).await {
            Ok(conn) => conn.map_err(failed)?,
            Err(_) => return Err(timed_out()),
        };
    let left = deadline.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, work(&mut *conn)).await {
        Ok(done) => done,
        Err(_) => {
            conn.close_on_drop();
            Err(timed_out())
        }
    }
}

/// What kind of failure a database error is: the one reading of
/// `sqlx` errors and SQLSTATE codes, for retry decisions and for labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be had in time (the pool's acquire timeout).
    NoConnectionInTime,
    /// The connection failed, closed or was cut, or the server is shutting
    /// down or starting (SQLSTATE class 08, 57P01-57P03).
    Connection,
    /// The statement ran out of time (57014, the server's
    /// `statement_timeout`).
    StatementTimeout,
    /// Contention or exhausted resources: a serialization failure (40001),
    /// a deadlock (40P01), a lock not available (55P03), class 53.
    Contention,
    /// A table is missing (42P01): the schema is not there yet.
    MissingTable,
    /// Anything else: the server refused the statement for good.
    Refused,
}

impl Failure {
    /// Reads `error`.
    pub fn of(error: &sqlx::Error) -> Self {
        match error {
            sqlx::Error::PoolTimedOut => Failure::NoConnectionInTime,
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Failure::Connection,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                match code.as_str() {
                    c if c.starts_with("08") => Failure::Connection,
                    "57P01" | "57P02" | "57P03" => Failure::Connection,
                    "57014" => Failure::StatementTimeout,
                    "40001" | "40P01" | "55P03" => Failure::Contention,
                    c if c.starts_with("53") => Failure::Contention,
                    "42P01" => Failure::MissingTable,
                    _ => Failure::Refused,
                }
            }
            _ => Failure::Refused,
        }
    }

    /// A metric label: `timeout`, `connection`, `contention`, `schema` or
    /// `other`.
    pub fn label(self) -> &'static str {
        match self {
            Failure::NoConnectionInTime | Failure::StatementTimeout => "timeout",
            Failure::Connection => "connection",
            Failure::Contention => "contention",
            Failure::MissingTable => "schema",
            Failure::Refused => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(parameters: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        parameters
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_pool_bounds_abandoned_transactions_and_vanished_clients() {
        let guards = SessionGuards::for_statements(Duration::from_millis(1500));
        let parameters = guards.parameters();
        assert_eq!(value(&parameters, "statement_timeout"), Some("1500ms"));
        assert_eq!(
            value(&parameters, "idle_in_transaction_session_timeout"),
            Some("5000ms")
        );
        assert_eq!(value(&parameters, "tcp_user_timeout"), Some("5000ms"));
        assert_eq!(value(&parameters, "tcp_keepalives_idle"), Some("30"));
        assert_eq!(value(&parameters, "lock_timeout"), None);
        assert_eq!(value(&parameters, "default_transaction_read_only"), None);
        let long = SessionGuards::for_statements(Duration::from_secs(10)).read_only();
        let parameters = long.parameters();
        assert_eq!(
            value(&parameters, "idle_in_transaction_session_timeout"),
            Some("20000ms")
        );
        assert_eq!(
            value(&parameters, "default_transaction_read_only"),
            Some("on")
        );
    }

    #[test]
    fn a_zero_bound_is_never_sent_as_zero_which_the_server_reads_as_none() {
        let guards = SessionGuards {
            statement: Duration::ZERO,
            lock: Some(Duration::ZERO),
            idle_in_transaction: Duration::from_micros(10),
            read_only: false,
        };
        for (name, v) in guards.parameters() {
            assert_ne!(v, "0ms", "{name}");
        }
    }
}
