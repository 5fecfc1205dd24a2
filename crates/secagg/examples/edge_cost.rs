//! One whole cycle of `n` members in one process, timing the edge's side
//! (every `Server` call) apart from the members' work, at T = 672 slots
//! and 3 fields. Prints one JSON object.
//!
//! `cargo run --release -p pb-secagg --example edge_cost -- 1000`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use pb_secagg::server::Server;
use pb_secagg::{Client, Graph, Roster, RosterEntry, SignedRoster};
use pb_units::MemberId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let (fields, slots) = (3usize, 672usize);
    let operator = SigningKey::from_bytes(&[9; 32]);
    let key_of = |i: usize| SigningKey::from_bytes(&Sha256::digest(i.to_le_bytes()).into());
    let ids: Vec<MemberId> = (0..n)
        .map(|i| MemberId::new(format!("h{i:07}")).unwrap())
        .collect();
    let keys: Vec<SigningKey> = (0..n).into_par_iter().map(key_of).collect();
    let roster = Roster::new(
        "cost",
        1,
        ids.iter()
            .zip(&keys)
            .map(|(m, k)| RosterEntry {
                member: m.clone(),
                identity: k.verifying_key().to_bytes(),
            })
            .collect(),
    )
    .unwrap();
    let signed = SignedRoster::sign(roster.clone(), &operator);
    let pinned = operator.verifying_key().to_bytes();
    let mut edge = Duration::ZERO;
    let mut timed = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        edge += t.elapsed();
    };
    let mut server = None;
    timed(&mut || server = Some(Server::new(&signed, &pinned, 1, 3, fields, slots).unwrap()));
    let mut server = server.unwrap();
    let graph = Graph::new(server.session(), &ids, server.params());
    let members = Instant::now();
    let mut clients: Vec<Client> = ids
        .par_iter()
        .zip(&keys)
        .map(|(m, k)| {
            let mut rng = ChaCha20Rng::from_entropy();
            Client::with_graph(&roster, &graph, 3, m, k, &mut rng).unwrap()
        })
        .collect();
    let mut member_time = members.elapsed();
    for c in &clients {
        let b = c.bundle().clone();
        timed(&mut || server.advertise(b.clone()).unwrap());
    }
    timed(&mut || server.close_advertise().unwrap());
    let bundles: Vec<_> = ids.iter().map(|m| server.bundles_for(m).unwrap()).collect();
    let t = Instant::now();
    let shares: Vec<_> = clients
        .par_iter_mut()
        .zip(&bundles)
        .map(|(c, b)| c.share(b, &mut ChaCha20Rng::from_entropy()).unwrap())
        .collect();
    member_time += t.elapsed();
    for (m, s) in ids.iter().zip(shares) {
        timed(&mut || server.share(m, s.clone()).unwrap());
    }
    timed(&mut || server.close_share().unwrap());
    let incoming: Vec<_> = ids.iter().map(|m| server.shares_for(m).unwrap()).collect();
    let input = vec![vec![5u64; slots]; fields];
    let t = Instant::now();
    let masked: Vec<_> = clients
        .par_iter_mut()
        .zip(&incoming)
        .map(|(c, s)| c.mask(s, &input).unwrap())
        .collect();
    member_time += t.elapsed();
    for m in masked {
        timed(&mut || server.submit(m.clone()).unwrap());
    }
    let mut set = None;
    timed(&mut || set = Some(server.close_mask().unwrap()));
    let set = set.unwrap();
    let t = Instant::now();
    let confs: Vec<_> = clients
        .par_iter_mut()
        .zip(&keys)
        .map(|(c, k)| c.confirm(&set, &roster, k).unwrap())
        .collect();
    member_time += t.elapsed();
    for c in confs {
        timed(&mut || server.confirm(c.clone()).unwrap());
    }
    let for_each: BTreeMap<MemberId, _> = ids
        .iter()
        .map(|m| (m.clone(), server.confirmations_for(m)))
        .collect();
    let t = Instant::now();
    let reveals: Vec<_> = clients
        .par_iter_mut()
        .zip(&ids)
        .map(|(c, m)| c.reveal(&set.hash(), &for_each[m]).unwrap())
        .collect();
    member_time += t.elapsed();
    for r in reveals {
        timed(&mut || server.reveal(r.clone()).unwrap());
    }
    let unmask_start = Instant::now();
    let sum = server.unmask().unwrap();
    let unmask = unmask_start.elapsed();
    edge += unmask;
    assert!(sum.iter().flatten().all(|&x| x == 5 * n as u64));
    println!(
        "{{\"members\": {n}, \"k\": {}, \"threads\": {}, \"edge_seconds\": {:.3}, \"edge_unmask_seconds\": {:.3}, \"members_seconds_all\": {:.3}, \"member_ms_each\": {:.2}}}",
        server.params().degree,
        rayon::current_num_threads(),
        edge.as_secs_f64(),
        unmask.as_secs_f64(),
        member_time.as_secs_f64(),
        member_time.as_secs_f64() * 1000.0 * rayon::current_num_threads() as f64 / n as f64,
    );
}
