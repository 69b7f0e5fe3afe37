//! Benchmarks of the pipeline, each figure next to the limit it is measured
//! against in the same run. `bench --smoke` checks that every part works,
//! quickly, and asserts no timing.

mod end_to_end;
mod ingest;
mod load;
mod outbox;
mod persist;
mod read;
mod report;
mod services;
mod stats;
mod system;

use std::net::SocketAddr;
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
    /// Benchmarks to run (ingest, end-to-end, persist, read, outbox); all by default.
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<Part>,
    /// Longest the naive consumer runs, seconds.
    #[arg(long, default_value_t = 10.0)]
    naive_seconds: f64,
    /// A setting for every producer and consumer started, `KEY=VALUE`
    /// (e.g. `KAFKA_LINGER_MS=1`); repeatable.
    #[arg(long = "service-env", value_name = "KEY=VALUE")]
    service_env: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Ingest,
    EndToEnd,
    Persist,
    Read,
    Outbox,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP limit: an axum server answering `POST /orders` with 202.
    #[command(hide = true)]
    BareHttp {
        #[arg(long)]
        addr: SocketAddr,
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
}

impl Settings {
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
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::BareHttp { addr }) => runtime.block_on(services::serve_bare_http(addr)),
        None => {
            let settings = Settings::from_cli(&cli)?;
            services::set_service_env(&settings.service_env)?;
            runtime.block_on(bench(&settings, cli.smoke))
        }
    }
}

async fn bench(settings: &Settings, smoke: bool) -> anyhow::Result<()> {
    // The services are the binaries built beside this one.
    if std::env::var_os("PUBSUBKAFKA_BIN_DIR").is_none() {
        if let Some(dir) = std::env::current_exe()?.parent() {
            std::env::set_var("PUBSUBKAFKA_BIN_DIR", dir);
        }
    }
    let mut report = report::Report::default();
    for run in 1..=settings.runs {
        let mut saturation = None;
        if settings.runs_part(Part::Ingest) {
            eprintln!("run {run} of {}: ingest", settings.runs);
            saturation = Some(ingest::run(settings, &mut report).await?);
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
                end_to_end::run(settings, &mut report, rate, fetch_wait).await?;
            }
        }
        if settings.runs_part(Part::Persist) {
            eprintln!("run {run} of {}: persist", settings.runs);
            persist::run(settings, &mut report).await?;
        }
        if settings.runs_part(Part::Read) {
            eprintln!("run {run} of {}: read side", settings.runs);
            read::run(settings, &mut report).await?;
        }
        if settings.runs_part(Part::Outbox) {
            eprintln!(
                "run {run} of {}: outbox mode beside direct mode",
                settings.runs
            );
            outbox::run(settings, &mut report).await?;
        }
    }
    println!(
        "# PubSubKafka benchmarks{}\n",
        if smoke {
            " (smoke: not figures to quote)"
        } else {
            ""
        }
    );
    println!("machine: {}", system::machine());
    println!(
        "settings: {} run(s), {:?} load phases, {} clients at saturation, open-loop rates {:?}/s, \
         {} orders preloaded, {} raw messages, end to end at {:.0} % of saturation\n",
        settings.runs,
        settings.phase,
        settings.clients,
        settings.rates,
        settings.orders,
        settings.raw_messages,
        settings.e2e_fraction * 100.0
    );
    if !settings.service_env.is_empty() {
        println!("service settings: {}\n", settings.service_env.join(" "));
    }
    println!("{}", report.table());
    let missing = report.missing();
    anyhow::ensure!(
        missing.is_empty(),
        "figures not measured: {}",
        missing.join("; ")
    );
    Ok(())
}
