//! `pubsubkafka dev`: the whole pipeline on this machine. An in-process
//! Kafka-protocol broker (librdkafka's mock cluster) unless `--broker` names
//! a real one, the topics, the database (created if missing, migrated by the
//! consumer), the producer and the consumer. Ctrl-C stops it all.
//!
//! The database is DATABASE_URL's; when that is not set and the default one
//! is not usable, a private PostgreSQL started here (see [`postgres`]), which
//! is stopped and deleted on exit. With `PRODUCER_MODE=outbox`, the
//! producer's outbox is OUTBOX_DATABASE_URL's, else a database of its own
//! beside that one (see [`outbox_beside`]).

mod console;
pub mod postgres;
mod topics;

use std::time::Duration;

use anyhow::Context;
use platform::Env;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sqlx::migrate::MigrateError;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

/// Most partitions `dev` gives a topic (a laptop's pipeline).
pub const MAX_PARTITIONS: i64 = 1000;

/// Options of `dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Use this broker instead of the in-process one (host:port).
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub broker: Option<String>,
    /// Address of the producer's API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub producer_addr: String,
    /// Address of the consumer's health and metrics.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub consumer_addr: String,
    /// Address of the read side (`GET /orders/{id}`).
    #[arg(long, default_value = "127.0.0.1:8082")]
    pub query_addr: String,
    /// Partitions of each topic `dev` creates: on the in-process broker, or
    /// those missing on `--broker` (1 to 1000; Kafka would read 0 or less
    /// as "the broker's default").
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=MAX_PARTITIONS))]
    pub partitions: i32,
    /// Address of the console (`pubsubkafka console`, replays allowed).
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub console_addr: String,
}

/// Why `dev` cannot use a PostgreSQL server.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL is not a PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    #[error("cannot use PostgreSQL at {url}: {hint}")]
    Connect {
        url: String,
        hint: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("PostgreSQL at {url} did not answer within {} s: check its host and port", .waited.as_secs())]
    Timeout { url: String, waited: Duration },
    #[error("creating database {name} at {url}: {hint}")]
    Create {
        name: String,
        url: String,
        hint: String,
        #[source]
        source: sqlx::Error,
    },
}

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the database named in `url` if it does not exist yet (connecting
/// to the server's `postgres` database to do so).
pub async fn ensure_database(url: &str) -> Result<(), DatabaseError> {
    let options: PgConnectOptions = url.parse().map_err(DatabaseError::Url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    match connect(&options, url).await {
        Ok(connection) => {
            let _ = connection.close().await;
            return Ok(());
        }
        Err(DatabaseError::Connect { source, .. }) if is_missing_database(&source) => {}
        Err(other) => return Err(other),
    }
    let mut admin = connect(&options.clone().database("postgres"), url).await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    let created = sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut admin)
        .await;
    let _ = admin.close().await;
    match created {
        Ok(_) => println!("created database {name}"),
        // Created meanwhile by someone else: as good.
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {}
        Err(source) => {
            return Err(DatabaseError::Create {
                hint: hint(&source, &options),
                name,
                url: redact(url),
                source,
            })
        }
    }
    Ok(())
}

async fn connect(options: &PgConnectOptions, url: &str) -> Result<PgConnection, DatabaseError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => {
            let (hint, source) = advise(source, url, options);
            Err(DatabaseError::Connect {
                url: redact(url),
                hint,
                source,
            })
        }
        Err(_) => Err(DatabaseError::Timeout {
            url: redact(url),
            waited: CONNECT_TIMEOUT,
        }),
    }
}

fn is_missing_database(error: &sqlx::Error) -> bool {
    error.as_database_error().and_then(|d| d.code()).as_deref() == Some("3D000")
}

/// What to do about a failed connection to `url`: the advice the consumer
/// gives for the same failure ([`store::schema::advice`]: a missing role, a
/// wrong password, no server), else [`hint`]. The consumer meets these
/// failures running its migrations, so its advice reads a migration's
/// error: `source` is lent to it that way and given back.
fn advise(source: sqlx::Error, url: &str, options: &PgConnectOptions) -> (String, sqlx::Error) {
    let failure = MigrateError::Execute(source);
    let advice = store::schema::advice(&failure, url);
    let source = match failure {
        MigrateError::Execute(source) => source,
        other => sqlx::Error::Migrate(Box::new(other)),
    };
    let hint = advice.unwrap_or_else(|| hint(&source, options));
    (hint, source)
}

