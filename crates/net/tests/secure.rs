//! The encrypted transport against a passive and an active attacker on the
//! link, over real sockets: a recording proxy sits between each client and
//! the server.
//!
//! The passive attacker of issue 13 sums the masked contributions it sees
//! (the pairwise masks cancel in the sum) and reads the community's
//! aggregate. With the plain transport this works (the control case below
//! shows the observer's method is sound); with the encrypted transport the
//! sum of the same byte positions is unrelated to the aggregate. The
//! active attacker replays a recorded session and gets nothing through.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pb_net::secure::REFUSED;
use pb_net::{Connection, GuardLimits, MAX_PARTS, MAX_WIRE, Server, ServerKeys};
use pb_protocol::NodeKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLOTS: usize = 64;

/// A one-connection TCP proxy to `upstream` that records both directions.
struct Recorder {
    endpoint: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

fn recorder(rt: &tokio::runtime::Runtime, upstream: &str) -> Recorder {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("tcp://").to_string();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let log = sent.clone();
    rt.spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::spawn(pump(cr, sw, log));
        tokio::spawn(pump(sr, cw, Arc::new(Mutex::new(Vec::new()))));
    });
    Recorder { endpoint, sent }
}

/// A server that answers "ok" and counts what reached its handler.
fn serve(server: Server, seen: Arc<AtomicUsize>) {
    std::thread::spawn(move || {
        while let Ok(incoming) = server.requests().recv() {
            seen.fetch_add(1, Ordering::Relaxed);
            incoming.reply(b"ok".to_vec());
        }
    });
}

fn limits() -> GuardLimits {
    GuardLimits::new(MAX_WIRE, MAX_PARTS)
}

/// Three members' masked contributions: values plus masks that cancel in
/// the sum (as PRZS masks do), so the sum is the aggregate.
fn contributions() -> (Vec<Vec<u64>>, Vec<u64>) {
    let values: Vec<Vec<u64>> = (0..3u64)
        .map(|m| (0..SLOTS as u64).map(|s| 1000 * (m + 1) + s).collect())
        .collect();
    let aggregate: Vec<u64> = (0..SLOTS)
        .map(|s| values.iter().map(|v| v[s]).fold(0, u64::wrapping_add))
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let m01: Vec<u64> = (0..SLOTS).map(|_| next()).collect();
    let m02: Vec<u64> = (0..SLOTS).map(|_| next()).collect();
    let m12: Vec<u64> = (0..SLOTS).map(|_| next()).collect();
    let masked = vec![
        (0..SLOTS)
            .map(|s| values[0][s].wrapping_add(m01[s]).wrapping_add(m02[s]))
            .collect(),
        (0..SLOTS)
            .map(|s| values[1][s].wrapping_sub(m01[s]).wrapping_add(m12[s]))
            .collect(),
        (0..SLOTS)
            .map(|s| values[2][s].wrapping_sub(m02[s]).wrapping_sub(m12[s]))
            .collect(),
    ];
    (masked, aggregate)
}

