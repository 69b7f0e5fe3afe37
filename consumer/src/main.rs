#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use consumer::{Application, ConsumerConfig};
use platform::Env;

/// `consumer migrate`: what the Helm chart's migrations Job runs.
const MIGRATE: platform::startup::Command = platform::startup::Command {
    name: "migrate",
    about: "apply the database migrations (DATABASE_URL) and exit",
};

fn main() -> anyhow::Result<()> {
    let command = platform::startup::answer_commands(
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_DESCRIPTION"),
        &[MIGRATE],
    );
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    match command {
        Some(_) => runtime.block_on(migrate()),
        None => runtime.block_on(run()),
    }
}

/// Applies the migrations, as start-up does, and exits: 0 once the schema
/// is current.
async fn migrate() -> anyhow::Result<()> {
    let config = ConsumerConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    consumer::startup::migrate(&config)
        .await
        .context("migrate")?;
    tracing::info!("database schema is current");
    Ok(())
}

/// At most two glibc malloc arenas, set before any thread starts. A batch
/// is decoded on one thread and freed on another, and librdkafka's threads
/// allocate too: with an arena per thread, each kept freed memory of its
/// own, and draining a backlog peaked at 60 - 67 MiB; with two, below 60
/// (bench/RESULTS.md). The allocations are large and few, so sharing
/// arenas costs no measurable speed.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; called before any
    // other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

async fn run() -> anyhow::Result<()> {
    let config = ConsumerConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, platform::metrics::service_registry("consumer")?)
        .await
        .context("start-up")?;
    app.run(stop).await.context("running")?;
    Ok(())
}
