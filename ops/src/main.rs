#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ops::dead_letters::Filter;
use ops::dlq::{ReplayArgs, Source};
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
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List dead letters, grouped and counted by error class.
    List {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        /// Most dead letters to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter in full, its payload decoded where possible.
    Inspect {
        /// The dead-letter topic.
        #[arg(long, default_value = contract::topics::ORDERS_DLQ)]
        topic: String,
        /// Partition of the dead letter in the DLQ.
        #[arg(long)]
        partition: i32,
        /// Offset of the dead letter in the DLQ.
        #[arg(long)]
        offset: i64,
    },
    /// Republish selected dead letters to their original topic.
    Replay {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        args: ReplayArgs,
    },
}

#[derive(Debug, clap::Args)]
struct LagArgs {
    /// The consumer group.
    #[arg(long, env = "KAFKA_CONSUMER_GROUP", default_value = "order-consumer")]
    group: String,
    /// Topics the group reads.
    #[arg(long, value_delimiter = ',', default_value = "orders,users")]
    topics: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Exit with status 2 when the total lag is above this.
    #[arg(long)]
    threshold: Option<i64>,
    /// Run as an exporter: serve /metrics on this address instead of printing once.
    #[arg(long)]
    serve: Option<std::net::SocketAddr>,
    /// Seconds between measurements when serving.
    #[arg(long, default_value_t = 15)]
    interval: u64,
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

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let env = environment(cli.bootstrap_server.as_deref());
    let kafka = || KafkaSettings::from_env(&env).context("configuration");
    let command = cli.command;
    // Kept until main returns, so that spans are flushed on the way out
    // (`dev` sets up the services' own).
    let _telemetry = match command {
        Command::Dev(_) => None,
        _ => {
            let config = platform::telemetry::TelemetryConfig::for_terminal(
                &Env::from_process(),
                "pubsubkafka",
            )?;
            Some(platform::telemetry::init(&config)?)
        }
    };
    match command {
        Command::Dev(mut args) => {
            if args.broker.is_none() {
                args.broker = cli.bootstrap_server;
            }
            ops::dev::run(args).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::List {
            source,
            filter,
            limit,
        }) => {
            let listing = ops::dlq::list(&kafka()?, &source, &filter, limit)?;
            if source.json {
                print_json(&listing)?;
            } else {
                ops::dlq::print_listing(&listing);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::Inspect {
            topic,
            partition,
            offset,
        }) => {
            let domains = ops::dlq::domains(&env);
            print_json(&ops::dlq::inspect(
                &kafka()?,
                &domains,
                &topic,
                partition,
                offset,
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::Replay {
            source,
            filter,
            args,
        }) => {
            let stop = platform::shutdown::on_signal();
            let summary = ops::dlq::replay(&kafka()?, &source, &filter, &args, &stop).await?;
            if source.json {
                print_json(&summary)?;
            } else {
                println!(
                    "{}read {}, replayed {}, parked {}, skipped {}, failed {}, deferred {}",
                    if summary.dry_run { "dry run: " } else { "" },
                    summary.read,
                    summary.replayed,
                    summary.parked,
                    summary.skipped,
                    summary.failed,
                    summary.deferred
                );
                for line in summary.replayed_from.iter().filter(|_| summary.dry_run) {
                    println!("  would replay {line}");
                }
                for failure in &summary.failures {
                    println!("  failed {failure}");
                }
            }
            Ok(if summary.failed > 0 || summary.deferred > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Lag(args) => {
            let kafka = kafka()?;
            if let Some(addr) = args.serve {
                let stop = platform::shutdown::on_signal();
                let interval = Duration::from_secs(args.interval.max(1));
                ops::serve::run(kafka, args.group, args.topics, addr, interval, stop).await?;
                return Ok(ExitCode::SUCCESS);
            }
            let (group, topics) = (args.group.clone(), args.topics.clone());
            let brokers = kafka.bootstrap_servers.clone();
            let lag =
                tokio::task::spawn_blocking(move || ops::lag::measure(&kafka, &group, &topics))
                    .await?
                    .with_context(|| {
                        format!("measuring the lag of group {:?} on {brokers}", args.group)
                    })?;
            if args.json {
                print_json(&lag)?;
            } else {
                ops::lag::print(&lag);
            }
            Ok(match args.threshold {
                Some(limit) if lag.total > limit => {
                    eprintln!("total lag {} is above the threshold {limit}", lag.total);
                    ExitCode::from(2)
                }
                _ => ExitCode::SUCCESS,
            })
        }
    }
}
