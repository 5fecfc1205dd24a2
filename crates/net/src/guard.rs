//! The socket guard: the server's TCP front, which enforces at the socket
//! level a size limit on every frame and message before it is buffered,
//! deadlines for half-sent greetings and messages (slowloris), an idle
//! timeout and caps on connections in all and per peer address, and then
//! speaks the server end of ZMTP 3.0 (NULL mechanism, as a ROUTER) to the
//! peer itself (module `zmtp`).
//!
//! Every byte a peer sends goes through a [`ZmtpScanner`] first, which
//! follows the ZMTP 3 framing (greeting, then frames of `flags | size |
//! body`) without buffering: a frame header announcing too much, a message
//! of too many parts, a bad greeting or a frame that does not finish in
//! time closes the connection before the offending bytes are buffered.
//! Other peers are not affected.
//!
//! Until issue 12's load runs the guard copied each connection to a
//! `zeromq` ROUTER socket on loopback; under connection churn (thousands
//! of short connections) that ROUTER stopped passing requests on, with its
//! sockets left half-closed, and each peer cost three descriptors and the
//! ROUTER's per-peer buffers. Terminating ZMTP here (one descriptor per
//! peer, a connection's state dropped when it closes) removed both;
//! clients still use the `zeromq` crate's REQ socket (or libzmq's).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::zmtp::{self, Decoder, Item};

/// Limits of the guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardLimits {
    /// Largest message frame, and largest message (all frames), in bytes.
    pub max_message: usize,
    /// Most frames in one message.
    pub max_parts: usize,
    /// Largest ZMTP command frame (handshake, ping), in bytes.
    pub max_command: usize,
    /// Time for the 64-byte greeting after the connection is accepted.
    pub greeting_timeout: Duration,
    /// Time for a whole message (or command) once its first byte arrived.
    pub message_timeout: Duration,
    /// A connection with nothing sent for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most connections at once from one peer address.
    pub max_per_address: usize,
}

impl GuardLimits {
    /// Limits for a server whose messages are at most `max_message` bytes
    /// in `max_parts` frames, with defaults for the rest: 5 s for the
    /// greeting, 10 s per message, one hour idle, 4,096 connections, 256
    /// per address.
    pub fn new(max_message: usize, max_parts: usize) -> GuardLimits {
        GuardLimits {
            max_message,
            max_parts,
            max_command: 16 * 1024,
            greeting_timeout: Duration::from_secs(5),
            message_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
            max_connections: 4096,
            max_per_address: 256,
        }
    }
}

/// Why the scanner refused a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The greeting is not ZMTP 3.
    #[error("bad ZMTP greeting: {0}")]
    BadGreeting(&'static str),
    /// A frame's reserved flag bits are set.
    #[error("frame flags {0:#04x} have reserved bits set")]
    BadFlags(u8),
    /// A frame announces more than the limit.
    #[error("frame of {size} bytes announced, the limit is {limit}")]
    FrameTooLarge {
        /// Announced size.
        size: u64,
        /// Limit.
        limit: usize,
    },
    /// The message's frames add up to more than the limit.
    #[error("message of {size} bytes or more, the limit is {limit}")]
    MessageTooLarge {
        /// Size so far.
        size: u64,
        /// Limit.
        limit: usize,
    },
    /// The message has too many frames.
    #[error("message of more than {0} frames")]
    TooManyParts(usize),
    /// A command frame claims to be followed by more frames.
    #[error("command frame with the MORE flag")]
    CommandWithMore,
}

const GREETING: usize = 64;

#[derive(Debug, Clone, Copy)]
enum State {
    Greeting {
        seen: usize,
    },
    Flags,
    Size {
        flags: u8,
        need: usize,
        have: usize,
        acc: u64,
    },
    Body {
        remaining: u64,
    },
}

/// Follows the ZMTP 3 framing of one direction of a connection, checking
/// sizes as soon as a header is complete. It keeps a few bytes of state
/// and never buffers a frame.
#[derive(Debug, Clone)]
pub struct ZmtpScanner {
    limits: GuardLimits,
    state: State,
    /// Frames of the current message so far (including the one in flight).
    parts: usize,
    /// Bytes of the current message so far (announced sizes).
    message: u64,
    /// Whether the frame in flight is the message's last.
    last: bool,
}

impl ZmtpScanner {
    /// A scanner at the start of a connection.
    pub fn new(limits: GuardLimits) -> ZmtpScanner {
        ZmtpScanner {
            limits,
            state: State::Greeting { seen: 0 },
            parts: 0,
            message: 0,
            last: true,
        }
    }

    /// Whether the 64-byte greeting is complete.
    pub fn greeted(&self) -> bool {
        !matches!(self.state, State::Greeting { .. })
    }

