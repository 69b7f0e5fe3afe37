use clap::{Parser, Subcommand};

/// Operator tool of the order pipeline.
#[derive(Debug, Parser)]
#[command(name = "pubsubkafka", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: broker, producer, consumer.
    Dev(ops::dev::DevArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Dev(args) => ops::dev::run(args).await,
    }
}
