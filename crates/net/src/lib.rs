//! The billing network's transport: ZeroMQ request-reply over TCP on tokio.
//!
//! * [`Server`] is the ROUTER end of ZeroMQ's ZMTP 3.0 ([`zmtp`]) and hands
//!   every request, as raw bytes, to a synchronous handler thread through
//!   a bounded queue; the handler answers through [`Incoming::reply`]. Its
//!   [socket guard](guard) enforces frame and message sizes, deadlines
//!   against half-sent frames and connection caps before any byte is
//!   buffered; requests larger than the frame limit are also flagged after
//!   receipt.
//! * [`Connection`] is a REQ client that keeps one TCP connection, puts a
//!   timeout on every request and reconnects after any failure.
//! * [`secure`]: the encrypted, authenticated transport (Noise IK) that
//!   [`Server::bind_secure`] and [`Connection::encrypted`] speak, used on
//!   every link to the edge; the household API stays plain on loopback.
//! * [`EdgeClient`] seals [`Request`]s in signed envelopes and accepts only
//!   responses signed by the expected edge that repeat the request's
//!   counter.

#![warn(missing_docs)]

mod client;
pub mod guard;
pub mod secure;
mod server;
pub mod zmtp;

pub use client::{Connection, EdgeClient, Exchange, now_counter};
pub use guard::{GuardLimits, GuardStats};
pub use secure::{Authorize, MAX_WIRE, SecureError, ServerKeys};
pub use server::{Incoming, Server};

use pb_protocol::ProtocolError;
use thiserror::Error;

/// Most frames one request may have (ROUTER envelope plus payload).
pub const MAX_PARTS: usize = 8;

/// Transport failures.
#[derive(Debug, Error)]
pub enum NetError {
    /// Could not bind or connect.
    #[error("cannot reach {endpoint}: {reason}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("no answer from {endpoint} within {millis} ms")]
    Timeout {
        /// Where.
        endpoint: String,
        /// The limit.
        millis: u128,
    },
    /// The socket failed mid-request.
    #[error("transport error with {endpoint}: {reason}")]
    Transport {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The answer did not open as a valid signed response.
    #[error("invalid response from {endpoint}: {source}")]
    Protocol {
        /// Where.
        endpoint: String,
        /// Why.
        source: ProtocolError,
    },
    /// The response was signed by someone else than the expected edge, or
    /// answers another request.
    #[error("response from {endpoint} rejected: {reason}")]
    Untrusted {
        /// Where.
        endpoint: String,
        /// Why.
        reason: &'static str,
    },
    /// The encrypted transport failed: handshake (wrong pinned key, node
    /// not enrolled), decryption, or a refusal by the server.
    #[error("encrypted transport with {endpoint}: {source}")]
    Secure {
        /// Where.
        endpoint: String,
        /// Why.
        source: SecureError,
    },
    /// The answer was not the JSON expected.
    #[error("invalid JSON answer from {endpoint}: {reason}")]
    Json {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// Sets `stop` on SIGINT or SIGTERM (a task on `rt`).
pub fn stop_on_signals(
    rt: &tokio::runtime::Handle,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    rt.spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("signal received, stopping");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}

/// Installs the `tracing` subscriber for a daemon: one line per event on
/// stderr with its fields, at `level` (e.g. `info`, `debug`,
/// `pb_edge=debug,info`); `RUST_LOG` wins when set.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
