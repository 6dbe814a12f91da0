//! The `jellydemon` binary: parse the command line and hand over to the library (which sets
//! up logging once the configuration is loaded).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = jellydemon::cli::Cli::parse();
    jellydemon::cli::run(cli).await
}
