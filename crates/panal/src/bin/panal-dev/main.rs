//! `panal-dev`: drill and benchmark tools for the event bus, built beside
//! `panal` and kept out of it (the image ships `panal` alone). They drive the
//! real bus code against any broker: `bench/bus.sh` and the bus drills in
//! `crates/panal/tests/cli/bus.rs` use them.

mod dev;
mod dev_raw;
mod dev_ws;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "panal-dev", version, about = "Panal's drill and benchmark tools (not part of the product)")]
struct Cli {
    /// Configuration file (default: ./panal.toml when it exists). Environment
    /// variables PANAL_* override it.
    #[arg(long, global = true, env = "PANAL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: dev::DevCommand,
}

fn main() -> ExitCode {
    kit::install_crypto();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (config, telemetry) = match kit::telemetry::start(cli.config.as_deref(), "panal-dev", runtime.handle()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(dev::run(config, cli.command));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
