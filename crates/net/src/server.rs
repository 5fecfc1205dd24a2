//! A ROUTER server feeding a synchronous handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::OwnedSemaphorePermit;

use crate::guard::{self, GuardLimits, GuardStats, Link, Sink};
use crate::secure::{DATA, HELLO, MAX_WIRE, ServerKeys, SharedSessions, refusal};
use crate::zmtp;
use crate::{MAX_PARTS, NetError};

/// How many requests may wait for the handler before new ones are dropped
/// (their senders time out and retry).
pub const QUEUE_DEPTH: usize = 4096;

/// How many bytes of requests may wait for the handler at once; beyond it
/// new requests are dropped (their senders time out and retry). Bounds the
/// queue's memory whatever the peers send: 4,096 frames of 1 MiB would
/// otherwise be 4 GiB.
pub const QUEUE_BYTES: usize = 256 << 20;

/// A queued request's share of [`QUEUE_BYTES`], given back when the
/// request is answered or dropped.
#[derive(Debug)]
struct Budget {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// One request as received.
#[derive(Debug)]
pub struct Incoming {
    route: Vec<Bytes>,
    /// The request's last frame (the payload), empty when refused early.
    pub payload: Bytes,
    /// Set when the request was refused before decoding: too many frames or
    /// more than [`MAX_WIRE`] bytes. The payload is then empty.
    pub oversized: Option<usize>,
    /// On an encrypted server: the X25519 static key the peer
    /// authenticated with in its handshake (the payload is the decrypted
    /// message). `None` on a plain server.
    pub peer: Option<[u8; 32]>,
    sessions: Option<SharedSessions>,
    link: Link,
    permit: Option<OwnedSemaphorePermit>,
    _budget: Budget,
}

impl Incoming {
    /// Answers the request (at most once; dropping it answers nothing and
    /// the client times out). On an encrypted server the answer is sealed
    /// in the peer's session.
    pub fn reply(mut self, payload: Vec<u8>) {
        let payload = match &self.sessions {
            Some(sessions) => {
                let peer = self.route.first().cloned().unwrap_or_default();
                let sealed = sessions
                    .lock()
                    .ok()
                    .and_then(|mut s| s.seal(&peer, &payload));
                sealed.unwrap_or_else(|| refusal("session closed: reconnect"))
            }
            None => payload,
        };
        send(&self.link, &self.route, payload, self.permit.take());
    }
}

/// Writes `payload` back on `link` after the route's frames past the
/// connection id (a REQ peer's empty delimiter), and gives `permit` back
/// once written.
fn send(link: &Link, route: &[Bytes], payload: Vec<u8>, permit: Option<OwnedSemaphorePermit>) {
    let mut frames: Vec<Bytes> = route.iter().skip(1).cloned().collect();
    frames.push(Bytes::from(payload));
    let mut wire = Vec::with_capacity(frames.iter().map(|f| f.len() + 9).sum());
    zmtp::encode(&frames, &mut wire);
    // The writer is gone only when the connection closed.
    let _ = link.out.send((wire, permit));
}

/// Hands the guard's messages to [`admit`] and drops a closed
/// connection's session.
struct Dispatch {
    to_handler: SyncSender<Incoming>,
    queued: Arc<AtomicUsize>,
    secure: Option<Secure>,
}

impl Sink for Dispatch {
    fn message(&self, link: &Link, frames: Vec<Bytes>, permit: OwnedSemaphorePermit) {
        let mut message = Vec::with_capacity(frames.len() + 1);
        message.push(link.id.clone());
        message.extend(frames);
        admit(
            message,
            link,
            permit,
            &self.to_handler,
            &self.queued,
            self.secure.as_ref(),
        );
    }

    fn closed(&self, id: &Bytes) {
        if let Some(secure) = &self.secure {
            if let Ok(mut sessions) = secure.sessions.lock() {
                sessions.remove(id);
            }
        }
    }
}

/// An encrypted server's keys and sessions.
#[derive(Debug, Clone)]
struct Secure {
    keys: ServerKeys,
    sessions: SharedSessions,
}

/// A bound ROUTER socket whose requests arrive on [`Server::requests`].
#[derive(Debug)]
pub struct Server {
    endpoint: String,
    requests: Receiver<Incoming>,
    stats: Arc<GuardStats>,
}

impl Server {
    /// Binds `endpoint` (e.g. `tcp://127.0.0.1:5555`; port 0 picks one) on
    /// the runtime of `rt` and starts receiving. Peers connect to the
    /// [socket guard](crate::guard) at `endpoint`, which enforces `limits`
    /// and forwards to the ROUTER socket on a loopback port of its own.
    pub fn bind(rt: &Handle, endpoint: &str, limits: GuardLimits) -> Result<Server, NetError> {
        Server::bind_inner(rt, endpoint, limits, None)
    }

