//! The read side under load next to intake: `POST /orders` at saturation
//! alone and with `GET /orders/{id}` at saturation on the query service at
//! the same time, the producer's CPU per accepted request in both, and the
//! reads alone. Reads reach neither the producer nor Kafka; on one machine
//! they still take CPU the producer could have used, which the CPU figures
//! of each phase show.

use std::time::Duration;

use anyhow::{ensure, Context};
use harness::database::{wait_for_count, TestDatabase};

use crate::broker::Broker;
use crate::load::{self, Run, Target};
use crate::report::Report;
use crate::stats::percentile;
use crate::system::{CpuMeter, Source};
use crate::{services, Settings};

const SECTION: &str = "read side";

/// Clients reading at saturation.
const READ_CLIENTS: usize = 64;

/// Orders stored before the reads start, `POST /orders/batch` at a time.
async fn preload(producer_url: &str, batches: usize) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let body = crate::ingest::batch_body()?;
    let mut ids = Vec::new();
    for _ in 0..batches {
        let answer: serde_json::Value = client
            .post(format!("{producer_url}/orders/batch"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let results = answer["results"].as_array().context("a batch answer")?;
        ids.extend(
            results
                .iter()
                .filter_map(|r| r["order_id"].as_str().map(str::to_owned)),
        );
    }
    Ok(ids)
}

fn cpu_sources(
    producer: Option<u32>,
    query: Option<u32>,
    consumer: Option<u32>,
    broker: Source,
) -> Vec<(&'static str, Source)> {
    vec![
        ("producer", Source::Pid(producer)),
        ("query", Source::Pid(query)),
        ("consumer", Source::Pid(consumer)),
        ("broker", broker),
        ("postgres", Source::Named("postgres")),
        ("load generator", Source::Pid(Some(std::process::id()))),
    ]
}

fn producer_cores(meter: &CpuMeter) -> f64 {
    meter
        .cores()
        .into_iter()
        .find(|(label, _)| *label == "producer")
        .map_or(f64::NAN, |(_, cores)| cores)
}

fn micros_per(cores: f64, run: &Run) -> f64 {
    cores / run.throughput() * 1e6
}

/// Measures intake with and without reads, and the reads.
pub async fn run(settings: &Settings, report: &mut Report, broker: &Broker) -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    let producer = services::producer(broker.bootstrap()).await;
    let consumer = services::consumer(broker.bootstrap(), &db.url, "bench-read", &[]).await;
    let reads = services::query(&db.url).await;
    let batches = (settings.orders / crate::ingest::BATCH / 10).clamp(1, 20);
    let ids = preload(&producer.url(""), batches).await?;
    let stored = wait_for_count(
        &db.pool,
        "SELECT count(*) FROM orders",
        ids.len() as i64,
        Duration::from_secs(120),
    )
    .await;
    ensure!(
        stored as usize >= ids.len(),
        "{stored} of {} preloaded orders stored after 120 s",
        ids.len()
    );
    let urls: Vec<String> = ids
        .iter()
        .map(|id| reads.url(&format!("/orders/{id}")))
        .collect();
    let intake = Target::new(
        &producer.url("/orders"),
        crate::ingest::order_body()?,
        settings.clients,
    )?;
    let lookups = Target::reading(urls, READ_CLIENTS)?;
    let phase = settings.phase;
    let sources = cpu_sources(producer.pid(), reads.pid(), consumer.pid(), broker.cpu());

    load::closed_loop(&intake, settings.clients, phase / 4).await;
    load::closed_loop(&lookups, READ_CLIENTS, phase / 4).await;

    let cpu = CpuMeter::start(&sources);
    let alone = load::closed_loop(&intake, settings.clients, phase).await;
    let alone_cores = producer_cores(&cpu);
    crate::system::record_cpu(report, "POST /orders alone", &cpu);

    let cpu = CpuMeter::start(&sources);
    let (with_reads, read_during) = tokio::join!(
        load::closed_loop(&intake, settings.clients, phase),
        load::closed_loop(&lookups, READ_CLIENTS, phase)
    );
    let with_cores = producer_cores(&cpu);
    crate::system::record_cpu(report, "POST /orders with GET /orders/{id}", &cpu);

    let cpu = CpuMeter::start(&sources);
    let read_alone = load::closed_loop(&lookups, READ_CLIENTS, phase).await;
    crate::system::record_cpu(report, "GET /orders/{id} alone", &cpu);
    ensure!(
        alone.accepted > 0 && with_reads.accepted > 0 && read_alone.accepted > 0,
        "nothing answered (intake alone {} failed, with reads {} failed, reads {} failed)",
        alone.failed,
        with_reads.failed,
        read_alone.failed
    );
    ensure!(
        read_during.failed == 0 && read_alone.failed == 0,
        "reads of stored orders failed: {} with intake, {} alone",
        read_during.failed,
        read_alone.failed
    );

    let clients = settings.clients;
    report.record(
        SECTION,
        &format!("POST /orders at saturation ({clients} clients), alone"),
        "req/s",
        alone.throughput(),
    );
    report.record(
        SECTION,
        &format!("POST /orders at saturation ({clients} clients), with reads"),
        "req/s",
        with_reads.throughput(),
    );
    report.record(
        SECTION,
        &format!("GET /orders/{{id}} at saturation ({READ_CLIENTS} clients), alone"),
        "req/s",
        read_alone.throughput(),
    );
    report.record(
        SECTION,
        &format!("GET /orders/{{id}} at saturation ({READ_CLIENTS} clients), with intake"),
        "req/s",
        read_during.throughput(),
    );
    report.record(
        SECTION,
        "GET /orders/{id} p99, alone",
        "ms",
        percentile(&read_alone.latencies, 99.0) * 1000.0,
    );
    report.record(
        SECTION,
        "POST /orders p99 at saturation, alone",
        "ms",
        percentile(&alone.latencies, 99.0) * 1000.0,
    );
    report.record(
        SECTION,
        "POST /orders p99 at saturation, with reads",
        "ms",
        percentile(&with_reads.latencies, 99.0) * 1000.0,
    );
    report.record(
        SECTION,
        "producer CPU per accepted request, alone",
        "us",
        micros_per(alone_cores, &alone),
    );
    report.record(
        SECTION,
        "producer CPU per accepted request, with reads",
        "us",
        micros_per(with_cores, &with_reads),
    );
    report.record(
        "ratio",
        "intake with reads / intake alone",
        "x",
        with_reads.throughput() / alone.throughput(),
    );
    report.record(
        "ratio",
        "producer CPU per request with reads / alone",
        "x",
        micros_per(with_cores, &with_reads) / micros_per(alone_cores, &alone),
    );
    db.drop().await;
    Ok(())
}
