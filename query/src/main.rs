#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use platform::Env;
use query::{Application, QueryConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::startup::answer_arguments(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_DESCRIPTION"));
    let config = QueryConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, platform::metrics::service_registry("query")?)
        .await
        .context("start-up")?;
    app.run(stop).await.context("serving")?;
    Ok(())
}
