//! The core server of one household.
//!
//! It holds the household's secrets (X25519 PRZS key, GLWE secret key) in
//! its own redb store, joins the community at the edge, takes the
//! household's data through a local JSON API ([`api`]), masks and encrypts
//! it ([`pb_hiding::HidingContext::hide`]), submits it, sends a dropout
//! correction when the edge declares members dropped out, fetches its
//! hidden bill, decrypts it and answers the household with exact decimal
//! amounts. Nothing it sends reveals the household's values.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod metrics;
pub mod node;
pub mod sealed;
pub mod store;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use thiserror::Error;

pub use config::CoreConfig;
pub use node::{Node, Running, spawn};

/// Why the core cannot start or go on.
#[derive(Debug, Error)]
pub enum CoreError {
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// The store failed or holds something unreadable.
    #[error("store: {0}")]
    Store(String),
    /// The key file.
    #[error("key: {0}")]
    Key(#[from] pb_protocol::KeyFileError),
    /// Transport.
    #[error(transparent)]
    Net(#[from] pb_net::NetError),
    /// The edge answered something that makes no sense.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Runtime.
    #[error("runtime: {0}")]
    Runtime(String),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] pb_metrics::MetricsError),
}

/// Runs a core until SIGINT/SIGTERM or until `stop` is set; `on_ready` gets the API endpoint.
pub fn run(
    config: &CoreConfig,
    stop: Arc<AtomicBool>,
    on_ready: impl FnOnce(&str),
) -> Result<(), CoreError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CoreError::Runtime(e.to_string()))?;
    pb_net::stop_on_signals(rt.handle(), stop.clone());
    let running = spawn(rt.handle(), config, stop)?;
    on_ready(&running.endpoint);
    running.join();
    Ok(())
}
