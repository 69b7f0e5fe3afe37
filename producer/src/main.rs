#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use platform::Env;
use producer::{Application, ProducerConfig};

/// mimalloc rather than glibc's allocator: a request allocates and frees
/// many small buffers across threads, which glibc's arenas serve slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `producer migrate`: what the Helm chart's migrations Job runs in
/// outbox mode.
const MIGRATE: platform::startup::Command = platform::startup::Command {
    name: "migrate",
    about: "create the outbox table (PRODUCER_MODE=outbox, OUTBOX_DATABASE_URL) and exit",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let command = platform::startup::answer_commands(
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_DESCRIPTION"),
        &[MIGRATE],
    );
    let config = ProducerConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    if command.is_some() {
        let outbox = config
            .outbox
            .as_ref()
            .context("migrate: PRODUCER_MODE is direct, which has no database to migrate")?;
        producer::startup::migrate(outbox, config.produce_timeout)
            .await
            .context("migrate")?;
        tracing::info!("outbox schema is current");
        return Ok(());
    }
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, platform::metrics::service_registry("producer")?)
        .await
        .context("start-up")?;
    app.run(stop).await.context("serving")?;
    Ok(())
}
