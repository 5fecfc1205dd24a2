//! `pbill-edge`: see `pbill-edge --help`.

use clap::Parser;

/// The edge daemon of private-billing.
#[derive(Debug, Parser)]
#[command(name = "pbill-edge", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: pb_edge::cli::EdgeArgs,
}

fn main() -> std::process::ExitCode {
    pb_edge::cli::main(Cli::parse().args)
}