    /// Whether the stream stands inside a frame or a message (a deadline
    /// applies) rather than between messages.
    pub fn mid_message(&self) -> bool {
        match self.state {
            State::Greeting { .. } => true,
            State::Flags => self.parts > 0,
            State::Size { .. } | State::Body { .. } => true,
        }
    }

    /// Consumes the next bytes of the stream. After an error the scanner
    /// must not be used again (the connection is closed).
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Violation> {
        while !bytes.is_empty() {
            match self.state {
                State::Greeting { seen } => {
                    let take = (GREETING - seen).min(bytes.len());
                    for (i, &b) in bytes[..take].iter().enumerate() {
                        match seen + i {
                            0 if b != 0xFF => return Err(Violation::BadGreeting("signature")),
                            9 if b & 1 != 1 => return Err(Violation::BadGreeting("signature")),
                            10 if b < 3 => {
                                return Err(Violation::BadGreeting("version before ZMTP 3"));
                            }
                            _ => {}
                        }
                    }
                    bytes = &bytes[take..];
                    self.state = if seen + take == GREETING {
                        State::Flags
                    } else {
                        State::Greeting { seen: seen + take }
                    };
                }
                State::Flags => {
                    let flags = bytes[0];
                    bytes = &bytes[1..];
                    if flags & 0xF8 != 0 {
                        return Err(Violation::BadFlags(flags));
                    }
                    let need = if flags & 0x02 != 0 { 8 } else { 1 };
                    self.state = State::Size {
                        flags,
                        need,
                        have: 0,
                        acc: 0,
                    };
                }
                State::Size {
                    flags,
                    need,
                    have,
                    acc,
                } => {
                    let acc = (acc << 8) | u64::from(bytes[0]);
                    bytes = &bytes[1..];
                    if have + 1 < need {
                        self.state = State::Size {
                            flags,
                            need,
                            have: have + 1,
                            acc,
                        };
                        continue;
                    }
                    self.header(flags, acc)?;
                    self.state = if acc == 0 {
                        self.frame_done();
                        State::Flags
                    } else {
                        State::Body { remaining: acc }
                    };
                }
                State::Body { remaining } => {
                    let take = remaining.min(bytes.len() as u64);
                    // take <= bytes.len(), so it fits in usize.
                    bytes = &bytes[take as usize..];
                    let remaining = remaining - take;
                    if remaining == 0 {
                        self.frame_done();
                        self.state = State::Flags;
                    } else {
                        self.state = State::Body { remaining };
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self, flags: u8, size: u64) -> Result<(), Violation> {
        let more = flags & 0x01 != 0;
        if flags & 0x04 != 0 {
            // A command: never part of a message.
            if more {
                return Err(Violation::CommandWithMore);
            }
            if self.parts > 0 {
                return Err(Violation::BadFlags(flags));
            }
            if size > self.limits.max_command as u64 {
                return Err(Violation::FrameTooLarge {
                    size,
                    limit: self.limits.max_command,
                });
            }
            self.last = true;
            return Ok(());
        }
        if size > self.limits.max_message as u64 {
            return Err(Violation::FrameTooLarge {
                size,
                limit: self.limits.max_message,
            });
        }
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            return Err(Violation::TooManyParts(self.limits.max_parts));
        }
        self.message = self.message.saturating_add(size);
        if self.message > self.limits.max_message as u64 {
            return Err(Violation::MessageTooLarge {
                size: self.message,
                limit: self.limits.max_message,
            });
        }
        self.last = !more;
        Ok(())
    }

    fn frame_done(&mut self) {
        if self.last {
            self.parts = 0;
            self.message = 0;
        }
    }
}

/// What the guard has done (shared with its tasks; read for logs and
/// tests).
#[derive(Debug, Default)]
pub struct GuardStats {
    /// Connections accepted and served.
    pub accepted: AtomicU64,
    /// Connections refused at accept: too many in all or from one address.
    pub refused: AtomicU64,
    /// Connections closed for a size, flag or greeting violation.
    pub violations: AtomicU64,
    /// Connections closed because a greeting or message did not finish in
    /// time.
    pub too_slow: AtomicU64,
    /// Connections closed after the idle timeout.
    pub idle: AtomicU64,
}

impl GuardStats {
    /// A snapshot: `(accepted, refused, violations, too_slow, idle)`.
    pub fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        (
            self.accepted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.violations.load(Ordering::Relaxed),
            self.too_slow.load(Ordering::Relaxed),
            self.idle.load(Ordering::Relaxed),
        )
    }
}

#[derive(Debug, Default)]
struct Slots {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// A connection's place in the caps, given back when dropped.
struct Slot {
    slots: Arc<Mutex<Slots>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.total = s.total.saturating_sub(1);
            if let Some(n) = s.per_address.get_mut(&self.address) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    s.per_address.remove(&self.address);
                }
            }
        }
    }
}

