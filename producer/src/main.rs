#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use platform::Env;
use producer::{Application, ProducerConfig};

/// mimalloc rather than glibc's allocator: a request allocates and frees
/// many small buffers across threads, which glibc's arenas serve slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::answer_arguments(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_DESCRIPTION"));
    let config = ProducerConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, platform::metrics::service_registry("producer")?)
        .await
        .context("start-up")?;
    app.run(stop).await.context("serving")?;
    Ok(())
}
