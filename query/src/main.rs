#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use platform::Env;
use query::{Application, QueryConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = QueryConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, prometheus::Registry::new())
        .await
        .context("start-up")?;
    app.run(stop).await.context("serving")?;
    Ok(())
}