fn take_slot(slots: &Arc<Mutex<Slots>>, address: IpAddr, limits: &GuardLimits) -> Option<Slot> {
    let mut s = slots.lock().ok()?;
    let here = s.per_address.get(&address).copied().unwrap_or(0);
    if s.total >= limits.max_connections || here >= limits.max_per_address {
        return None;
    }
    s.total += 1;
    s.per_address.insert(address, here + 1);
    Some(Slot {
        slots: slots.clone(),
        address,
    })
}

/// Most requests of one connection in flight at once (received, not yet
/// answered and written back): a REQ peer has one; a pipelining DEALER
/// waits beyond this (the guard stops reading its connection), so a peer
/// that sends without reading cannot queue answers without bound.
pub const MAX_IN_FLIGHT: usize = 4;

/// Bytes to write to one connection, with the permit of the request they
/// answer (given back once written).
pub(crate) type Outgoing = (Vec<u8>, Option<OwnedSemaphorePermit>);

/// One peer connection as the server sees it: its routing id (unique for
/// the server's life) and the queue of bytes written to it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// The connection's routing id (the first frame of its requests'
    /// route, as a ROUTER socket would add it).
    pub id: Bytes,
    /// Bytes to write back.
    pub out: UnboundedSender<Outgoing>,
}

/// Where the guard hands what its peers send.
pub(crate) trait Sink: Send + Sync + 'static {
    /// A whole message from `link`, holding one of its in-flight permits.
    fn message(&self, link: &Link, frames: Vec<Bytes>, permit: OwnedSemaphorePermit);
    /// The connection `id` is closed (its session can go).
    fn closed(&self, id: &Bytes);
}

/// Accepts connections on `listener` forever and serves each as the
/// server end of ZMTP 3.0 within the limits, handing its messages to
/// `sink`.
pub(crate) async fn run(
    listener: TcpListener,
    limits: GuardLimits,
    stats: Arc<GuardStats>,
    sink: Arc<dyn Sink>,
) {
    let slots = Arc::new(Mutex::new(Slots::default()));
    let mut next_id: u64 = 0;
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, mostly: wait rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = take_slot(&slots, peer.ip(), &limits) else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "connection refused: too many connections");
            drop(client);
            continue;
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        next_id += 1;
        let id = Bytes::copy_from_slice(&next_id.to_be_bytes());
        let (stats, sink) = (stats.clone(), sink.clone());
        tokio::spawn(async move {
            serve(client, peer, id.clone(), limits, &stats, sink.as_ref()).await;
            sink.closed(&id);
            drop(slot);
        });
    }
}

/// Why a connection is closed after its bytes passed the scanner.
fn protocol_violation(stats: &GuardStats, peer: SocketAddr, what: &str) {
    stats.violations.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, violation = what, "connection closed");
}