    /// Like [`Server::bind`], speaking only the [encrypted
    /// transport](crate::secure): each peer must open a Noise session with
    /// a key `keys` accepts before anything it sends reaches the handler,
    /// and every answer is sealed. The guard still checks the raw bytes'
    /// sizes and deadlines before anything is decrypted.
    pub fn bind_secure(
        rt: &Handle,
        endpoint: &str,
        limits: GuardLimits,
        keys: ServerKeys,
    ) -> Result<Server, NetError> {
        let secure = Secure {
            keys,
            sessions: SharedSessions::default(),
        };
        Server::bind_inner(rt, endpoint, limits, Some(secure))
    }

    fn bind_inner(
        rt: &Handle,
        endpoint: &str,
        limits: GuardLimits,
        secure: Option<Secure>,
    ) -> Result<Server, NetError> {
        let failed = |reason: String| NetError::Connect {
            endpoint: endpoint.to_string(),
            reason,
        };
        let address = endpoint.strip_prefix("tcp://").ok_or_else(|| {
            failed("only tcp:// endpoints are supported (tcp://host:port)".into())
        })?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(address))
            .map_err(|e| failed(e.to_string()))?;
        let public = listener.local_addr().map_err(|e| failed(e.to_string()))?;
        let stats = Arc::new(GuardStats::default());
        let (to_handler, requests) = sync_channel(QUEUE_DEPTH);
        let dispatch = Dispatch {
            to_handler,
            queued: Arc::new(AtomicUsize::new(0)),
            secure,
        };
        rt.spawn(guard::run(
            listener,
            limits,
            stats.clone(),
            Arc::new(dispatch),
        ));
        Ok(Server {
            endpoint: format!("tcp://{public}"),
            requests,
            stats,
        })
    }

    /// The bound endpoint, with the port resolved.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What the socket guard has accepted and refused so far (shared, to
    /// read after the server moved to its handler thread).
    pub fn guard_stats(&self) -> Arc<GuardStats> {
        self.stats.clone()
    }

    /// The queue of requests for the handler thread.
    pub fn requests(&self) -> &Receiver<Incoming> {
        &self.requests
    }
}

fn admit(
    message: Vec<Bytes>,
    link: &Link,
    permit: OwnedSemaphorePermit,
    to_handler: &SyncSender<Incoming>,
    queued: &Arc<AtomicUsize>,
    secure: Option<&Secure>,
) {
    let parts = message.len();
    let size: usize = message.iter().map(|f| f.len()).sum();
    let mut frames = message;
    let permit = Some(permit);
    // frames[0] is the peer identity the ROUTER added; a REQ peer then
    // sends an empty delimiter and the payload.
    let payload = if frames.len() >= 2 {
        frames.pop().unwrap_or_default()
    } else {
        Bytes::new()
    };
    let (payload, oversized) = if parts > MAX_PARTS || size > MAX_WIRE {
        // Keep the identity and, for a REQ peer, its empty delimiter.
        let keep = if frames.len() >= 2 && frames[1].is_empty() {
            2
        } else {
            1
        };
        frames.truncate(keep);
        (Bytes::new(), Some(size))
    } else {
        (payload, None)
    };
    if frames.is_empty() {
        return;
    }
    let mut peer = None;
    let (payload, oversized) = match secure {
        None => (payload, oversized),
        Some(secure) => {
            let identity = frames[0].clone();
            let Ok(mut sessions) = secure.sessions.lock() else {
                return;
            };
            if oversized.is_some() {
                // Nothing is decrypted; the session's nonces are out of
                // step now, so it ends.
                sessions.remove(&identity);
                return send(link, &frames, refusal("message too large"), permit);
            }
            match payload.first() {
                Some(&HELLO) => {
                    return match secure.keys.accept(&payload) {
                        Ok((session, client, welcome)) => {
                            sessions.insert(identity, client, session);
                            send(link, &frames, welcome, permit)
                        }
                        Err(refused) => {
                            tracing::debug!("handshake refused");
                            send(link, &frames, refused, permit)
                        }
                    };
                }
                Some(&DATA) => match sessions.open(&identity, &payload) {
                    Ok((plain, client)) => {
                        peer = Some(client);
                        (Bytes::from(plain), None)
                    }
                    Err(reason) => return send(link, &frames, refusal(reason), permit),
                },
                _ => {
                    return send(
                        link,
                        &frames,
                        refusal("this server speaks the encrypted transport only"),
                        permit,
                    );
                }
            }
        }
    };
    let bytes = payload.len() + frames.iter().map(Bytes::len).sum::<usize>();
    if queued.fetch_add(bytes, Ordering::Relaxed) + bytes > QUEUE_BYTES {
        queued.fetch_sub(bytes, Ordering::Relaxed);
        tracing::warn!(bytes, "request queue over its byte budget, request dropped");
        return;
    }
    let _budget = Budget {
        queued: queued.clone(),
        bytes,
    };
    let incoming = Incoming {
        _budget,
        route: frames,
        payload,
        oversized,
        peer,
        sessions: secure.map(|s| s.sessions.clone()),
        link: link.clone(),
        permit,
    };
    match to_handler.try_send(incoming) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => tracing::warn!("request queue full, request dropped"),
        Err(TrySendError::Disconnected(_)) => {}
    }
}
