//! The edge server: billing authority and gateway of the community.
//!
//! It admits the cores listed in its configuration, keeps the operator's
//! signed member lists and the cycles in a redb store, carries each
//! cycle's SecAgg+ rounds ([`rounds`]) as persisted events, unmasks the
//! survivors' aggregate, then bills the cycle from the store in batches
//! between requests ([`pb_shared_billing::CycleBiller`]), each batch of
//! bills committed with its progress marker, and hands each core its own
//! bill. It never holds a key that opens a household's data.
//!
//! [`run`] serves until shut down; [`Service`] is the transport-free logic.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod metrics;
pub mod rounds;
pub mod service;
pub mod store;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use pb_net::Server;
use pb_protocol::NodeKey;
use pb_shared_billing::ComputeBackend;
use thiserror::Error;

pub use config::{Admission, EdgeConfig, Enrollment, Limits, Role, Rotation, TransportAdmission};
pub use service::{Counters, RotationRefused, Service, ServiceConfig};
pub use store::EdgeStore;

/// Why the edge cannot start or go on.
#[derive(Debug, Error)]
pub enum EdgeError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The store failed or holds something unreadable.
    #[error("store: {0}")]
    Store(String),
    /// The store file is not an edge store, or is damaged; it was not
    /// changed.
    #[error(
        "store {}: cannot be read ({detail}); it is not an edge store or it is damaged, and it \
         was left as it is: restore it from a backup, or move it away to start an empty store",
        path.display()
    )]
    StoreUnreadable {
        /// The file.
        path: std::path::PathBuf,
        /// What redb said.
        detail: String,
    },
    /// The store was written by a newer edge; it was not changed.
    #[error(
        "store {}: format {found}, written by a newer pb-edge (this one reads formats up to \
         {supported}); it was left as it is: run the newer pb-edge on it, or restore a backup \
         made by this version",
        path.display()
    )]
    StoreTooNew {
        /// The file.
        path: std::path::PathBuf,
        /// Its format.
        found: u64,
        /// The newest format this edge reads.
        supported: u64,
    },
    /// Another process has the store open.
    #[error(
        "store {}: already open in another process (stop the other edge, or give this one its \
         own data_dir)",
        .0.display()
    )]
    StoreInUse(std::path::PathBuf),
    /// The disk holding the store is full (or the file size limit or quota
    /// is reached): the write was refused and undone, everything stored
    /// before is intact.
    #[error(
        "store full: {0}; the write was refused and nothing stored before is damaged: free disk \
         space (or raise the file size limit) and retry"
    )]
    StoreFull(String),
    /// A submission for a cycle whose billing has started.
    #[error("{0}: billing has started, no more submissions are stored for it")]
    BillingStarted(pb_units::CycleId),
    /// The key file.
    #[error("key: {0}")]
    Key(#[from] pb_protocol::KeyFileError),
    /// Transport.
    #[error(transparent)]
    Net(#[from] pb_net::NetError),
    /// Runtime.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] pb_metrics::MetricsError),
}

/// How often deadlines are checked when no request arrives.
const TICK: Duration = Duration::from_millis(200);

/// Opens the store and the service for `config`.
pub fn open_service(
    config: &EdgeConfig,
    backend: Box<dyn ComputeBackend>,
) -> Result<Service, EdgeError> {
    let key = NodeKey::read_file(&config.key_file)?;
    let store = EdgeStore::open_with_cache(&config.data_dir, config.store_cache_mib << 20)?;
    Service::open(
        store,
        backend,
        ServiceConfig {
            community: config.community_id()?,
            key,
            admission: config.admission()?,
            min_members: config.min_members,
            deadline: Duration::from_secs(config.dropout_deadline_secs),
            max_members: config.max_members,
            retention: config.retention.clone(),
            round_time: Duration::from_secs(config.round_secs),
            requests_per_sec: NonZeroU32::new(config.limits.requests_per_sec).ok_or_else(|| {
                EdgeError::Config("limits.requests_per_sec: must be at least 1".into())
            })?,
            request_burst: NonZeroU32::new(config.limits.request_burst).ok_or_else(|| {
                EdgeError::Config("limits.request_burst: must be at least 1".into())
            })?,
        },
    )
}

/// An edge started by [`spawn`].
#[derive(Debug)]
pub struct Running {
    /// The bound endpoint, port resolved.
    pub endpoint: String,
    /// The edge's node id.
    pub node: pb_protocol::NodeId,
    /// Where the metrics are served (`http://ADDR/metrics`), if enabled.
    pub metrics: Option<std::net::SocketAddr>,
    thread: std::thread::JoinHandle<Counters>,
}

impl Running {
    /// Waits for the edge to stop (after `stop` was set); returns what it did.
    pub fn join(self) -> Counters {
        self.thread.join().unwrap_or_default()
    }
}

/// Starts the edge's service thread on the runtime `rt` until `stop` is set.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    config: &EdgeConfig,
    backend: Box<dyn ComputeBackend>,
    stop: Arc<AtomicBool>,
) -> Result<Running, EdgeError> {
    let mut service = open_service(config, backend)?;
    // Before the edge listens: a metrics address that cannot be bound
    // stops the start-up with nothing left running.
    let mut metrics = match &config.metrics {
        Some(addr) => Some(metrics::EdgeMetrics::start(
            addr,
            &config.data_dir,
            &service,
        )?),
        None => None,
    };
    let metrics_addr = metrics.as_ref().map(metrics::EdgeMetrics::addr);
    let keys = service.server_keys()?;
    let server = Server::bind_secure(rt, &config.listen, config.limits.guard(), keys)?;
    let endpoint = server.endpoint().to_string();
    let node = service.node();
    tracing::info!(%endpoint, node = %node.to_hex(), "edge listening");
    let thread = std::thread::Builder::new()
        .name("edge".into())
        .spawn(move || {
            let mut last_tick = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // Billing runs on workers of its own: wait for requests
                // and tick (rounds due, billing finished) between them.
                let next = server.requests().recv_timeout(TICK);
                match next {
                    Ok(incoming) => {
                        let answer = service.handle_from(
                            &incoming.payload,
                            incoming.oversized,
                            incoming.peer,
                        );
                        if let Some(m) = metrics.as_mut() {
                            m.request(
                                &incoming.payload,
                                incoming.oversized.is_some(),
                                &answer,
                                &service,
                            );
                        }
                        incoming.reply(answer);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if last_tick.elapsed() >= TICK {
                    service.tick();
                    if let Some(m) = metrics.as_mut() {
                        m.refresh(&service);
                    }
                    last_tick = Instant::now();
                }
            }
            tracing::info!(counters = ?service.counters(), "edge stopped");
            service.counters()
        })
        .map_err(|e| EdgeError::Runtime(e.to_string()))?;
    Ok(Running {
        endpoint,
        node,
        metrics: metrics_addr,
        thread,
    })
}

/// Runs the edge until SIGINT/SIGTERM or until `stop` is set; `on_ready`
/// gets the bound endpoint.
pub fn run(
    config: &EdgeConfig,
    backend: Box<dyn ComputeBackend>,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(&str),
) -> Result<(), EdgeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| EdgeError::Runtime(e.to_string()))?;
    pb_net::stop_on_signals(rt.handle(), stop.clone());
    let running = spawn(rt.handle(), config, backend, stop)?;
    on_ready(&running.endpoint);
    running.join();
    Ok(())
}
