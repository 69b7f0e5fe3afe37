#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ops::dead_letters::Filter;
use ops::dlq::{ReaderGroup, ReplayArgs, Source};
use ops::lag::{GroupSpec, History, LagError};
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
        /// A replay group: mark each dead letter pending (not yet reached by
        /// its replays) or done (replayed, parked or passed over).
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        reader: ReaderGroup,
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
        #[command(flatten)]
        reader: ReaderGroup,
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
    /// The consumer group; repeat for several. NAME=TOPIC,TOPIC gives a
    /// group its own topics (the replay group reads the DLQs).
    #[arg(
        long = "group",
        env = "KAFKA_CONSUMER_GROUP",
        default_value = "order-consumer",
        value_name = "NAME[=TOPIC,...]"
    )]
    groups: Vec<String>,
    /// Topics of the groups that name none.
    #[arg(long, value_delimiter = ',', default_value = "orders,users")]
    topics: Vec<String>,
    /// Print JSON instead of a table (one object; an array for several groups).
    #[arg(long)]
    json: bool,
    /// Exit with status 2 when a group's total lag is above this.
    #[arg(long)]
    threshold: Option<i64>,
    /// Run as an exporter: serve /metrics on this address instead of printing once.
    #[arg(long)]
    serve: Option<std::net::SocketAddr>,
    /// Seconds between measurements (within --window, or when serving).
    #[arg(long, default_value_t = 15)]
    interval: u64,
    /// Seconds of measurements the verdicts (OK, WARN, STALL, STOP, REWIND)
    /// look at. Printing: measure every --interval for this long first
    /// (default 0: one measurement, no verdict unless caught up). Serving:
    /// the history kept (default 300).
    #[arg(long)]
    window: Option<u64>,
    /// Report a group that has no member and never committed (its
    /// consumers not started yet) instead of refusing it as unknown.
    #[arg(long)]
    allow_new_group: bool,
    /// Also report the producers' outbox (outbox mode): rows waiting and
    /// the oldest one's age, from this database.
    #[arg(long, env = "OUTBOX_DATABASE_URL", value_name = "URL")]
    outbox: Option<String>,
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