/// What to check for a failed `CREATE DATABASE`, or a failed connection
/// [`store::schema::advice`] has no advice for.
fn hint(error: &sqlx::Error, options: &PgConnectOptions) -> String {
    let user = options.get_username();
    let (host, port) = (options.get_host(), options.get_port());
    match error {
        sqlx::Error::Io(_) => format!(
            "no server answers at {host}:{port}: check that it runs and that this is its host and port"
        ),
        sqlx::Error::Database(e) => match e.code().as_deref() {
            Some("28000") if e.message().contains("pg_hba.conf") => format!(
                "the server's pg_hba.conf has no line that lets role {user:?} in from this client"
            ),
            Some("42501") => format!(
                "role {user:?} may not create databases: create it (CREATE DATABASE ... OWNER \"{user}\") or give the role CREATEDB"
            ),
            _ => e.message().to_owned(),
        },
        _ => "check the host, port, role and password of the URL".to_owned(),
    }
}

/// The database `dev` uses: the one DATABASE_URL names, the default one when
/// it is usable, or one on a private server of its own.
struct DevDatabase {
    url: String,
    private: Option<postgres::PrivateServer>,
}

impl DevDatabase {
    /// `configured` is DATABASE_URL or its default; `explicit` says which.
    /// An explicit URL must work. The default one (the OS user's role on the
    /// local server) is used when it lets `dev` in and the database exists
    /// or may be created; anything else there (no server, no such role, a
    /// password asked for, no right to create the database) counts as no
    /// server, and `dev` starts a private one.
    async fn prepare(configured: &str, explicit: bool) -> anyhow::Result<Self> {
        let fallback = match ensure_database(configured).await {
            Ok(()) => {
                return Ok(Self {
                    url: configured.to_owned(),
                    private: None,
                })
            }
            Err(e) if explicit => {
                return Err(anyhow::Error::new(e).context(
                    "DATABASE_URL is set, so `dev` uses that server; unset it to have `dev` run a private one",
                ))
            }
            Err(e) => e,
        };
        println!("{fallback}; DATABASE_URL is not set, so `dev` starts a private PostgreSQL");
        let server = postgres::PrivateServer::start()
            .await
            .context("starting a private PostgreSQL")?;
        let url = server.url(DATABASE);
        ensure_database(&url).await?;
        Ok(Self {
            url,
            private: Some(server),
        })
    }
}

/// The database's name on a private server.
const DATABASE: &str = "pubsubkafka";

/// How the producer runs, as `dev` tells its user.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ProducerMode {
    /// `202` once the broker acknowledged the write.
    Direct,
    /// `202` once the outbox at `url` holds the event; a relay publishes it.
    Outbox { url: String },
}

impl ProducerMode {
    /// The mode the producer's configuration in `env` asks for.
    fn of(env: &Env) -> anyhow::Result<Self> {
        let config = producer::ProducerConfig::from_env(env).context("producer configuration")?;
        Ok(match config.outbox {
            None => Self::Direct,
            Some(outbox) => Self::Outbox {
                url: outbox.database_url,
            },
        })
    }

    /// Its line of the banner.
    fn line(&self) -> String {
        match self {
            Self::Direct => "The producer answers 202 once the broker acknowledged an order \
                             (PRODUCER_MODE=direct; PRODUCER_MODE=outbox tries the outbox)."
                .to_owned(),
            Self::Outbox { url } => format!(
                "The producer answers 202 once an order is in its outbox ({}), and a relay \
                 publishes it (PRODUCER_MODE=outbox).",
                redact(url)
            ),
        }
    }
}

