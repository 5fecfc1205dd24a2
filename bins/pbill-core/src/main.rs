//! `pbill-core`: see `pbill-core --help`.

use clap::Parser;

/// The core daemon of private-billing.
#[derive(Debug, Parser)]
#[command(name = "pbill-core", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: pb_core::cli::CoreArgs,
}

fn main() -> std::process::ExitCode {
    pb_core::cli::main(Cli::parse().args)
}
