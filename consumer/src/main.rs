#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use anyhow::Context;
use consumer::{Application, ConsumerConfig};
use platform::Env;

fn main() -> anyhow::Result<()> {
    answer_arguments();
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?
        .block_on(run())
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