/// The producer's outbox database to create and use in outbox mode
/// (`PRODUCER_MODE=outbox`) when OUTBOX_DATABASE_URL is not set: a database
/// of its own on dev's server, named after dev's (`pubsubkafka_outbox`
/// beside `pubsubkafka`), at `database_url`'s host, port and role; `None`
/// in direct mode or when OUTBOX_DATABASE_URL is set. Not dev's database
/// itself, though the producer would fall back to it (DATABASE_URL): as
/// deployed, the producer's outbox is not in the consumer's database (the
/// producer holds no credentials of it, and a lock on the producer's outbox
/// must not stall the consumer, whose own outbox of order states is there).
fn outbox_beside(env: &Env, database_url: &str) -> anyhow::Result<Option<String>> {
    let asked = ProducerMode::of(&env.clone().with("DATABASE_URL", database_url))?;
    if asked == ProducerMode::Direct || env.get("OUTBOX_DATABASE_URL").is_some() {
        return Ok(None);
    }
    let named = |url: &str| {
        url.parse::<PgConnectOptions>()
            .ok()
            .and_then(|o| o.get_database().map(str::to_owned))
    };
    let name = named(database_url).unwrap_or_else(|| DATABASE.to_owned());
    let wanted = format!("{name}{OUTBOX_SUFFIX}");
    let url = with_database(database_url, &wanted);
    match url {
        Some(url) if named(&url).as_deref() == Some(wanted.as_str()) => Ok(Some(url)),
        _ => anyhow::bail!(
            "cannot name a database beside {} for the producer's outbox: set OUTBOX_DATABASE_URL",
            redact(database_url)
        ),
    }
}

/// `env` with dev's database (DATABASE_URL) and, in outbox mode without
/// OUTBOX_DATABASE_URL, the producer's outbox database beside it (see
/// [`outbox_beside`]), created if missing; and the mode the producer runs
/// in.
async fn with_databases(env: Env, database_url: &str) -> anyhow::Result<(Env, ProducerMode)> {
    let mut env = env.with("DATABASE_URL", database_url);
    if let Some(outbox) = outbox_beside(&env, database_url)? {
        ensure_database(&outbox).await.context(
            "the producer's outbox (PRODUCER_MODE=outbox) gets a database of its own beside \
             dev's; set OUTBOX_DATABASE_URL to use another",
        )?;
        env = env.with("OUTBOX_DATABASE_URL", &outbox);
    }
    let mode = ProducerMode::of(&env)?;
    Ok((env, mode))
}

/// What the producer's outbox database adds to the name of dev's.
const OUTBOX_SUFFIX: &str = "_outbox";

/// `url` naming the database `name` instead (its path), its role, host,
/// port and parameters kept.
fn with_database(url: &str, name: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let authority = location.split_once('/').map_or(location, |(a, _)| a);
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Some(url)
}

/// The in-process broker, when `dev` runs one.
type InProcess = MockCluster<'static, DefaultProducerContext>;

/// The broker's bootstrap servers: `--broker`, or an in-process broker
/// with the pipeline's topics (returned too: it lives as long as that).
/// The mock takes no topic configuration, so its `orders-state` keeps every
/// version rather than being compacted, which a laptop's run never needs.
fn start_broker(args: &DevArgs) -> anyhow::Result<(String, Option<InProcess>)> {
    match &args.broker {
        Some(broker) => Ok((broker.clone(), None)),
        None => {
            let mock = MockCluster::new(1).context("starting the in-process broker")?;
            for topic in contract::topics::ALL {
                mock.create_topic(topic, args.partitions, 1)
                    .with_context(|| format!("creating topic {topic}"))?;
            }
            Ok((mock.bootstrap_servers(), Some(mock)))
        }
    }
}

/// The services' environment: this process's, with the broker and the
/// addresses of `args`; and whether reads need no token (on a laptop,
/// unless one is given).
fn environment(args: &DevArgs, bootstrap: &str) -> (Env, bool) {
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.extend([
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.to_owned()),
        ("PRODUCER_HTTP_ADDR".to_owned(), args.producer_addr.clone()),
        ("CONSUMER_HTTP_ADDR".to_owned(), args.consumer_addr.clone()),
        ("QUERY_HTTP_ADDR".to_owned(), args.query_addr.clone()),
    ]);
    let anonymous_reads = std::env::var_os("API_TOKEN").is_none()
        && std::env::var_os("QUERY_ALLOW_ANONYMOUS").is_none();
    if anonymous_reads {
        vars.push(("QUERY_ALLOW_ANONYMOUS".to_owned(), "true".to_owned()));
    }
    (Env::from_pairs(vars), anonymous_reads)
}

