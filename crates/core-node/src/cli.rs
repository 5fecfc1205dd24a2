//! Command line of `pbill-core` (also `pbill core`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::CoreConfig;

/// Runs one household's core.
///
/// The core keeps the household's secret keys in `<data_dir>/core.redb`,
/// joins the community at the edge, and serves the household API (JSON over
/// a local ZeroMQ socket, see docs/api.md): the household's software
/// submits its promises and meter values per cycle and asks for its bill.
/// The core masks and encrypts the data before anything leaves it and
/// decrypts the bill when the edge has computed it.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example core.toml:

  member = \"alice\"
  community = \"sunny-street\"
  edge = \"tcp://edge.example:5555\"
  edge_node = \"<node id of the edge>\"
  listen = \"tcp://127.0.0.1:6000\"        # household API, keep it local
  data_dir = \"/var/lib/pbill/core\"
  key_file = \"/etc/pbill/core.key\"       # pbill keygen --out ...
  poll_millis = 1000
  request_timeout_millis = 10000
  # metrics = \"127.0.0.1:9465\"           # optional: Prometheus endpoint
  # secrets_passphrase_file = \"/etc/pbill/core.pass\"  # optional: encrypts
  #                                 the household's keys in the store")]
pub struct CoreArgs {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Household API endpoint, overriding the file.
    #[arg(long, value_name = "ENDPOINT")]
    pub listen: Option<String>,
    /// Data directory, overriding the file.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace (RUST_LOG wins).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

/// Runs the core from parsed arguments.
pub fn main(args: CoreArgs) -> ExitCode {
    pb_net::init_logging(&args.log_level);
    let mut config = match CoreConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pbill-core: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    let stop = Arc::new(AtomicBool::new(false));
    match crate::run(&config, stop, |endpoint| println!("listening {endpoint}")) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pbill-core: {e}");
            ExitCode::FAILURE
        }
    }
}
