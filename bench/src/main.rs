//! Benchmarks of the pipeline, each figure next to the limit it is measured
//! against in the same run. `bench --smoke` checks that every part works,
//! quickly, and asserts no timing. `bench summary` renders a run's results
//! (`--results FILE`) as a table and chart of the headline figures.

mod bridge;
mod broker;
mod chart;
mod connect;
mod console;
mod end_to_end;
mod follow;
mod ingest;
mod load;
mod outbox;
mod persist;
mod read;
mod report;
mod results;
mod services;
mod stats;
mod summary;
mod system;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Throughput, latency and memory of the pipeline, next to their limits")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// A quick check that every benchmark works (1 run, small loads).
    #[arg(long)]
    smoke: bool,
    /// Runs of every benchmark; figures are medians over them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Seconds of each load phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Concurrent HTTP clients at saturation: enough that the producer's
    /// own latency (linger, broker ack) does not cap its throughput.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Open-loop request rates, per second.
    #[arg(long, value_delimiter = ',', default_value = "500,1000,2000")]
    rates: Vec<f64>,
    /// Orders preloaded for the persistence benchmark.
    #[arg(long, default_value_t = 200_000)]
    orders: usize,
    /// Messages of the raw produce benchmark.
    #[arg(long, default_value_t = 200_000)]
    raw_messages: usize,
    /// End-to-end rate as a fraction of the run's ingest saturation.
    #[arg(long, default_value_t = 0.3)]
    e2e_fraction: f64,
    /// The broker: Apache Kafka, three nodes on this machine (the
    /// reference), or Tansu's memory broker (quick runs).
    #[arg(long, value_enum, default_value = "kafka")]
    broker: broker::BrokerKind,
    /// Benchmarks to run (ingest, end-to-end, persist, read, outbox, console); all by default.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Part>,
    /// Longest the naive consumer runs, seconds.
    #[arg(long, default_value_t = 10.0)]
    naive_seconds: f64,
    /// A setting for every producer and consumer started, `KEY=VALUE`
    /// (e.g. `KAFKA_LINGER_MS=1`); repeatable.
    #[arg(long = "service-env", value_name = "KEY=VALUE")]
    service_env: Vec<String>,
    /// Also writes the results as JSON to FILE, for `bench summary`.
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Ingest,
    EndToEnd,
    Persist,
    Read,
    Outbox,
    Console,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP limit: an axum server answering `POST /orders` with 202.
    #[command(hide = true)]
    BareHttp {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// Renders a run's results (JSON, from `--results`) as a table of the
    /// headline figures next to their baselines, and a chart of the ratios.
    Summary {
        /// The results, as `--results` wrote them.
        results: PathBuf,
        /// Writes the summary, as Markdown, to FILE.
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
        /// Writes the chart, as SVG, to FILE.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Replaces the summary between the markers of the Markdown FILE
        /// (puts it under the title when there is none yet).
        #[arg(long, value_name = "FILE")]
        update: Option<PathBuf>,
    },
    /// Reads a run's table, as the benchmarks printed it in Markdown, into
    /// results JSON.
    ImportTable {
        /// The Markdown holding the printed run.
        markdown: PathBuf,
        /// The heading of the section holding the run (the whole file if not given).
        #[arg(long)]
        heading: Option<String>,
        /// When the run was made, `YYYY-MM-DD`.
        #[arg(long)]
        date: String,
        /// The broker the run used, if known.
        #[arg(long)]
        broker: Option<String>,
        /// Where to write the results.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// What every benchmark of a run uses.
pub struct Settings {
    pub runs: usize,
    pub phase: Duration,
    pub clients: usize,
    pub rates: Vec<f64>,
    pub orders: usize,
    pub raw_messages: usize,
    pub e2e_fraction: f64,
    pub naive_limit: Duration,
    pub only: Vec<Part>,
    pub service_env: Vec<String>,
    pub broker: broker::BrokerKind,
    /// A smoke run: every part works, no figure to quote.
    pub smoke: bool,
}

impl Settings {
    /// The settings, as a run prints and records them.
    fn describe(&self) -> String {
        format!(
            "{} run(s), {:?} load phases, {} clients at saturation, open-loop rates {:?}/s, \
             {} orders preloaded, {} raw messages, end to end at {:.0} % of saturation",
            self.runs,
            self.phase,
            self.clients,
            self.rates,
            self.orders,
            self.raw_messages,
            self.e2e_fraction * 100.0
        )
    }

    fn runs_part(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }

    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        anyhow::ensure!(cli.runs > 0, "--runs must be at least 1");
        anyhow::ensure!(
            cli.seconds > 0.0 && cli.naive_seconds > 0.0,
            "--seconds and --naive-seconds must be positive"
        );
        anyhow::ensure!(
            cli.e2e_fraction > 0.0 && cli.e2e_fraction <= 1.0,
            "--e2e-fraction must be in (0, 1]"
        );
        anyhow::ensure!(
            cli.rates.iter().all(|r| *r > 0.0),
            "--rates must be positive"
        );
        if cli.smoke {
            return Ok(Self {
                runs: 1,
                phase: Duration::from_secs(1),
                clients: 8,
                rates: vec![100.0],
                orders: 2_000,
                raw_messages: 2_000,
                e2e_fraction: 0.1,
                naive_limit: Duration::from_secs(2),
                only: cli.only.clone(),
                service_env: cli.service_env.clone(),
                broker: cli.broker,
                smoke: true,
            });
        }
        Ok(Self {
            runs: cli.runs,
            phase: Duration::from_secs_f64(cli.seconds),
            clients: cli.clients,
            rates: cli.rates.clone(),
            orders: cli.orders,
            raw_messages: cli.raw_messages,
            e2e_fraction: cli.e2e_fraction,
            naive_limit: Duration::from_secs_f64(cli.naive_seconds),
            only: cli.only.clone(),
            service_env: cli.service_env.clone(),
            broker: cli.broker,
            smoke: false,
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::BareHttp { addr }) => {
            tokio::runtime::Runtime::new()?.block_on(services::serve_bare_http(*addr))
        }
        Some(Command::Summary {
            results,
            markdown,
            svg,
            update,
        }) => summary::write(
            results,
            &summary::Outputs {
                markdown: markdown.clone(),
                svg: svg.clone(),
                update: update.clone(),
            },
        ),
        Some(Command::ImportTable {
            markdown,
            heading,
            date,
            broker,
            out,
        }) => {
            let text = std::fs::read_to_string(markdown)?;
            results::Results::import(&text, heading.as_deref(), date, broker.as_deref())?.write(out)
        }
        None => {
            let settings = Settings::from_cli(&cli)?;
            services::set_service_env(&settings.service_env)?;
            let report = tokio::runtime::Runtime::new()?.block_on(bench(&settings))?;
            finish(&settings, cli.smoke, cli.results.as_deref(), report)
        }
    }
}

async fn bench(settings: &Settings) -> anyhow::Result<report::Report> {
    // The services are the binaries built beside this one.
    if std::env::var_os("PUBSUBKAFKA_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("PUBSUBKAFKA_BIN_DIR", dir);
        }
    }
    let mut report = report::Report::default();
    let mut broker = broker::Broker::start(settings.broker).await;
    eprintln!("warming the broker: {} messages", settings.raw_messages);
    ingest::raw_produce(broker.bootstrap(), settings.raw_messages).await?;
    for run in 1..=settings.runs {
        let mut saturation = None;
        if settings.runs_part(Part::Ingest) {
            eprintln!("run {run} of {}: ingest", settings.runs);
            broker.fresh().await;
            saturation = Some(ingest::run(settings, &mut report, &broker).await?);
        }
        if settings.runs_part(Part::EndToEnd) {
            // Without an ingest run, the rate is a share of the top open-loop rate.
            let top = settings.rates.iter().copied().fold(0.0, f64::max);
            let rate = saturation.unwrap_or(top) * settings.e2e_fraction;
            for fetch_wait in [
                end_to_end::FETCH_WAIT_DEFAULT_MS,
                end_to_end::FETCH_WAIT_SHORT_MS,
            ] {
                eprintln!(
                    "run {run} of {}: end to end, fetch.wait.max.ms {fetch_wait}",
                    settings.runs
                );
                broker.fresh().await;
                end_to_end::run(settings, &mut report, &broker, rate, fetch_wait).await?;
            }
        }
        if settings.runs_part(Part::Persist) {
            eprintln!("run {run} of {}: persist", settings.runs);
            broker.fresh().await;
            persist::run(settings, &mut report, &broker).await?;
        }
        if settings.runs_part(Part::Read) {
            eprintln!("run {run} of {}: read side", settings.runs);
            broker.fresh().await;
            read::run(settings, &mut report, &broker).await?;
        }
        if settings.runs_part(Part::Outbox) {
            eprintln!(
                "run {run} of {}: outbox mode beside direct mode",
                settings.runs
            );
            broker.fresh().await;
            outbox::run(settings, &mut report, &broker).await?;
        }
        if settings.runs_part(Part::Console) {
            eprintln!("run {run} of {}: console overview", settings.runs);
            broker.fresh().await;
            console::run(&mut report, &broker, settings.smoke).await?;
        }
    }
    Ok(report)
}

/// Prints the run's figures, writes its results, and fails when a figure
/// was not measured. A smoke run also checks the summary works.
fn finish(
    settings: &Settings,
    smoke: bool,
    results_path: Option<&Path>,
    report: report::Report,
) -> anyhow::Result<()> {
    let results = results::Results {
        date: system::today(),
        machine: system::machine(),
        settings: settings.describe(),
        service_settings: (!settings.service_env.is_empty())
            .then(|| settings.service_env.join(" ")),
        broker: Some(settings.broker.describe()),
        smoke,
        source: "measured".into(),
        report,
    };
    println!(
        "# PubSubKafka benchmarks{}\n",
        if smoke {
            " (smoke: not figures to quote)"
        } else {
            ""
        }
    );
    println!("machine: {}", results.machine);
    if let Some(broker) = &results.broker {
        println!("broker: {broker}");
    }
    println!("settings: {}\n", results.settings);
    if let Some(service) = &results.service_settings {
        println!("service settings: {service}\n");
    }
    println!("{}", results.report.table());
    if let Some(path) = results_path {
        results.write(path)?;
    }
    if smoke {
        smoke_summary(&results, results_path)?;
    }
    let missing = results.report.missing();
    anyhow::ensure!(
        missing.is_empty(),
        "figures not measured: {}",
        missing.join("; ")
    );
    Ok(())
}

/// Checks, in a directory of its own, that the results written read back,
/// that the printed table reads back, and that the summary renders and
/// updates a notebook.
fn smoke_summary(results: &results::Results, written: Option<&Path>) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let checked = (|| {
        let json = match written {
            Some(path) => path.to_path_buf(),
            None => {
                let path = dir.join("results.json");
                results.write(&path)?;
                path
            }
        };
        let table = results.report.table();
        anyhow::ensure!(
            report::Report::parse_table(&table)?.table() == table,
            "the printed table does not read back as printed"
        );
        let notebook = dir.join("RESULTS.md");
        std::fs::write(&notebook, "# Benchmark results\n\nNotes.\n")?;
        let outputs = summary::Outputs {
            markdown: Some(dir.join("summary.md")),
            svg: Some(dir.join("summary.svg")),
            update: Some(notebook.clone()),
        };
        summary::write(&json, &outputs)?;
        summary::write(&json, &outputs)?;
        let updated = std::fs::read_to_string(&notebook)?;
        anyhow::ensure!(
            updated.matches(summary::START).count() == 1
                && updated.contains("](summary.svg)")
                && updated.ends_with("Notes.\n"),
            "the summary did not update the notebook in place:\n{updated}"
        );
        let svg = std::fs::read_to_string(dir.join("summary.svg"))?;
        anyhow::ensure!(
            svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
            "the chart is not an SVG document"
        );
        eprintln!("smoke: results, summary and chart rendered");
        Ok(())
    })();
    std::fs::remove_dir_all(&dir)?;
    checked
}