fn encode(v: &[u64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The observer: the last message a client sent ends the capture; it
/// reads the `SLOTS` words just before the end (before the 16-byte tag
/// when `tagged`) from each capture and sums them.
fn observer_sum(captures: &[Vec<u8>], tagged: bool) -> Vec<u64> {
    let skip = if tagged { 16 } else { 0 };
    let mut sum = vec![0u64; SLOTS];
    for c in captures {
        let end = c.len() - skip;
        let words = &c[end - 8 * SLOTS..end];
        for (s, w) in words.chunks(8).enumerate() {
            sum[s] = sum[s].wrapping_add(u64::from_le_bytes(w.try_into().unwrap()));
        }
    }
    sum
}

fn run_members(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    keys: Option<(&[NodeKey], &NodeKey)>,
    masked: &[Vec<u64>],
) -> Vec<Vec<u8>> {
    let mut captures = Vec::new();
    for (i, m) in masked.iter().enumerate() {
        let proxy = recorder(rt, endpoint);
        let mut conn = Connection::new(proxy.endpoint.clone(), Duration::from_secs(10));
        if let Some((members, server)) = keys {
            conn = conn.encrypted(NodeKey::from_bytes(members[i].to_bytes()), server.id());
        }
        let answer = rt.block_on(conn.request(encode(m))).unwrap();
        assert_eq!(answer, b"ok");
        std::thread::sleep(Duration::from_millis(50));
        captures.push(proxy.sent.lock().unwrap().clone());
    }
    captures
}

#[test]
fn an_observer_learns_the_aggregate_from_plain_traffic_but_not_from_encrypted() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (masked, aggregate) = contributions();

    // Control: the plain transport leaks the aggregate to the observer.
    let plain = Server::bind(rt.handle(), "tcp://127.0.0.1:0", limits()).unwrap();
    let plain_ep = plain.endpoint().to_string();
    serve(plain, Arc::new(AtomicUsize::new(0)));
    let captures = run_members(&rt, &plain_ep, None, &masked);
    assert_eq!(observer_sum(&captures, false), aggregate);

    // Encrypted: the same observer finds nothing related to it.
    let server_key = NodeKey::from_bytes([40; 32]);
    let members: Vec<NodeKey> = (0..3).map(|i| NodeKey::from_bytes([41 + i; 32])).collect();
    let keys = ServerKeys::new(&server_key, members.iter().map(NodeKey::id)).unwrap();
    let secure = Server::bind_secure(rt.handle(), "tcp://127.0.0.1:0", limits(), keys).unwrap();
    let secure_ep = secure.endpoint().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    serve(secure, seen.clone());
    let captures = run_members(&rt, &secure_ep, Some((&members, &server_key)), &masked);
    assert_eq!(seen.load(Ordering::Relaxed), 3);
    for tagged in [false, true] {
        let sum = observer_sum(&captures, tagged);
        let equal = sum.iter().zip(&aggregate).filter(|(a, b)| a == b).count();
        assert_eq!(equal, 0, "the observer recovered {equal} aggregate slots");
    }
    // Nor does any member's masked vector, or any 16-byte piece of it,
    // appear in the capture.
    for (c, m) in captures.iter().zip(&masked) {
        let plain = encode(m);
        for piece in plain.chunks(16) {
            assert!(!c.windows(16).any(|w| w == piece), "plaintext on the wire");
        }
    }
}

#[test]
fn a_recorded_session_replayed_gets_nothing_through() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server_key = NodeKey::from_bytes([50; 32]);
    let member = NodeKey::from_bytes([51; 32]);
    let keys = ServerKeys::new(&server_key, [member.id()]).unwrap();
    let server = Server::bind_secure(rt.handle(), "tcp://127.0.0.1:0", limits(), keys).unwrap();
    let ep = server.endpoint().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    serve(server, seen.clone());

    let proxy = recorder(&rt, &ep);
    let mut conn = Connection::new(proxy.endpoint.clone(), Duration::from_secs(10))
        .encrypted(NodeKey::from_bytes(member.to_bytes()), server_key.id());
    assert_eq!(
        rt.block_on(conn.request(b"pay 100".to_vec())).unwrap(),
        b"ok"
    );
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    let recorded = proxy.sent.lock().unwrap().clone();
    drop(conn);

    // The attacker replays the whole recorded client side byte for byte
    // on a new connection: the handshake message is answered (Noise IK
    // cannot tell a replayed first message), but the recorded sealed
    // request does not open under the new session's keys, so nothing
    // reaches the handler.
    let replayed = rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(ep.trim_start_matches("tcp://"))
            .await
            .unwrap();
        s.write_all(&recorded).await.unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        got
    });
    assert_eq!(
        seen.load(Ordering::Relaxed),
        1,
        "a replayed request got through"
    );
    let refused = b"cannot decrypt";
    assert!(
        replayed.windows(refused.len()).any(|w| w == refused),
        "the replayed request was not refused: {:?}",
        String::from_utf8_lossy(&replayed)
    );
    assert!(replayed.contains(&REFUSED));
}

#[test]
fn a_client_that_pins_the_wrong_key_gets_a_clear_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server_key = NodeKey::from_bytes([60; 32]);
    let member = NodeKey::from_bytes([61; 32]);
    let keys = ServerKeys::new(&server_key, [member.id()]).unwrap();
    let server = Server::bind_secure(rt.handle(), "tcp://127.0.0.1:0", limits(), keys).unwrap();
    let ep = server.endpoint().to_string();
    let seen = Arc::new(AtomicUsize::new(0));
    serve(server, seen.clone());
    let wrong = NodeKey::from_bytes([62; 32]).id();
    let mut conn = Connection::new(ep.clone(), Duration::from_secs(10))
        .encrypted(NodeKey::from_bytes(member.to_bytes()), wrong);
    let err = rt.block_on(conn.request(b"secret".to_vec())).unwrap_err();
    assert!(err.to_string().contains("wrong pinned edge key"), "{err}");
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    // The same client with the right key is served.
    let mut conn = Connection::new(ep, Duration::from_secs(10)).encrypted(member, server_key.id());
    assert_eq!(
        rt.block_on(conn.request(b"secret".to_vec())).unwrap(),
        b"ok"
    );
}