/// Writes the result to standard output. A reader that went away (`| head`)
/// is not an error: there is nobody left to tell.
fn emit(
    write: impl FnOnce(&mut ops::terminal::Escaped<std::io::StdoutLock<'static>>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    // What the tool prints comes in part from messages: escaped, so that
    // none of it drives the terminal.
    let mut out = ops::terminal::Escaped::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    emit(|out| {
        use std::io::Write;
        writeln!(out, "{text}")
    })
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
            group,
            reader,
        }) => {
            let listing = ops::dlq::list(
                &kafka()?,
                &source,
                &filter,
                limit,
                group.as_deref(),
                &reader,
            )?;
            if source.json {
                print_json(&listing)?;
            } else {
                emit(|out| ops::dlq::print_listing(out, &listing))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::Inspect {
            topic,
            partition,
            offset,
            reader,
        }) => {
            let domains = ops::dlq::domains(&env);
            print_json(&ops::dlq::inspect(
                &kafka()?,
                &domains,
                &topic,
                partition,
                offset,
                &reader,
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(DlqCommand::Replay {
            source,
            filter,
            args,
        }) => {
            let stop = platform::shutdown::on_signal();
            let domains = ops::dlq::domains(&env);
            let summary =
                ops::dlq::replay(&kafka()?, &domains, &source, &filter, &args, &stop).await?;
            if source.json {
                print_json(&summary)?;
            } else {
                emit(|out| {
                    use std::io::Write;
                    writeln!(
                        out,
                        "{}read {}, replayed {}, parked {}, skipped {}, failed {}, deferred {}",
                        if summary.dry_run { "dry run: " } else { "" },
                        summary.read,
                        summary.replayed,
                        summary.parked,
                        summary.skipped,
                        summary.failed,
                        summary.deferred
                    )?;
                    for line in summary.replayed_from.iter().filter(|_| summary.dry_run) {
                        writeln!(out, "  would replay {line}")?;
                    }
                    for parked in &summary.parked_letters {
                        writeln!(out, "  parked {parked}")?;
                    }
                    for failure in &summary.failures {
                        writeln!(out, "  failed {failure}")?;
                    }
                    Ok(())
                })?;
            }
            Ok(if summary.failed > 0 || summary.deferred > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Lag(args) => lag(kafka()?, args).await,
        Command::Order(args) => {
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
    }
}

/// The outbox's backlog, for `lag --outbox`.
#[derive(Debug, serde::Serialize)]
struct OutboxBacklog {
    rows: i64,
    oldest_seconds: f64,
}

async fn outbox_backlog(url: &str) -> anyhow::Result<OutboxBacklog> {
    let pool = store::db::pool(
        url,
        store::db::PoolSpec {
            application: "pubsubkafka-lag",
            max_connections: 1,
            acquire: Duration::from_secs(5),
            guards: store::db::SessionGuards::for_statements(Duration::from_secs(10)).read_only(),
        },
    )
    .context("OUTBOX_DATABASE_URL is not a PostgreSQL URL")?;
    let (rows, oldest_seconds) = store::outbox::backlog(&pool, Duration::from_secs(10))
        .await
        .with_context(|| {
            format!(
                "reading the outbox at {} (is it the database of PRODUCER_MODE=outbox?)",
                ops::dev::redact(url)
            )
        })?;
    pool.close().await;
    Ok(OutboxBacklog {
        rows,
        oldest_seconds,
    })
}

async fn lag(kafka: KafkaSettings, args: LagArgs) -> anyhow::Result<ExitCode> {
    let groups = args
        .groups
        .iter()
        .map(|spec| GroupSpec::parse(spec, &args.topics))
        .collect::<Result<Vec<_>, _>>()?;
    let interval = Duration::from_secs(args.interval.max(1));
    if let Some(addr) = args.serve {
        let stop = platform::shutdown::on_signal();
        let exporter = ops::serve::Exporter {
            groups,
            addr,
            interval,
            window: Duration::from_secs(args.window.unwrap_or(300)),
        };
        ops::serve::run(kafka, exporter, stop).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let window = Duration::from_secs(args.window.unwrap_or(0));
    let started = std::time::Instant::now();
    let mut histories: Vec<History> = groups.iter().map(|_| History::new(window)).collect();
    let brokers = kafka.bootstrap_servers.clone();
    let mut reports = Vec::new();
    let mut taken = 1;
    loop {
        reports.clear();
        for (spec, history) in groups.iter().zip(histories.iter_mut()) {
            let (kafka, name, topics) = (kafka.clone(), spec.name.clone(), spec.topics.clone());
            let lag =
                tokio::task::spawn_blocking(move || ops::lag::measure(&kafka, &name, &topics))
                    .await?
                    .with_context(|| {
                        format!("measuring the lag of group {:?} on {brokers}", spec.name)
                    })?;
            if !args.allow_new_group && !lag.known() {
                return Err(LagError::UnknownGroup {
                    group: spec.name.clone(),
                    topics: spec.topics.join(","),
                })
                .with_context(|| {
                    format!("measuring the lag of group {:?} on {brokers}", spec.name)
                });
            }
            reports.push(history.record(&lag));
        }
        // A window takes at least two measurements, however long one takes.
        let left = window.saturating_sub(started.elapsed());
        if window.is_zero() || (left.is_zero() && taken >= 2) {
            break;
        }
        taken += 1;
        tokio::time::sleep(left.min(interval)).await;
    }
    let outbox = match &args.outbox {
        Some(url) => Some(outbox_backlog(url).await?),
        None => None,
    };
    match (args.json, reports.as_slice(), &outbox) {
        (true, many, Some(outbox)) => {
            print_json(&serde_json::json!({ "groups": many, "outbox": outbox }))?
        }
        (true, [one], None) => print_json(one)?,
        (true, many, None) => print_json(&many)?,
        (false, many, _) => {
            if let Some(o) = &outbox {
                emit(|out| {
                    use std::io::Write;
                    writeln!(
                        out,
                        "outbox: {} row(s) waiting, the oldest {:.0} s old\n",
                        o.rows, o.oldest_seconds
                    )
                })?;
            }
            emit(|out| {
                many.iter()
                    .try_for_each(|report| ops::lag::print(out, report))
            })?;
        }
    }
    let mut code = ExitCode::SUCCESS;
    for report in &reports {
        if let Some(limit) = args.threshold.filter(|&limit| report.total > limit) {
            eprintln!(
                "total lag {} of group {} is above the threshold {limit}",
                report.total, report.group
            );
            code = ExitCode::from(2);
        }
    }
    Ok(code)
}
