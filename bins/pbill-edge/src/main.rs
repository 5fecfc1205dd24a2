//! `pbill-edge`: see `pbill-edge --help`.

use clap::Parser;

// jemalloc returns freed memory to the system (glibc keeps it in per-thread
// arenas): the edge's resident memory follows what it holds (at 2,000
// members its peak was 158 MiB against 229 MiB with glibc's allocator).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