async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    id: Bytes,
    limits: GuardLimits,
    stats: &GuardStats,
    sink: &dyn Sink,
) {
    let _ = client.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (out, mut outgoing) = unbounded_channel::<Outgoing>();
    let writer = tokio::spawn(async move {
        let mut hello = zmtp::greeting().to_vec();
        hello.extend_from_slice(&zmtp::ready());
        if to_client.write_all(&hello).await.is_err() {
            return;
        }
        while let Some((bytes, permit)) = outgoing.recv().await {
            if to_client.write_all(&bytes).await.is_err() {
                break;
            }
            drop(permit);
        }
        let _ = to_client.shutdown().await;
    });
    let link = Link { id, out };
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut scanner = ZmtpScanner::new(limits);
    let mut decoder = Decoder::new();
    let mut ready = false;
    let mut buf = vec![0u8; 64 * 1024];
    let accepted = Instant::now();
    let mut message_start: Option<Instant> = None;
    let mut last = accepted;
    'read: loop {
        let deadline = if !scanner.greeted() {
            accepted + limits.greeting_timeout
        } else if let Some(start) = message_start {
            start + limits.message_timeout
        } else {
            last + limits.idle_timeout
        };
        let n = match tokio::time::timeout_at(deadline, from_client.read(&mut buf)).await {
            Err(_) => {
                if scanner.mid_message() {
                    stats.too_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, "connection closed: greeting or message not finished in time");
                } else {
                    stats.idle.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, "connection closed: idle");
                }
                break;
            }
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let was_mid = scanner.mid_message() && scanner.greeted();
        if let Err(v) = scanner.feed(&buf[..n]) {
            stats.violations.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, violation = %v, "connection closed");
            break;
        }
        let now = Instant::now();
        message_start = match (was_mid, scanner.greeted() && scanner.mid_message()) {
            (_, false) => None,
            (true, true) => message_start.or(Some(now)),
            (false, true) => Some(now),
        };
        last = now;
        decoder.push(&buf[..n]);
        while let Some(item) = decoder.next_item() {
            match item {
                Item::Command(body) if !ready => {
                    if zmtp::command_name(&body) != Some(&b"READY"[..]) {
                        protocol_violation(stats, peer, "first command is not READY");
                        break 'read;
                    }
                    if !matches!(
                        zmtp::socket_type(&body),
                        Some(b"REQ" | b"DEALER" | b"ROUTER")
                    ) {
                        protocol_violation(stats, peer, "socket type cannot talk to a ROUTER");
                        break 'read;
                    }
                    ready = true;
                }
                Item::Command(body) => {
                    // PING (ZMTP 3.1 heartbeats) is answered; other
                    // commands are ignored.
                    if let Some(pong) = zmtp::pong(&body) {
                        let _ = link.out.send((pong, None));
                    }
                }
                Item::Message(_) if !ready => {
                    protocol_violation(stats, peer, "message before the READY command");
                    break 'read;
                }
                Item::Message(frames) => {
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break 'read;
                    };
                    sink.message(&link, frames, permit);
                }
            }
        }
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuardLimits {
        GuardLimits::new(100, 3)
    }

    fn greeting() -> Vec<u8> {
        let mut g = vec![0u8; 64];
        g[0] = 0xFF;
        g[9] = 0x7F;
        g[10] = 3;
        g
    }

    fn frame(flags: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![flags];
        if flags & 0x02 != 0 {
            f.extend_from_slice(&(body.len() as u64).to_be_bytes());
        } else {
            f.push(body.len() as u8);
        }
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn a_valid_stream_passes_in_any_split() {
        let mut s = greeting();
        s.extend(frame(0x04, b"\x05READY"));
        s.extend(frame(0x01, b""));
        s.extend(frame(0x02, &[1; 60]));
        s.extend(frame(0x01, b""));
        s.extend(frame(0x00, &[2; 90]));
        for split in 0..s.len() {
            let mut sc = ZmtpScanner::new(limits());
            sc.feed(&s[..split]).unwrap();
            sc.feed(&s[split..]).unwrap();
            assert!(!sc.mid_message());
        }
        // Byte by byte.
        let mut sc = ZmtpScanner::new(limits());
        for b in &s {
            sc.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(!sc.mid_message());
    }

    #[test]
    fn oversize_is_refused_at_the_header() {
        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        // Only the header: refused before any body byte arrives.
        let mut h = vec![0x02];
        h.extend_from_slice(&(u64::MAX).to_be_bytes());
        assert!(matches!(sc.feed(&h), Err(Violation::FrameTooLarge { .. })));

        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        sc.feed(&frame(0x01, &[0; 60])).unwrap();
        assert!(matches!(
            sc.feed(&frame(0x00, &[0; 60])),
            Err(Violation::MessageTooLarge { .. })
        ));

        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        for _ in 0..3 {
            sc.feed(&frame(0x01, b"x")).unwrap();
        }
        assert_eq!(sc.feed(&frame(0x00, b"x")), Err(Violation::TooManyParts(3)));

        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        assert!(matches!(
            sc.feed(&frame(0x06, &vec![0; 20_000])),
            Err(Violation::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn bad_greetings_and_flags_are_refused() {
        let mut sc = ZmtpScanner::new(limits());
        assert!(sc.feed(b"GET / HTTP/1.1\r\n").is_err());
        let mut g = greeting();
        g[10] = 2;
        assert!(ZmtpScanner::new(limits()).feed(&g).is_err());
        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        assert_eq!(sc.feed(&[0x80, 0]), Err(Violation::BadFlags(0x80)));
        let mut sc = ZmtpScanner::new(limits());
        sc.feed(&greeting()).unwrap();
        assert_eq!(sc.feed(&[0x05, 0]), Err(Violation::CommandWithMore));
    }

    #[test]
    fn mid_message_tracks_partial_frames() {
        let mut sc = ZmtpScanner::new(limits());
        assert!(sc.mid_message());
        sc.feed(&greeting()).unwrap();
        assert!(!sc.mid_message());
        sc.feed(&[0x00, 10, 1, 2]).unwrap();
        assert!(sc.mid_message());
        sc.feed(&[0; 8]).unwrap();
        assert!(!sc.mid_message());
        sc.feed(&frame(0x01, b"")).unwrap();
        assert!(sc.mid_message(), "between the frames of one message");
    }
}
