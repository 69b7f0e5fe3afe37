//! `pubsubkafka dev`: the whole pipeline on this machine. An in-process
//! Kafka-protocol broker (librdkafka's mock cluster) unless `--broker` names
//! a real one, the topics, the database (created if missing, migrated by the
//! consumer), the producer and the consumer. Ctrl-C stops it all.

use std::time::Duration;

use anyhow::Context;
use platform::Env;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

/// Options of `dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Use this broker instead of the in-process one (host:port).
    #[arg(long)]
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
    /// Partitions per topic on the in-process broker.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
}

/// Topics of the pipeline.
pub const TOPICS: [&str; 4] = [
    contract::topics::ORDERS,
    contract::topics::ORDERS_DLQ,
    contract::topics::USERS,
    contract::topics::USERS_DLQ,
];

/// Creates the database named in `url` if it does not exist yet.
pub async fn ensure_database(url: &str) -> anyhow::Result<()> {
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("DATABASE_URL")?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    if PgConnection::connect_with(&options).await.is_ok() {
        return Ok(());
    }
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .with_context(|| {
            "cannot reach PostgreSQL (DATABASE_URL). Start the local server with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
        })?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut admin)
        .await
        .with_context(|| format!("creating database {name}"))?;
    println!("created database {name}");
    Ok(())
}

/// Runs the pipeline until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let mut cluster: Option<MockCluster<'static, DefaultProducerContext>> = None;
    let bootstrap = match &args.broker {
        Some(broker) => broker.clone(),
        None => {
            let mock = MockCluster::new(1).context("starting the in-process broker")?;
            for topic in TOPICS {
                mock.create_topic(topic, args.partitions, 1)
                    .with_context(|| format!("creating topic {topic}"))?;
            }
            let servers = mock.bootstrap_servers();
            cluster = Some(mock);
            servers
        }
    };
    let mut vars: Vec<(String, String)> = std::env::vars().collect();
    vars.extend([
        ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap.clone()),
        ("PRODUCER_HTTP_ADDR".to_owned(), args.producer_addr.clone()),
        ("CONSUMER_HTTP_ADDR".to_owned(), args.consumer_addr.clone()),
        ("QUERY_HTTP_ADDR".to_owned(), args.query_addr.clone()),
    ]);
    let env = Env::from_pairs(vars);
    let producer_config =
        producer::ProducerConfig::from_env(&env).context("producer configuration")?;
    let consumer_config =
        consumer::ConsumerConfig::from_env(&env).context("consumer configuration")?;
    let query_config = query::QueryConfig::from_env(&env).context("query configuration")?;
    let telemetry = platform::telemetry::TelemetryConfig::for_terminal(&env, "pubsubkafka-dev")
        .context("telemetry configuration")?;
    let _telemetry = platform::telemetry::init(&telemetry)?;
    ensure_database(&consumer_config.database_url).await?;

    let database_url = consumer_config.database_url.clone();
    let stop = platform::shutdown::on_signal();
    let producer = producer::Application::build(producer_config, prometheus::Registry::new())
        .await
        .context("starting the producer")?;
    let consumer = consumer::Application::build(consumer_config, prometheus::Registry::new())
        .await
        .context("starting the consumer")?;
    let reads = query::Application::build(query_config, prometheus::Registry::new())
        .await
        .context("starting the query service")?;
    let api = producer.local_addr()?;
    let ops = consumer.local_addr()?;
    let read = reads.local_addr()?;
    let producer_task = tokio::spawn(producer.run(stop.clone()));
    let consumer_task = tokio::spawn(consumer.run(stop.clone()));
    let query_task = tokio::spawn(reads.run(stop.clone()));

    println!(
        "\nPipeline running: broker {bootstrap}{}, producer http://{api}, consumer http://{ops}, query http://{read}, database {}\n",
        if cluster.is_some() { " (in process)" } else { "" },
        redact(&database_url),
    );
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
    println!(
        "follow it (the answer's Location, on the query service):\n\n  curl -i http://{read}/orders/<order_id>\n  pubsubkafka order <order_id>\n"
    );
    println!(
        "and see it in PostgreSQL:\n\n  psql '{}' -c 'SELECT order_id, customer_name, total, currency FROM orders'\n",
        redact(&database_url)
    );
    println!("Metrics: http://{api}/metrics and http://{ops}/metrics. Ctrl-C stops everything.\n");

    wait_until_stopped(&stop).await;
    let _ = producer_task.await;
    let _ = consumer_task.await;
    let _ = query_task.await;
    drop(cluster);
    println!("stopped");
    Ok(())
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
    use super::redact;

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
}
