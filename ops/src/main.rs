#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ops::dlq::DlqCommand;
use ops::lag::LagArgs;
use ops::terminal::{emit, print_json};
use platform::kafka::KafkaSettings;
use platform::Env;

/// Operator tool of the order pipeline. Kafka settings come from the same
/// environment as the services (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_*`).
#[derive(Debug, Parser)]
#[command(name = "pubsubkafka", version, about)]
struct Cli {
    /// Kafka bootstrap servers (host:port,...), instead of
    /// KAFKA_BOOTSTRAP_SERVERS; for `dev`, an external broker to use.
    #[arg(long, global = true, value_name = "HOST:PORT,...")]
    bootstrap_server: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: broker, producer, consumer.
    Dev(ops::dev::DevArgs),
    /// Inspect and replay dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Consumer lag of a group, from the broker (works while the consumer is down).
    Lag(LagArgs),
    /// What became of one order (or user): status, events and where each
    /// sits in Kafka, dead letters and where they sit in the DLQ.
    Order(ops::order::OrderArgs),
}

/// The tool's environment, with `--bootstrap-server` over
/// KAFKA_BOOTSTRAP_SERVERS.
fn environment(bootstrap: Option<&str>) -> Env {
    let env = Env::from_process();
    match bootstrap {
        Some(servers) => env.with("KAFKA_BOOTSTRAP_SERVERS", servers),
        None => env,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let env = environment(cli.bootstrap_server.as_deref());
    let kafka = || KafkaSettings::from_env(&env).context("configuration");
    // Kept until main returns, so that spans are flushed on the way out
    // (`dev` sets up the services' own).
    let _telemetry = match cli.command {
        Command::Dev(_) => None,
        _ => {
            let config = platform::telemetry::TelemetryConfig::for_terminal(
                &Env::from_process(),
                "pubsubkafka",
            )?;
            Some(platform::telemetry::init(&config)?)
        }
    };
    match cli.command {
        Command::Dev(mut args) => {
            if args.broker.is_none() {
                args.broker = cli.bootstrap_server;
            }
            ops::dev::run(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Dlq(command) => command.run(kafka()?, &env).await,
        Command::Lag(args) => ops::lag::run(kafka()?, args).await,
        Command::Order(args) => order(args).await,
    }
}

/// `order`: the story of one order or user; exit status 3 when it is not
/// found.
async fn order(args: ops::order::OrderArgs) -> anyhow::Result<ExitCode> {
    let story = ops::order::story(&args).await?;
    if args.json {
        print_json(&story)?;
    } else {
        emit(|out| ops::order::print(out, &story))?;
    }
    Ok(if story.status == "not_found" {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
