//! `pbill-bench`: the edge under load and under fire, beside the
//! household's and operator's `pbill` (as `redis-benchmark` and `pgbench`
//! stand beside their servers).
//!
//! * `pbill-bench load`: one edge process on loopback and, in this
//!   process, every member of a large community with its own keys, its
//!   own signed requests and SecAgg+ state; reports acceptance latency,
//!   the edge's memory and disk, the latency of requests made while it
//!   bills, and checks every bill (`--report FILE.json`).
//! * `pbill-bench drill`: the edge and the cores as processes, killed with
//!   SIGKILL at random moments over many cycles; checks that every cycle
//!   is billed exactly once with exact bills and no submission is lost.

use std::process::ExitCode;

// jemalloc returns freed memory to the system (glibc keeps it in per-thread
// arenas): the edge's resident memory follows what it holds (at 2,000
// members its peak was 158 MiB against 229 MiB with glibc's allocator).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Parser, Subcommand};
use pbill::{drill, load};

/// Load test and crash drill of a private-billing edge.
#[derive(Parser, Debug)]
#[command(
    name = "pbill-bench",
    version,
    about = "Load test and crash drill of a private-billing edge (beside pbill)",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load test of the edge: one edge process on loopback and, in this
    /// process, every member of a large community with its own keys. The
    /// SecAgg+ rounds run as phases (advertise, share, then the timed
    /// window in which each member submits its masked data once at a
    /// random moment, confirm, reveal); --dropout-rate members vanish
    /// before the cycle, --unmask-dropout-rate members before unmasking.
    /// Prints acceptance latency percentiles, the edge's memory and disk,
    /// the latency of requests made while the edge unmasks and bills, and
    /// checks that every submitter's bill decrypts to the plaintext
    /// model's; exits non-zero if any bill is missing or differs.
    Load(load::LoadArgs),
    /// Crash drill: a community of processes on loopback whose edge and
    /// cores are killed with SIGKILL at random moments and restarted.
    /// Checks that every cycle is billed exactly once, that every bill
    /// equals the plaintext model and that no submission is lost; prints
    /// the kills survived. Exits non-zero on any failure.
    Drill(drill::DrillArgs),
    /// The edge daemon (the load test and the drill start their edge as
    /// this subcommand of themselves).
    #[command(hide = true)]
    Edge(pb_edge::cli::EdgeArgs),
    /// The core daemon (started by the drill).
    #[command(hide = true)]
    Core(pb_core::cli::CoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Load(args) => load::run(&args),
        Command::Drill(args) => drill::run(&args),
        Command::Edge(args) => return pb_edge::cli::main(args),
        Command::Core(args) => return pb_core::cli::main(args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
