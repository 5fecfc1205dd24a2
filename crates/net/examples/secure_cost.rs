//! What the encrypted transport costs, in process (no sockets): one Noise
//! IK handshake (both sides), and sealing plus opening a message of the
//! sizes the billing network sends (a 147 KB submission, a 131 KB bill,
//! the 1 MiB frame limit).
//!
//! `cargo run --release -p pb-net --example secure_cost`

use std::time::Instant;

use pb_net::ServerKeys;
use pb_net::secure::ClientHandshake;
use pb_protocol::NodeKey;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = NodeKey::from_bytes([1; 32]);
    let server = NodeKey::from_bytes([2; 32]);
    let keys = ServerKeys::new(&server, [client.id()])?;
    let rounds = 200;
    let start = Instant::now();
    let mut sessions = None;
    for _ in 0..rounds {
        let (hs, hello) = ClientHandshake::start(&client, &server.id())?;
        let (s, _, welcome) = keys
            .accept(&hello)
            .map_err(|r| String::from_utf8_lossy(&r).into_owned())?;
        sessions = Some((hs.finish(&welcome)?, s));
    }
    let per = start.elapsed() / rounds;
    println!("handshake (client + server, one core): {per:?}");
    let (mut c, mut s) = sessions.ok_or("no session")?;
    for (name, len) in [
        ("submission", 147_481usize),
        ("bill", 131_299),
        ("frame limit", pb_protocol::MAX_FRAME),
    ] {
        let m = vec![0x5au8; len];
        let n = 50;
        let start = Instant::now();
        for _ in 0..n {
            let sealed = c.seal(&m)?;
            let opened = s.open(&sealed)?;
            assert_eq!(opened.len(), len);
        }
        let per = start.elapsed() / n;
        let sealed = c.seal(&m)?;
        let overhead = sealed.len() - len;
        s.open(&sealed)?;
        println!(
            "{name} ({len} B): seal + open {per:?} ({:.0} MB/s), {overhead} B on the wire",
            len as f64 / per.as_secs_f64() / 1e6
        );
    }
    Ok(())
}
