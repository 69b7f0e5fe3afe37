#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ops::dlq::DlqCommand;
use ops::kafka::KafkaArgs;
use ops::lag::LagArgs;
use ops::terminal::{emit, print_json};
use platform::kafka::KafkaSettings;
use platform::Env;

/// Operator tool of the order pipeline. Kafka settings come from the same
/// environment as the services (`KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_*`).
#[derive(Debug, Parser)]
#[command(name = "pubsubkafka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: broker, producer, consumer.
    Dev {
        /// An external broker to use (host:port,...), as --broker.
        #[arg(long, value_name = "HOST:PORT,...")]
        bootstrap_server: Option<String>,
        #[command(flatten)]
        args: ops::dev::DevArgs,
    },
    /// Serve the operator's console in the browser: overview, dead
    /// letters, replay, order lookup (needs API_TOKEN).
    Console(ops::console::ConsoleArgs),
    /// Inspect and replay dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Consumer lag of a group, from the broker (works while the consumer is down).
    Lag(LagArgs),
    /// What became of one order (or user): status, events and where each
    /// sits in Kafka, dead letters and where they sit in the DLQ (read from
    /// PostgreSQL only).
    Order(ops::order::OrderArgs),
}

impl Command {
    /// Whether the command prints JSON, its errors included.
    fn json(&self) -> bool {
        match self {
            Self::Dev { .. } | Self::Console(_) => false,
            Self::Dlq(command) => command.json(),
            Self::Lag(args) => args.json,
            Self::Order(args) => args.json,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(refused) => {
            return ops::cli::refused(&refused, ops::cli::asks_for_json(std::env::args_os()))
        }
    };
    let json = cli.command.json();
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command)));
    match ran {
        Ok(code) => code,
        Err(error) => ops::cli::report(&error, json),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    // Kept until the command returns, so that spans are flushed on the way
    // out (`dev` sets up the services' own).
    let _telemetry = match command {
        Command::Dev { .. } => None,
        _ => {
            let config = platform::telemetry::TelemetryConfig::for_terminal(
                &Env::from_process(),
                "pubsubkafka",
            )?;
            Some(platform::telemetry::init(&config)?)
        }
    };
    let kafka = |args: &KafkaArgs| {
        let env = args.environment();
        KafkaSettings::from_env(&env)
            .context("configuration")
            .map(|settings| (settings, env))
    };
    match command {
        Command::Dev {
            bootstrap_server,
            mut args,
        } => {
            if args.broker.is_none() {
                args.broker = bootstrap_server;
            }
            ops::dev::run(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Dlq(command) => {
            let (settings, env) = kafka(command.kafka())?;
            command.check(&env)?;
            // A one-shot command's first look at Kafka: a broker that
            // refuses or a credential refused fails it at once.
            ops::kafka::reach_async(&settings).await?;
            command.run(settings, &env).await
        }
        Command::Console(args) => ops::console::run(args).await,
        Command::Lag(args) => {
            let settings = kafka(&args.kafka)?.0;
            // The exporter starts whatever Kafka's state: its readiness
            // and metrics say what it cannot measure.
            if args.serve.is_none() {
                ops::kafka::reach_async(&settings).await?;
            }
            ops::lag::run(settings, args).await
        }
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
