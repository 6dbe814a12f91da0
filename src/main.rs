//! The `jellydemon` binary: parse the command line and hand over to the library (which sets
//! up logging once the configuration is loaded).

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = jellydemon::cli::Cli::parse();
    jellydemon::cli::run(cli).await
}