/// The three services, running until `stop`.
struct Services {
    api: std::net::SocketAddr,
    ops: std::net::SocketAddr,
    read: std::net::SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Services {
    /// Builds the producer, the consumer and the query service from `env`
    /// and runs them until `stop`.
    async fn start(env: &Env, stop: &CancellationToken) -> anyhow::Result<Self> {
        let producer_config =
            producer::ProducerConfig::from_env(env).context("producer configuration")?;
        let consumer_config =
            consumer::ConsumerConfig::from_env(env).context("consumer configuration")?;
        let query_config = query::QueryConfig::from_env(env).context("query configuration")?;
        let producer = producer::Application::build(
            producer_config,
            platform::metrics::service_registry("producer")?,
        )
        .await
        .context("starting the producer")?;
        let consumer = consumer::Application::build(
            consumer_config,
            platform::metrics::service_registry("consumer")?,
        )
        .await
        .context("starting the consumer")?;
        let reads =
            query::Application::build(query_config, platform::metrics::service_registry("query")?)
                .await
                .context("starting the query service")?;
        let (api, ops, read) = (
            producer.local_addr()?,
            consumer.local_addr()?,
            reads.local_addr()?,
        );
        let tasks = vec![
            tokio::spawn(producer.run(stop.clone())),
            tokio::spawn(consumer.run(stop.clone())),
            tokio::spawn(reads.run(stop.clone())),
        ];
        Ok(Self {
            api,
            ops,
            read,
            tasks,
        })
    }

    /// Waits for each service to end.
    async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Runs the pipeline until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let (bootstrap, cluster) = start_broker(&args)?;
    let (env, anonymous_reads) = environment(&args, &bootstrap);
    let telemetry = platform::telemetry::TelemetryConfig::for_terminal(&env, "pubsubkafka-dev")
        .context("telemetry configuration")?;
    let _telemetry = platform::telemetry::init(&telemetry)?;
    if cluster.is_none() {
        let kafka = platform::kafka::KafkaSettings::from_env(&env).context("Kafka settings")?;
        let created = topics::ensure(&kafka, args.partitions).await?;
        if !created.is_empty() {
            println!("Created on {bootstrap}: {}", created.join(", "));
        }
    }
    // Before the database: a Ctrl-C while a private server starts must
    // still stop and delete it.
    let stop = platform::shutdown::on_signal();
    let configured = consumer::ConsumerConfig::from_env(&env)
        .context("consumer configuration")?
        .database_url;
    let database = DevDatabase::prepare(&configured, env.get("DATABASE_URL").is_some()).await?;
    if stop.is_cancelled() {
        drop(database);
        println!("stopped");
        return Ok(());
    }
    let (env, producer_mode) = with_databases(env, &database.url).await?;
    let services = Services::start(&env, &stop).await?;
    let console = console::start(
        &console::Plan {
            addr: &args.console_addr,
            bootstrap: &bootstrap,
            consumer: services.ops,
            producer: services.api,
            database_url: &database.url,
        },
        &stop,
    )
    .await?;
    print_guide(&Guide {
        bootstrap: &bootstrap,
        in_process: cluster.is_some(),
        services: &services,
        database: &database,
        anonymous_reads,
        producer_mode: &producer_mode,
        console: &console,
    });
    wait_until_stopped(&stop).await;
    services.join().await;
    let _ = console.task.await;
    drop(cluster);
    if let Some(server) = database.private {
        println!(
            "removing the private PostgreSQL ({})",
            server.dir().display()
        );
        drop(server);
    }
    println!("stopped");
    Ok(())
}

/// What `dev` tells its user once the pipeline runs.
struct Guide<'a> {
    bootstrap: &'a str,
    in_process: bool,
    services: &'a Services,
    database: &'a DevDatabase,
    anonymous_reads: bool,
    producer_mode: &'a ProducerMode,
    console: &'a console::Running,
}

/// The banner's line on the in-process broker: what a Ctrl-C loses, and
/// what keeps it. `--broker`, not KAFKA_BOOTSTRAP_SERVERS: the banner has
/// the operator tool's shell export that variable, and a `dev` started
/// there must not take the last run's broker, gone with it, for a real one.
const IN_MEMORY: &str = "The broker is in memory: on Ctrl-C, orders accepted but not yet \
     consumed (and the dead letters) are gone; `pubsubkafka dev --broker host:port` uses a \
     real Kafka, which keeps them.";

