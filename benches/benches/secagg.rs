//! The masking protocol's cost for one household and cycle, against the
//! community's size (issue 12): a core's rounds (key bundle, shares to its
//! k neighbours, masking 3 x 672 values, confirmation) grow with
//! k, not n; drawing the cycle's graph grows with n (it hashes the roster
//! once per cycle). Printed once per size: k, t, upload and download
//! bytes of the rounds.
//!
//! Run: `cargo bench -p pb-benches --bench secagg`.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use pb_secagg::{Client, Graph, Roster, RosterEntry, Session, SignedRoster, SurvivorSet};
use pb_units::MemberId;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::{Digest, Sha256};

const FIELDS: usize = 3;
const SLOTS: usize = 672;

struct Setup {
    roster: Roster,
    graph: Graph,
    keys: BTreeMap<MemberId, SigningKey>,
    victim: MemberId,
}

fn setup(n: usize) -> Setup {
    let operator = SigningKey::from_bytes(&[9; 32]);
    let key_of = |i: usize| SigningKey::from_bytes(&Sha256::digest(i.to_le_bytes()).into());
    let ids: Vec<MemberId> = (0..n)
        .map(|i| MemberId::new(format!("h{i:07}")).unwrap())
        .collect();
    let roster = Roster::new(
        "bench",
        1,
        ids.iter()
            .enumerate()
            .map(|(i, m)| RosterEntry {
                member: m.clone(),
                identity: key_of(i).verifying_key().to_bytes(),
            })
            .collect(),
    )
    .unwrap();
    let signed = SignedRoster::sign(roster, &operator);
    let roster = signed
        .verify(&operator.verifying_key().to_bytes(), 3)
        .unwrap()
        .clone();
    let session = Session {
        community: "bench".into(),
        cycle: 1,
        roster: roster.fingerprint(),
    };
    let graph = Graph::new(&session, &ids, &roster.params().unwrap());
    let victim = ids[0].clone();
    // The victim and its neighbours (and theirs, so that each has a full
    // neighbourhood of keys to share with).
    let mut keys = BTreeMap::new();
    let mut wanted = vec![victim.clone()];
    wanted.extend(graph.neighbours(&victim));
    for m in wanted {
        let i = ids.binary_search(&m).unwrap();
        keys.insert(m, key_of(i));
    }
    Setup {
        roster,
        graph,
        keys,
        victim,
    }
}

/// One cycle of the victim with its neighbours (their work not timed by
/// the caller when `only_victim` is measured separately).
struct Cycle {
    victim: Client,
    bundles: Vec<pb_secagg::SignedBundle>,
    incoming: Vec<pb_secagg::EncryptedShare>,
}

fn prepare(s: &Setup, rng: &mut ChaCha20Rng) -> Cycle {
    let mut clients: BTreeMap<MemberId, Client> = s
        .keys
        .iter()
        .map(|(m, k)| {
            (
                m.clone(),
                Client::with_graph(&s.roster, &s.graph, 3, m, k, rng).unwrap(),
            )
        })
        .collect();
    let all_bundles: BTreeMap<MemberId, pb_secagg::SignedBundle> = clients
        .iter()
        .map(|(m, c)| (m.clone(), c.bundle().clone()))
        .collect();
    let victim_nb = s.graph.neighbours(&s.victim);
    let bundles: Vec<_> = victim_nb.iter().map(|m| all_bundles[m].clone()).collect();
    let mut incoming = Vec::new();
    for m in &victim_nb {
        let nb: Vec<_> = s
            .graph
            .neighbours(m)
            .iter()
            .filter_map(|v| all_bundles.get(v).cloned())
            .collect();
        let shares = clients.get_mut(m).unwrap().share(&nb, rng).unwrap();
        incoming.extend(shares.into_iter().filter(|x| x.to == s.victim));
    }
    let victim = clients.remove(&s.victim).unwrap();
    Cycle {
        victim,
        bundles,
        incoming,
    }
}

fn bench_rounds(c: &mut Criterion) {
    let mut group = c.benchmark_group("secagg_core_cycle");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let input = vec![vec![7u64; SLOTS]; FIELDS];
    for n in [1_000usize, 10_000, 100_000] {
        let s = setup(n);
        let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
        let p = s.graph.params();
        let k = p.degree;
        eprintln!(
            "n = {n}: k = {k}, t = {}, c = {}, d = {}",
            p.threshold(k),
            p.colluding,
            p.dropped
        );
        // Advertise + share + mask + confirm + reveal of one member.
        group.bench_with_input(BenchmarkId::new("rounds", n), &n, |b, _| {
            b.iter_batched(
                || prepare(&s, &mut rng.clone()),
                |mut cy| {
                    let mut r = ChaCha20Rng::seed_from_u64(1);
                    let shares = cy.victim.share(&cy.bundles, &mut r).unwrap();
                    let masked = cy.victim.mask(&cy.incoming, &input).unwrap();
                    let set = SurvivorSet {
                        session: s.graph.session().clone(),
                        members: s.keys.keys().cloned().collect(),
                    };
                    let conf = cy
                        .victim
                        .confirm(&set, &s.roster, &s.keys[&s.victim])
                        .unwrap();
                    (shares, masked, conf)
                },
                criterion::BatchSize::LargeInput,
            )
        });
        // A core's neighbours in the cycle's graph (once per cycle).
        let ids = s.roster.ids();
        group.bench_with_input(BenchmarkId::new("graph", n), &n, |b, _| {
            b.iter(|| pb_secagg::graph::neighbours_of(s.graph.session(), &ids, p, &s.victim))
        });
        let cy = prepare(&s, &mut rng);
        let up = bincode::serde::encode_to_vec(&cy.bundles[0], bincode::config::standard())
            .map(|v| v.len())
            .unwrap_or(0);
        eprintln!(
            "n = {n}: per cycle a core downloads {} bundles (~{} B each) and {} shares",
            cy.bundles.len(),
            up,
            cy.incoming.len()
        );
    }
    group.finish();
}

criterion_group!(benches, bench_rounds);
criterion_main!(benches);
