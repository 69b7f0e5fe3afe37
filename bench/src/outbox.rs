//! The producer's two modes side by side on one broker and one database:
//! direct (`202` after the broker's acknowledgement) and outbox (`202`
//! after the outbox transaction commits; a relay publishes). Saturation,
//! open-loop latency, CPU of the producer and of PostgreSQL, and how fast
//! the relay drains the backlog a saturation phase leaves.

use std::time::{Duration, Instant};

use anyhow::ensure;
use harness::database::TestDatabase;

use crate::broker::Broker;
use crate::load::{self, Target};
use crate::report::Report;
use crate::stats::percentile;
use crate::system::{CpuMeter, Source};
use crate::{services, Settings};

const SECTION: &str = "outbox";

async fn waiting(db: &TestDatabase) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db.pool)
        .await?)
}

/// Measures both modes.
pub async fn run(settings: &Settings, report: &mut Report, broker: &Broker) -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    let direct = services::producer(broker.bootstrap()).await;
    let outbox = services::producer_with(
        broker.bootstrap(),
        &[
            ("PRODUCER_MODE", "outbox".to_owned()),
            ("OUTBOX_DATABASE_URL", db.url.clone()),
        ],
    )
    .await;
    let body = crate::ingest::order_body()?;
    let modes = [
        (
            "direct",
            Target::new(&direct.url("/orders"), body.clone(), settings.clients)?,
            direct.pid(),
        ),
        (
            "outbox",
            Target::new(&outbox.url("/orders"), body, settings.clients)?,
            outbox.pid(),
        ),
    ];
    let phase = settings.phase;
    for (_, target, _) in &modes {
        load::closed_loop(target, settings.clients, phase / 4).await;
    }
    let mut saturation = Vec::new();
    for (mode, target, pid) in &modes {
        // Start each mode with an empty outbox.
        harness::wait::eventually(Duration::from_secs(120), "an empty outbox", || async {
            match waiting(&db).await {
                Ok(0) => Ok(()),
                Ok(n) => Err(format!("{n} rows waiting")),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .await?;
        let cpu = CpuMeter::start(&[
            ("producer", Source::Pid(*pid)),
            ("postgres", Source::Named("postgres")),
            ("broker", broker.cpu()),
        ]);
        let run = load::closed_loop(target, settings.clients, phase).await;
        crate::system::record_cpu(report, &format!("{mode} mode saturation"), &cpu);
        ensure!(
            run.accepted > 0,
            "{mode}: nothing accepted ({} failed)",
            run.failed
        );
        report.record(
            SECTION,
            &format!(
                "{mode} mode: POST /orders at saturation ({} clients)",
                settings.clients
            ),
            "req/s",
            run.throughput(),
        );
        report.record(
            SECTION,
            &format!("{mode} mode: not accepted at saturation"),
            "req",
            run.failed as f64,
        );
        saturation.push(run.throughput());
        if *mode == "outbox" {
            // The relay drains what the saturation phase left, timed: asked
            // more often than a wait would ask, for the time's precision.
            let backlog = waiting(&db).await?;
            let started = Instant::now();
            let deadline = started + Duration::from_secs(120);
            while waiting(&db).await? > 0 {
                ensure!(
                    Instant::now() < deadline,
                    "the outbox did not drain in 120 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let took = started.elapsed().as_secs_f64();
            report.record(
                SECTION,
                "outbox rows left by saturation",
                "rows",
                backlog as f64,
            );
            // A relay that kept up leaves nothing to time.
            if backlog > 0 {
                report.record(
                    SECTION,
                    "relay drain of that backlog",
                    "rows/s",
                    backlog as f64 / took,
                );
            }
        }
    }
    for &rate in &settings.rates {
        for (mode, target, _) in &modes {
            let run = load::open_loop(target, rate, phase).await;
            let name = format!("{mode} mode open loop {rate:.0}/s");
            report.record(
                SECTION,
                &format!("{name} p50"),
                "ms",
                percentile(&run.latencies, 50.0) * 1000.0,
            );
            report.record(
                SECTION,
                &format!("{name} p99"),
                "ms",
                percentile(&run.latencies, 99.0) * 1000.0,
            );
            report.record(
                SECTION,
                &format!("{name} not accepted"),
                "req",
                run.failed as f64,
            );
        }
    }
    report.record(
        "ratio",
        "outbox mode saturation / direct mode saturation",
        "x",
        saturation[1] / saturation[0],
    );
    db.drop().await;
    Ok(())
}
