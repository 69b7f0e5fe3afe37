//! Ingest: `POST /orders` answered `202` after the broker's ack, next to
//! the HTTP limit (a bare axum handler) and the Kafka limit (the same
//! producer settings, no HTTP), all on one broker in one run.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use bytes::Bytes;
use contract::Format;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::broker::Broker;
use crate::load::{self, Target};
use crate::report::Report;
use crate::stats::percentile;
use crate::system::{peak_rss_mib, CpuMeter, Source};
use crate::{services, Settings};

const SECTION: &str = "ingest";

/// The comparison with an HTTP bridge, as recorded.
pub const PRODUCER_PER_CORE: &str = "POST /orders at saturation per producer core";
pub const BRIDGE_PER_CORE: &str = "HTTP bridge at saturation per bridge core";
pub const BRIDGE_P99: &str = "HTTP bridge (Apache Camel) at saturation p99";
pub const PRODUCER_OVER_BRIDGE: &str = "producer / HTTP bridge, req/s per core";

/// One body, the same for every request of every target.
pub fn order_body() -> anyhow::Result<Bytes> {
    Ok(serde_json::to_vec(&harness::load::order_body(1))?.into())
}

/// Orders per batch request.
pub const BATCH: usize = 500;

/// Clients sending batches at saturation: enough to keep the producer
/// busy while each waits for its acknowledgements.
const BATCH_CLIENTS: usize = 8;

/// A `POST /orders/batch` body of [`BATCH`] orders, the same as
/// [`order_body`], each a new order (no idempotency key).
pub fn batch_body() -> anyhow::Result<Bytes> {
    let item = serde_json::json!({ "order": harness::load::order_body(1) });
    Ok(serde_json::to_vec(&serde_json::json!({ "orders": vec![item; BATCH] }))?.into())
}

fn ms(seconds: f64) -> f64 {
    seconds * 1000.0
}

