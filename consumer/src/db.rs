//! The consumer's connection pool (the schema and its migrations are
//! [`store::schema`]'s).

use std::time::Duration;

use sqlx::PgPool;
use store::db::{PoolSpec, SessionGuards};

/// Opens a pool to `url` without connecting yet (the circuit breaker, not
/// start-up, decides what an unreachable database means). Statements, lock
/// waits and abandoned transactions are bounded by the server (`guards`),
/// so a stuck row fails as a transient error instead of stalling its
/// partition. The consumer never pauses inside a transaction, so the
/// idle-in-transaction bound only ends the transactions of clients that are
/// gone: after the client gave up on a connection whose path died, its
/// transaction would otherwise hold its row locks (and block the
/// redelivery of its events) until the server noticed, hours later. The
/// client's side is bounded by the deadlines of `persist::Store`.
pub fn pool(url: &str, max_connections: u32, guards: SessionGuards) -> Result<PgPool, sqlx::Error> {
    store::db::pool(
        url,
        PoolSpec {
            application: "pubsubkafka-consumer",
            max_connections,
            acquire: Duration::from_secs(3),
            guards,
        },
    )
}
