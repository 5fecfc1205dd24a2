//! The socket guard against hostile peers on real sockets: oversized frame
//! headers, half-sent greetings and frames (slowloris), too many
//! connections. Each is cut off while an honest client keeps being served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pb_net::{Connection, GuardLimits, Server};

fn greeting() -> Vec<u8> {
    let mut g = vec![0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Reads until the peer closes; the time it took, or None if it stayed
/// open for `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

struct Echo {
    rt: tokio::runtime::Runtime,
    server_endpoint: String,
    stats: std::sync::Arc<pb_net::GuardStats>,
}

fn echo_server(limits: GuardLimits) -> Echo {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = Server::bind(rt.handle(), "tcp://127.0.0.1:0", limits).unwrap();
    let server_endpoint = server.endpoint().to_string();
    let stats = server.guard_stats();
    std::thread::spawn(move || {
        while let Ok(incoming) = server.requests().recv() {
            let mut answer = b"echo:".to_vec();
            answer.extend_from_slice(&incoming.payload);
            incoming.reply(answer);
        }
    });
    Echo {
        rt,
        server_endpoint,
        stats,
    }
}

impl Echo {
    fn honest_request(&self) {
        let mut c = Connection::new(self.server_endpoint.clone(), Duration::from_secs(5));
        let answer = self.rt.block_on(c.request(b"hi".to_vec())).unwrap();
        assert_eq!(answer, b"echo:hi");
    }

    fn raw(&self) -> TcpStream {
        TcpStream::connect(self.server_endpoint.trim_start_matches("tcp://")).unwrap()
    }
}

#[test]
fn oversized_frame_headers_are_cut_off_before_the_body() {
    let echo = echo_server(GuardLimits::new(1 << 20, 8));
    let mut s = echo.raw();
    s.write_all(&greeting()).unwrap();
    // A frame that announces 4 GiB; no body follows.
    let mut header = vec![0x02];
    header.extend_from_slice(&(4u64 << 30).to_be_bytes());
    s.write_all(&header).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).is_some());
    echo.honest_request();
    assert_eq!(echo.stats.snapshot().2, 1, "one violation counted");
}

#[test]
fn half_sent_greetings_and_frames_are_cut_off_in_time() {
    let mut limits = GuardLimits::new(1 << 20, 8);
    limits.greeting_timeout = Duration::from_millis(700);
    limits.message_timeout = Duration::from_millis(700);
    let echo = echo_server(limits);
    // Half a greeting.
    let mut a = echo.raw();
    a.write_all(&greeting()[..20]).unwrap();
    // A whole greeting, then a frame that stops after 3 of its 100 bytes.
    let mut b = echo.raw();
    b.write_all(&greeting()).unwrap();
    b.write_all(&[0x00, 100, 1, 2, 3]).unwrap();
    // Meanwhile an honest client is served.
    echo.honest_request();
    for s in [&mut a, &mut b] {
        let t = closed_within(s, Duration::from_secs(5)).expect("slow peer not cut off");
        assert!(t < Duration::from_secs(3), "cut off after {t:?}");
    }
    assert_eq!(echo.stats.snapshot().3, 2, "two slow peers counted");
    echo.honest_request();
}

#[test]
fn connections_beyond_the_caps_are_refused() {
    let mut limits = GuardLimits::new(1 << 20, 8);
    limits.max_per_address = 2;
    let echo = echo_server(limits);
    let mut held = vec![echo.raw(), echo.raw()];
    for s in &mut held {
        s.write_all(&greeting()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut third = echo.raw();
    assert!(closed_within(&mut third, Duration::from_secs(3)).is_some());
    assert!(echo.stats.snapshot().1 >= 1);
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    echo.honest_request();
}

#[test]
fn endpoints_other_than_tcp_are_refused_clearly() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for bad in ["ipc:///tmp/x", "127.0.0.1:5555", "tcp://nowhere.invalid:1"] {
        let e = Server::bind(rt.handle(), bad, GuardLimits::new(1 << 20, 8)).unwrap_err();
        assert!(e.to_string().contains(bad), "{bad}: {e}");
    }
}

#[test]
fn non_zmtp_bytes_are_refused() {
    let echo = echo_server(GuardLimits::new(1 << 20, 8));
    let mut s = echo.raw();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(3)).is_some());
    echo.honest_request();
}
