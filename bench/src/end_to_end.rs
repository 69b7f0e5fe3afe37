//! End to end: request-to-row latency at a steady moderate rate, from the
//! `occurred_at` the producer stamps into each message to the time its row
//! was written (`persisted_at`, the database clock at insert).

use std::time::Duration;

use anyhow::ensure;
use harness::database::{wait_for_count, TestDatabase};

use crate::broker::Broker;
use crate::load::{self, Target};
use crate::report::Report;
use crate::stats::percentile;
use crate::system::{peak_rss_mib, CpuMeter, Source};
use crate::{services, Settings};

const SECTION: &str = "end to end";

/// librdkafka's default `fetch.wait.max.ms`, which the consumer keeps.
pub const FETCH_WAIT_DEFAULT_MS: u32 = 500;
/// A short fetch wait: a broker that answers a fetch only when its wait is
/// over (as Tansu's memory engine does) otherwise adds up to the whole wait.
pub const FETCH_WAIT_SHORT_MS: u32 = 10;

/// Waits until `expected` orders of `correlation` are rows.
async fn persisted(db: &TestDatabase, correlation: &str, expected: usize) -> anyhow::Result<()> {
    // The correlation ids are this module's constants, not outside input.
    let query = format!("SELECT count(*) FROM orders WHERE correlation_id = '{correlation}'");
    let n = wait_for_count(&db.pool, &query, expected as i64, Duration::from_secs(120)).await;
    ensure!(
        n as usize >= expected,
        "{correlation}: {n} of {expected} accepted orders persisted after 120 s"
    );
    Ok(())
}

/// Posts at `rate` for one phase with a consumer running, then reads each
/// row's latency.
pub async fn run(
    settings: &Settings,
    report: &mut Report,
    broker: &Broker,
    rate: f64,
    fetch_wait_ms: u32,
) -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    let producer = services::producer(broker.bootstrap()).await;
    let consumer = services::consumer(
        broker.bootstrap(),
        &db.url,
        "bench-e2e",
        &[("KAFKA_FETCH_WAIT_MAX_MS", fetch_wait_ms.to_string())],
    )
    .await;
    let body = crate::ingest::order_body()?;
    let url = producer.url("/orders");

    // Until the consumer has joined its group, latency is the join time.
    let warm = Target::new(&url, body.clone(), 8)?.correlated("bench-warmup");
    let warmup = load::open_loop(&warm, 50.0, Duration::from_secs(1)).await;
    persisted(&db, "bench-warmup", warmup.accepted).await?;

    let target = Target::new(&url, body, settings.clients)?.correlated("bench-e2e");
    let cpu = CpuMeter::start(&[
        ("producer", Source::Pid(producer.pid())),
        ("consumer", Source::Pid(consumer.pid())),
        ("broker", broker.cpu()),
        ("postgres", Source::Named("postgres")),
        ("load generator", Source::Pid(Some(std::process::id()))),
    ]);
    let run = load::open_loop(&target, rate, settings.phase).await;
    let phase = format!("end to end, fetch.wait.max.ms {fetch_wait_ms}");
    crate::system::record_cpu(report, &phase, &cpu);
    ensure!(
        run.accepted > 0,
        "end to end: nothing accepted at {rate:.0}/s"
    );
    persisted(&db, "bench-e2e", run.accepted).await?;
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM persisted_at - occurred_at)::float8 FROM orders WHERE correlation_id = 'bench-e2e'",
    )
    .fetch_all(&db.pool)
    .await?;
    latencies.sort_by(f64::total_cmp);
    let ms = |p| percentile(&latencies, p) * 1000.0;
    let wait = format!("fetch.wait.max.ms {fetch_wait_ms}");
    report.record(SECTION, &format!("{wait}: rate"), "req/s", rate);
    report.record(
        SECTION,
        &format!("{wait}: request to row p50"),
        "ms",
        ms(50.0),
    );
    report.record(
        SECTION,
        &format!("{wait}: request to row p99"),
        "ms",
        ms(99.0),
    );
    report.record(
        SECTION,
        &format!("{wait}: request to row p99.9"),
        "ms",
        ms(99.9),
    );
    report.record(
        SECTION,
        &format!("{wait}: HTTP answer p99"),
        "ms",
        percentile(&run.latencies, 99.0) * 1000.0,
    );
    report.record(
        "memory",
        &format!("consumer peak RSS (end to end, {wait})"),
        "MiB",
        consumer.pid().and_then(peak_rss_mib).unwrap_or(f64::NAN),
    );
    report.record(
        "memory",
        &format!("producer peak RSS (end to end, {wait})"),
        "MiB",
        producer.pid().and_then(peak_rss_mib).unwrap_or(f64::NAN),
    );
    drop((consumer, producer));
    db.drop().await;
    Ok(())
}
