//! Command line of `pbill-edge` (also `pbill edge`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use pb_shared_billing::BackendChoice;

use crate::EdgeConfig;

/// Runs the edge: the community's billing authority and gateway.
///
/// The edge admits the cores listed in its configuration file, records the
/// cycle contexts an operator sends, collects every household's hidden data,
/// bills a cycle once all its members have submitted (or, after the dropout
/// deadline, once the survivors have sent their corrections) and hands each
/// core its own encrypted bill. State lives in `<data_dir>/edge.redb`;
/// restarting at any point loses nothing and never bills a cycle twice.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example edge.toml:

  community = \"sunny-street\"
  listen = \"tcp://0.0.0.0:5555\"
  data_dir = \"/var/lib/pbill/edge\"
  key_file = \"/etc/pbill/edge.key\"       # pbill keygen --out ...
  min_members = 3
  max_members = 100000                    # a bigger cycle is refused
  dropout_deadline_secs = 900
  operators = [\"<node id of the operator's key>\"]
  metrics = \"127.0.0.1:9464\"             # optional: Prometheus endpoint
                                          # http://127.0.0.1:9464/metrics
  [[members]]
  member = \"alice\"
  node = \"<node id printed by pbill keygen for alice's core>\"

  [limits]                                # optional; these are the defaults
  max_connections = 4096                  # each costs 3 file descriptors
  max_connections_per_address = 256
  message_timeout_secs = 10               # to finish a started request
  idle_timeout_secs = 3600
  requests_per_sec = 20                   # per enrolled node, sustained
  request_burst = 60

  [retention]                             # optional; these are the defaults
  keep_submissions_cycles = 0             # billed cycles' submissions kept
  keep_bills_secs_after_delivery = 2592000  # 30 days after first delivery")]
pub struct EdgeArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Endpoint to listen on, overriding the file (e.g. tcp://0.0.0.0:5555).
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Option<String>,
    /// Data directory, overriding the file.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace (RUST_LOG wins).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
    /// Compute backend for the homomorphic work: auto, cpu or cuda.
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    pub backend: BackendChoice,
}

/// Runs the edge from parsed arguments.
pub fn main(args: EdgeArgs) -> ExitCode {
    pb_net::init_logging(&args.log_level);
    let mut config = match EdgeConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pbill-edge: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    let (backend, said) = match pb_cuda::select_backend(args.backend) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pbill-edge: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!("{said}");
    let stop = Arc::new(AtomicBool::new(false));
    match crate::run(&config, backend, stop, |endpoint| {
        // One line on stdout for supervisors and scripts.
        println!("listening {endpoint}");
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pbill-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