/// Measures ingest; returns the producer's saturation rate of this run.
pub async fn run(settings: &Settings, report: &mut Report, broker: &Broker) -> anyhow::Result<f64> {
    let producer = services::producer(broker.bootstrap()).await;
    let bare = services::bare_http().await;
    let body = order_body()?;
    let service = Target::new(&producer.url("/orders"), body.clone(), settings.clients)?;
    let limit = Target::new(&bare.url("/orders"), body, settings.clients)?;
    let phase = settings.phase;

    // Warm both: connections open, allocators and the producer's batches sized.
    load::closed_loop(&limit, settings.clients, phase / 4).await;
    load::closed_loop(&service, settings.clients, phase / 4).await;

    let me = Some(std::process::id());
    let cpu = CpuMeter::start(&[
        ("bare axum", Source::Pid(bare.pid())),
        ("load generator", Source::Pid(me)),
    ]);
    let bare_sat = load::closed_loop(&limit, settings.clients, phase).await;
    let bare_cores = crate::system::record_cpu(report, "bare axum saturation", &cpu);
    let cpu = CpuMeter::start(&[
        ("producer", Source::Pid(producer.pid())),
        ("broker", broker.cpu()),
        ("load generator", Source::Pid(me)),
    ]);
    let service_sat = load::closed_loop(&service, settings.clients, phase).await;
    let service_cores = crate::system::record_cpu(report, "POST /orders saturation", &cpu);
    ensure!(
        service_sat.accepted > 0 && bare_sat.accepted > 0,
        "no request accepted at saturation (producer: {} failed, bare: {} failed)",
        service_sat.failed,
        bare_sat.failed
    );
    let clients = settings.clients;
    report.record(
        SECTION,
        &format!("POST /orders at saturation ({clients} clients)"),
        "req/s",
        service_sat.throughput(),
    );
    report.record(
        SECTION,
        "POST /orders at saturation p99",
        "ms",
        ms(percentile(&service_sat.latencies, 99.0)),
    );
    report.record(
        SECTION,
        &format!("bare axum 202 at saturation ({clients} clients)"),
        "req/s",
        bare_sat.throughput(),
    );
    report.record(
        SECTION,
        "POST /orders not accepted at saturation",
        "req",
        service_sat.failed as f64,
    );
    // CPU per answered request, in microseconds: what the producer's own
    // work costs beside the HTTP server's.
    let per_request = |cores: f64, rate: f64| cores / rate * 1e6;
    let service_us = per_request(
        crate::system::cores_of(&service_cores, "producer"),
        service_sat.throughput(),
    );
    let bare_us = per_request(
        crate::system::cores_of(&bare_cores, "bare axum"),
        bare_sat.throughput(),
    );
    report.record(
        "cpu",
        "POST /orders: producer CPU per request",
        "us",
        service_us,
    );
    report.record("cpu", "bare axum: CPU per request", "us", bare_us);
    report.record(
        "ratio",
        "producer CPU per request / bare handler's",
        "x",
        service_us / bare_us,
    );

    for &rate in &settings.rates {
        for (who, target) in [("POST /orders", &service), ("bare axum", &limit)] {
            let run = load::open_loop(target, rate, phase).await;
            let name = format!("{who} open loop {rate:.0}/s");
            report.record(
                SECTION,
                &format!("{name} p50"),
                "ms",
                ms(percentile(&run.latencies, 50.0)),
            );
            report.record(
                SECTION,
                &format!("{name} p99"),
                "ms",
                ms(percentile(&run.latencies, 99.0)),
            );
            report.record(
                SECTION,
                &format!("{name} p99.9"),
                "ms",
                ms(percentile(&run.latencies, 99.9)),
            );
            report.record(
                SECTION,
                &format!("{name} not accepted"),
                "req",
                run.failed as f64,
            );
        }
    }
    let peak = producer.pid().and_then(peak_rss_mib);
    report.record(
        "memory",
        "producer peak RSS (ingest)",
        "MiB",
        peak.unwrap_or(f64::NAN),
    );

    let batches = Target::new(&producer.url("/orders/batch"), batch_body()?, BATCH_CLIENTS)?
        .accepted_with(200);
    load::closed_loop(&batches, BATCH_CLIENTS, phase / 4).await;
    let cpu = CpuMeter::start(&[
        ("producer", Source::Pid(producer.pid())),
        ("broker", broker.cpu()),
        ("load generator", Source::Pid(me)),
    ]);
    let batch_sat = load::closed_loop(&batches, BATCH_CLIENTS, phase).await;
    crate::system::record_cpu(report, "POST /orders/batch saturation", &cpu);
    ensure!(
        batch_sat.accepted > 0,
        "no batch accepted at saturation ({} failed)",
        batch_sat.failed
    );
    let batch_orders = batch_sat.throughput() * BATCH as f64;
    report.record(
        SECTION,
        &format!("POST /orders/batch of {BATCH} at saturation ({BATCH_CLIENTS} clients)"),
        "orders/s",
        batch_orders,
    );
    report.record(
        SECTION,
        "POST /orders/batch not accepted at saturation",
        "req",
        batch_sat.failed as f64,
    );

    // An HTTP bridge in front of the same broker, at the same load: req/s
    // per core of each side's own process.
    let bridge_per_core = crate::bridge::saturation(settings, report, broker).await?;
    let producer_per_core =
        service_sat.throughput() / crate::system::cores_of(&service_cores, "producer");
    report.record(SECTION, PRODUCER_PER_CORE, "req/s/core", producer_per_core);
    report.record(SECTION, BRIDGE_PER_CORE, "req/s/core", bridge_per_core);
    report.record(
        "ratio",
        PRODUCER_OVER_BRIDGE,
        "x",
        producer_per_core / bridge_per_core,
    );
    let raw = raw_produce(broker.bootstrap(), settings.raw_messages).await?;
    report.record(SECTION, "raw produce, same settings, no HTTP", "msg/s", raw);
    report.record(
        "ratio",
        "batch intake orders / raw produce",
        "x",
        batch_orders / raw,
    );
    report.record(
        "ratio",
        "ingest saturation / bare HTTP saturation",
        "x",
        service_sat.throughput() / bare_sat.throughput(),
    );
    report.record(
        "ratio",
        "ingest saturation / raw produce",
        "x",
        service_sat.throughput() / raw,
    );
    Ok(service_sat.throughput())
}

/// Acknowledged messages per second from one producer with the service's
/// settings, `count` order events as the service encodes them, up to 10 000
/// in flight.
pub async fn raw_produce(bootstrap: &str, count: usize) -> anyhow::Result<f64> {
    let producer: FutureProducer = platform::kafka::KafkaSettings::plain(bootstrap)
        .client_config(&producer::publish::defaults("5000"))
        .create()
        .context("raw producer")?;
    let message = harness::events::order_message(&harness::events::order_event(0), Format::Json);
    let headers = message.kafka_headers();
    let keys: Vec<String> = (0..count)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let mut in_flight = FuturesUnordered::new();
    let (mut acked, mut failed) = (0usize, 0usize);
    let mut tally = |r: rdkafka::producer::future_producer::OwnedDeliveryResult| match r {
        Ok(_) => acked += 1,
        Err(_) => failed += 1,
    };
    let started = Instant::now();
    for key in &keys {
        if in_flight.len() >= 10_000 {
            if let Some(r) = in_flight.next().await {
                tally(r);
            }
        }
        let record = FutureRecord::to("orders")
            .key(key.as_str())
            .payload(message.value.as_slice())
            .headers(headers.clone());
        in_flight.push(producer.send(record, Duration::from_secs(5)));
    }
    while let Some(r) = in_flight.next().await {
        tally(r);
    }
    let elapsed = started.elapsed().as_secs_f64();
    ensure!(
        failed == 0,
        "raw produce: {failed} of {count} messages not acknowledged"
    );
    Ok(acked as f64 / elapsed)
}
