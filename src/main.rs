//! The `jellydemon` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = jellydemon::cli::Cli::parse();
    jellydemon::telemetry::init(cli.default_log_level());
    jellydemon::cli::run(cli).await
}
