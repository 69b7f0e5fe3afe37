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
    answer_arguments();
    let config = ProducerConfig::from_env(&Env::from_process()).context("configuration")?;
    let _telemetry = platform::telemetry::init(&config.telemetry)?;
    let stop = platform::shutdown::on_signal();
    let app = Application::build(config, platform::metrics::service_registry("producer")?)
        .await
        .context("start-up")?;
    app.run(stop).await.context("serving")?;
    Ok(())
}

/// The service takes its configuration from the environment, not from
/// arguments: `--version` (`-V`) and `--help` (`-h`) answer and exit 0,
/// anything else is refused with exit code 2 before anything starts.
fn answer_arguments() {
    let name = env!("CARGO_PKG_NAME");
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some(first) = args.first() else {
        return;
    };
    match (first.to_str(), args.len()) {
        (Some("--version" | "-V"), 1) => println!("{name} {}", env!("CARGO_PKG_VERSION")),
        (Some("--help" | "-h"), 1) => println!(
            "{name} {}: {}\n\nUsage: {name} [--version | --help]\n\n\
             Takes no arguments: its configuration comes from the environment \
             (the README's configuration table).",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_DESCRIPTION"),
        ),
        _ => {
            eprintln!(
                "{name}: unexpected argument {first:?}: it takes only --version or --help; \
                 its configuration comes from the environment (the README's configuration table)"
            );
            std::process::exit(2);
        }
    }
    std::process::exit(0);
}
