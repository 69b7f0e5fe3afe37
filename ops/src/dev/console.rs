//! The console of `dev`: `pubsubkafka console` in the same process, on the
//! dev pipeline's broker, database and metrics, replays allowed, signed in
//! with a token made for this run (printed in the banner).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::console::{self, ConsoleArgs};

/// The console's command line, to build [`ConsoleArgs`] as the operator's
/// `console` subcommand would.
#[derive(Parser)]
struct Line {
    #[command(flatten)]
    args: ConsoleArgs,
}

/// What `dev` needs to start the console.
pub struct Plan<'a> {
    /// Where it listens.
    pub addr: &'a str,
    /// The dev broker.
    pub bootstrap: &'a str,
    /// The consumer's and the producer's `/metrics`.
    pub consumer: SocketAddr,
    pub producer: SocketAddr,
    /// The dev database.
    pub database_url: &'a str,
}

/// A running console: where, and the token that signs in.
pub struct Running {
    pub addr: SocketAddr,
    pub token: String,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the console of `plan` until `stop`.
pub async fn start(plan: &Plan<'_>, stop: &CancellationToken) -> anyhow::Result<Running> {
    let consumer = format!("http://{}/metrics", plan.consumer);
    let producer = format!("http://{}/metrics", plan.producer);
    let line = Line::try_parse_from([
        "console",
        "--listen",
        plan.addr,
        "--allow-replay",
        "--bootstrap-server",
        plan.bootstrap,
        "--database-url",
        plan.database_url,
        "--consumer-metrics",
        &consumer,
        "--producer-metrics",
        &producer,
    ])
    .context("the console's options")?;
    // A run of its own: a laptop's console needs no secret kept.
    let token = console::security::random_token();
    let console = console::Console::new(&line.args, token.clone())?;
    let listener = tokio::net::TcpListener::bind(plan.addr)
        .await
        .with_context(|| format!("binding the console to {}", plan.addr))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(console::serve(listener, console, stop.clone()));
    Ok(Running { addr, token, task })
}