/// Prints where everything runs and how to try it.
fn print_guide(guide: &Guide<'_>) {
    let Guide {
        bootstrap,
        services: Services { api, ops, read, .. },
        database,
        ..
    } = guide;
    let database_url = redact(&database.url);
    println!(
        "\nPipeline running: broker {bootstrap}{}, producer http://{api}, consumer http://{ops}, query http://{read}, database {database_url}{}",
        if guide.in_process { " (in process)" } else { "" },
        if database.private.is_some() { " (private)" } else { "" },
    );
    println!("{}", guide.producer_mode.line());
    if guide.in_process {
        println!("{IN_MEMORY}");
    }
    println!();
    if guide.anonymous_reads {
        println!(
            "Reads on http://{read} need no token here (QUERY_ALLOW_ANONYMOUS=true, for this laptop \
             only: deployed, the query service does not start without API_TOKEN).\n"
        );
    }
    if let Some(server) = &database.private {
        println!(
            "The database is a private, temporary PostgreSQL ({database_url}, data in {}): it and its data are removed on exit.\n",
            server.dir().display()
        );
    }
    println!(
        "For the operator tool in another shell:\n\n  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}\n"
    );
    println!("Post an order:\n");
    // Quoted for a shell's single quotes.
    let body = contract::request::example_order()
        .to_string()
        .replace('\'', r#"'"'"'"#);
    println!(
        "  curl -i -X POST http://{api}/orders -H 'content-type: application/json' -d '{body}'\n"
    );
    // The operator tool reads DATABASE_URL or its default: a private
    // server is neither.
    let database_option = match &database.private {
        Some(_) => format!(" --database-url '{database_url}'"),
        None => String::new(),
    };
    println!(
        "follow it (the answer's Location, on the query service):\n\n  curl -i http://{read}/orders/<order_id>\n  pubsubkafka order <order_id>{database_option}\n"
    );
    println!(
        "and see it in PostgreSQL:\n\n  psql '{database_url}' -c 'SELECT order_id, customer_name, total, currency FROM orders'\n"
    );
    println!(
        "The console (dead letters, replays, lag, orders): http://{}, signed in with the token {}\n",
        guide.console.addr, guide.console.token
    );
    println!("Metrics: http://{api}/metrics and http://{ops}/metrics. Ctrl-C stops everything.\n");
}

async fn wait_until_stopped(stop: &CancellationToken) {
    stop.cancelled().await;
    // Both services bound their own shutdown; this only paces the output.
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The URL without its password, for printing.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use harness::database::TestDatabase;
    use proptest::prelude::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        dev: DevArgs,
    }

    /// An empty --broker is refused, not read as the default broker.
    #[test]
    fn an_empty_broker_is_refused() {
        assert!(Cli::try_parse_from(["dev", "--broker", ""]).is_err());
    }

    proptest! {
        /// Any --partitions is refused outside 1..=MAX_PARTITIONS and kept
        /// as given inside, whatever its spelling's size.
        #[test]
        fn partitions_outside_their_range_are_refused(n in any::<i64>()) {
            let parsed = Cli::try_parse_from(["dev", "--partitions", &n.to_string()]);
            if (1..=MAX_PARTITIONS).contains(&n) {
                prop_assert_eq!(parsed.map(|c| i64::from(c.dev.partitions)).ok(), Some(n));
            } else {
                prop_assert!(parsed.is_err(), "{n} accepted");
            }
        }

        /// Text that is not a number is refused, never read as a default.
        #[test]
        fn partitions_that_are_not_a_number_are_refused(text in "[^0-9]{1,12}") {
            let parsed = Cli::try_parse_from(["dev", "--partitions", &text]);
            prop_assert!(parsed.is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact("postgres://localhost/pubsubkafka"),
            "postgres://localhost/pubsubkafka"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    fn outbox_mode(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![("PRODUCER_MODE", "outbox")];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn the_outbox_gets_a_database_beside_devs_unless_one_is_named() {
        let beside = |env: &Env, url: &str| outbox_beside(env, url).unwrap();
        assert_eq!(
            beside(
                &outbox_mode(&[]),
                "postgres://u:pw@h:5433/pubsubkafka?sslmode=disable"
            ),
            Some("postgres://u:pw@h:5433/pubsubkafka_outbox?sslmode=disable".to_owned())
        );
        assert_eq!(
            beside(&outbox_mode(&[]), "postgres:///dev?host=/run/postgresql"),
            Some("postgres:///dev_outbox?host=/run/postgresql".to_owned()),
            "a socket's URL keeps its host parameter"
        );
        assert_eq!(
            beside(&outbox_mode(&[]), "postgres://localhost"),
            Some("postgres://localhost/pubsubkafka_outbox".to_owned())
        );
        let named = outbox_mode(&[("OUTBOX_DATABASE_URL", "postgres://elsewhere/o")]);
        assert_eq!(beside(&named, "postgres://h/pubsubkafka"), None);
        assert_eq!(
            beside(&Env::default(), "postgres://h/pubsubkafka"),
            None,
            "direct mode has no outbox"
        );
        let wrong = Env::from_pairs([("PRODUCER_MODE", "both")]);
        assert!(outbox_beside(&wrong, "postgres://h/pubsubkafka").is_err());
    }

    /// `PRODUCER_MODE=outbox dev` runs, with an outbox database made beside
    /// dev's; OUTBOX_DATABASE_URL, when set, is the producer's.
    #[tokio::test]
    async fn outbox_mode_runs_on_devs_server_in_a_database_of_its_own() {
        let db = TestDatabase::create().await;
        let (env, mode) = with_databases(outbox_mode(&[]), &db.url).await.unwrap();
        let outbox = format!("{}{OUTBOX_SUFFIX}", db.url);
        let made = match PgConnection::connect(&outbox).await {
            Ok(connection) => connection.close().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Ok(mut admin) = PgConnection::connect(&db.url).await {
            let name = format!("{}{OUTBOX_SUFFIX}", db.name);
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
        }
        assert_eq!(made, Ok(()), "the outbox database was made");
        assert_eq!(
            mode,
            ProducerMode::Outbox {
                url: outbox.clone()
            }
        );
        let config = producer::ProducerConfig::from_env(&env).unwrap();
        assert_eq!(config.outbox.map(|o| o.database_url), Some(outbox));
        assert_eq!(env.get("DATABASE_URL"), Some(db.url.as_str()));
        assert!(mode.line().contains("outbox"), "{}", mode.line());

        let elsewhere = outbox_mode(&[("OUTBOX_DATABASE_URL", &db.url)]);
        let (_, mode) = with_databases(elsewhere, "postgres://h/unused")
            .await
            .unwrap();
        assert_eq!(
            mode,
            ProducerMode::Outbox {
                url: db.url.clone()
            }
        );
        let (_, mode) = with_databases(Env::default(), &db.url).await.unwrap();
        assert_eq!(mode, ProducerMode::Direct);
        assert!(
            mode.line().contains("PRODUCER_MODE=direct"),
            "{}",
            mode.line()
        );
        db.drop().await;
    }

    #[test]
    fn the_banner_says_what_a_ctrl_c_loses_and_what_keeps_it() {
        assert!(IN_MEMORY.contains("in memory"));
        assert!(IN_MEMORY.contains("--broker"));
        assert!(!IN_MEMORY.contains('\n'), "one line");
    }

    /// A role the server does not know gets the consumer's advice (create
    /// it), not a guess at the server's state.
    #[tokio::test]
    async fn a_wrong_role_gets_the_advice_the_consumer_gives() {
        let server = harness::database::server_url();
        let Some((_, host)) = server.rsplit_once('@') else {
            panic!("a server URL with a role: {server}");
        };
        let role = format!("no_such_role_{}", uuid::Uuid::new_v4().simple());
        let url = format!("postgres://{role}@{host}/pubsubkafka");
        let error = ensure_database(&url).await.unwrap_err();
        let said = error.to_string();
        let DatabaseError::Connect { source, .. } = error else {
            panic!("not a connection failure: {said}");
        };
        let advice = store::schema::advice(&MigrateError::Execute(source), &url)
            .expect("the consumer's advice for a missing role");
        assert!(said.contains(&format!("CREATE ROLE \"{role}\"")), "{said}");
        assert!(said.ends_with(&advice), "{said}");
    }
}
