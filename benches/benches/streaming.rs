//! Billing a cycle in memory against streaming it from the edge's store
//! (issue 14): per-household time of
//!
//! * `streaming/in_memory/<N>`: `SharedBilling::compute_bills_with` over all
//!   N households held in memory (the members' keys registered, every
//!   submission recorded; that setup is not timed), and
//! * `streaming/streamed/<N>`: `CycleBiller::new` once, then batches of
//!   `ComputeBackend::preferred_batch` read from a redb `EdgeStore`
//!   (`EdgeStore::for_each_billing_batch`: each serialized `HiddenData`
//!   decoded with its member's stored public key, the next batch read while
//!   the current one is billed) and billed with `CycleBiller::bill_batch`:
//!   reading and decoding are timed.
//!
//! N = 1,000 households of 96 slots (`PB_BENCH_HOUSEHOLDS` to change), made
//! from a pool of 32 encrypted households under distinct member ids. After
//! the group a summary prints both rates and their ratio from the very
//! timings criterion measured, then times the two alternately for six
//! rounds (the same load on both, on a shared machine) and prints that
//! ratio (target: streamed within 1.3x of in-memory).
//!
//! Run: `cargo bench -p pb-benches --bench streaming`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pb_edge::EdgeStore;
use pb_edge::store::{CycleRecord, MemberRecord};
use pb_glwe::seeding::deterministic;
use pb_glwe::{CompactPublicKey, SecretKey};
use pb_hiding::wire::Wire;
use pb_hiding::{HiddenBill, HiddenData, HidingContext};
use pb_model::{Aggregates, BillingModel, CycleContext, Data};
use pb_protocol::NodeId;
use pb_przs::{IdentityKey, PairwiseKeys};
use pb_shared_billing::{ComputeBackend, CpuBackend, CycleBiller, SharedBilling};
use pb_units::{CommunityId, CycleId, MemberId, PriceUnits, Wh};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const T: usize = 96;
const POOL: usize = 32;
const CYCLE: CycleId = CycleId(1);

/// (row, households) -> (total time, households billed).
static MEASURED: Mutex<BTreeMap<(&'static str, usize), (Duration, u64)>> =
    Mutex::new(BTreeMap::new());

fn households() -> usize {
    match std::env::var("PB_BENCH_HOUSEHOLDS") {
        Err(_) => 1_000,
        Ok(v) => match v.trim().parse() {
            Ok(n) if n >= 3 => n,
            _ => panic!("PB_BENCH_HOUSEHOLDS={v:?}: expected a number of households, at least 3"),
        },
    }
}

fn context() -> CycleContext {
    let p: Vec<PriceUnits> = (0..T)
        .map(|t| PriceUnits(10_000 + (t as i64 * 37) % 15_000))
        .collect();
    let r = p.iter().map(|x| PriceUnits(x.0 + 11_000)).collect();
    let f = vec![PriceUnits(6_000); T];
    CycleContext::new(CYCLE, BillingModel::Ucs, p, r, f).unwrap()
}

fn data(member: MemberId, i: usize) -> Data {
    let u: Vec<Wh> = (0..T)
        .map(|t| Wh(((t * 13 + i * 7) % 900) as i64 - 300))
        .collect();
    let x: Vec<Wh> = u
        .iter()
        .enumerate()
        .map(|(t, w)| Wh(w.0 + ((t * 31 + i) % 200) as i64 - 100))
        .collect();
    Data::new(member, CYCLE, u, x).unwrap()
}

fn member(i: usize) -> MemberId {
    MemberId::new(format!("house-{i:06}")).unwrap()
}

/// N households' submissions and keys (a pool of encrypted households
/// under N ids) and the cycle's aggregates.
struct Community {
    ctx: CycleContext,
    rows: Vec<(HiddenData, CompactPublicKey)>,
    aggregates: Aggregates,
}

fn community(n: usize) -> Community {
    let ctx = context();
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let mut seeder = deterministic(14);
    let pool: Vec<(HiddenData, CompactPublicKey, Data)> = (0..POOL)
        .map(|i| {
            let d = data(member(i), i);
            let id = IdentityKey::generate(&mut rng);
            let alone = [(d.member().clone(), id.public())];
            let keys = PairwiseKeys::derive(&CommunityId("bench".into()), d.member(), &id, &alone)
                .unwrap();
            let h = HidingContext::new(keys, SecretKey::generate(&mut seeder));
            let pk = h.public_key(&mut seeder);
            (h.hide(&d, &ctx, &mut seeder).unwrap(), pk, d)
        })
        .collect();
    let rows: Vec<(HiddenData, CompactPublicKey)> = (0..n)
        .map(|i| {
            let (d, pk, _) = &pool[i % POOL];
            let mut d = d.clone();
            d.member = member(i);
            (d, pk.clone())
        })
        .collect();
    let vectors: Vec<_> = (0..n).map(|i| pool[i % POOL].2.vectors()).collect();
    let aggregates = Aggregates::in_clear(ctx.model(), T, &vectors);
    Community {
        ctx,
        rows,
        aggregates,
    }
}

/// The community in a fresh `EdgeStore`, as the edge stores it.
fn store(c: &Community, dir: &std::path::Path) -> EdgeStore {
    let s = EdgeStore::open(dir).unwrap();
    let node = NodeId([1; 32]);
    let mut counter = 0u64;
    let mut entries = Vec::new();
    for (i, (d, pk)) in c.rows.iter().enumerate() {
        counter += 1;
        let record = MemberRecord {
            node: NodeId([i as u8; 32]),
            przs: pb_przs::IdentityPublic([i as u8; 32]),
            public_key: pk.clone(),
        };
        s.put_member((&node, counter), &d.member, &record).unwrap();
        entries.push(pb_secagg::RosterEntry {
            member: d.member.clone(),
            identity: record.node.0,
        });
    }
    counter += 1;
    let roster = pb_secagg::SignedRoster {
        roster: pb_secagg::Roster::new("bench", 1, entries).unwrap(),
        operator: [0; 32],
        signature: Vec::new(),
    };
    s.put_roster((&node, counter), &roster).unwrap();
    counter += 1;
    s.put_cycle(
        (&node, counter),
        &CycleRecord {
            context: c.ctx.clone(),
            roster_version: 1,
            posted_at: 0,
        },
    )
    .unwrap();
    for (d, _) in &c.rows {
        counter += 1;
        s.put_submission((&node, counter), d).unwrap();
    }
    s
}

fn in_memory(c: &Community) -> SharedBilling {
    let mut edge = SharedBilling::with_seed(Box::new(CpuBackend::new()), [5; 32]);
    for (d, pk) in &c.rows {
        edge.register_member(d.member.clone(), pk.clone()).unwrap();
    }
    edge.record_context(c.ctx.clone()).unwrap();
    for (d, _) in &c.rows {
        edge.record_data(d.clone()).unwrap();
    }
    edge
}

/// Bills the stored cycle batch by batch, handing each batch's bills to
/// `sink`; returns how many.
fn streamed(
    c: &Community,
    store: &EdgeStore,
    backend: &CpuBackend,
    mut sink: impl FnMut(Vec<HiddenBill>),
) -> usize {
    let members = c.rows.iter().map(|(d, _)| d.member.clone());
    let biller = CycleBiller::new(&c.ctx, &c.aggregates, members, 3, [5; 32]).unwrap();
    let mut billed = 0;
    store
        .for_each_billing_batch::<pb_edge::EdgeError>(
            CYCLE,
            None,
            backend.preferred_batch(),
            |rows| {
                let bills = biller.bill_batch(backend, &rows).unwrap();
                billed += bills.len();
                sink(bills);
                Ok(())
            },
        )
        .unwrap();
    billed
}

fn record(row: &'static str, n: usize, took: Duration, iters: u64) {
    let mut m = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let e = m.entry((row, n)).or_default();
    e.0 += took;
    e.1 += iters * n as u64;
}

fn bench_streaming(c: &mut Criterion) {
    let n = households();
    let community = community(n);
    let dir = tempfile::tempdir().unwrap();
    let store = store(&community, dir.path());
    let backend = CpuBackend::new();
    let file = store.disk_usage().unwrap().file_bytes;
    // What the store must hold: each submission and each member's key once.
    let held: usize = community
        .rows
        .iter()
        .map(|(d, pk)| d.to_bytes().len() + pk.0.body.len() * 16 + 16)
        .sum();
    println!(
        "{n} households x {T} slots; store {:.1} MB = {:.2}x the {:.1} MB of submissions and \
         keys it holds; batch {} households",
        file as f64 / 1e6,
        file as f64 / held as f64,
        held as f64 / 1e6,
        backend.preferred_batch()
    );
    // Both paths give the same bills.
    let want = in_memory(&community)
        .compute_bills_with(CYCLE, community.aggregates.clone())
        .unwrap();
    let mut got = Vec::with_capacity(n);
    assert_eq!(streamed(&community, &store, &backend, |b| got.extend(b)), n);
    assert!(got == want, "streamed bills differ from in-memory bills");
    drop((got, want));

    // Reading and decoding alone, once (the part streaming adds).
    let start = Instant::now();
    let mut after: Option<MemberId> = None;
    let mut read = 0;
    loop {
        let rows = store.billing_batch(CYCLE, after.as_ref(), 64).unwrap();
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.member.clone());
        read += rows.len();
    }
    assert_eq!(read, n);
    println!(
        "reading and decoding alone: {:.3} ms per household",
        start.elapsed().as_secs_f64() * 1e3 / n as f64
    );

    let mut group = c.benchmark_group("streaming");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(BenchmarkId::new("in_memory", n), |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let mut edge = in_memory(&community);
                let start = Instant::now();
                let bills = edge
                    .compute_bills_with(CYCLE, community.aggregates.clone())
                    .unwrap();
                took += start.elapsed();
                assert_eq!(bills.len(), n);
            }
            record("in_memory", n, took, iters);
            took
        })
    });
    group.bench_function(BenchmarkId::new("streamed", n), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                assert_eq!(streamed(&community, &store, &backend, drop), n);
            }
            let took = start.elapsed();
            record("streamed", n, took, iters);
            took
        })
    });
    group.finish();

    let m = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let per = |row| {
        m.get(&(row, n))
            .map(|(d, h)| d.as_secs_f64() * 1e3 / *h as f64)
    };
    if let (Some(a), Some(b)) = (per("in_memory"), per("streamed")) {
        println!(
            "\nper household over all samples: in memory {a:.3} ms, streamed {b:.3} ms, \
             streamed/in-memory {:.2}x",
            b / a
        );
    }
    drop(m);

    // The two rows ran one after the other; on a shared machine the load
    // may differ between them. Alternate them in the same window too.
    let rounds = 6;
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let mut edge = in_memory(&community);
        let start = Instant::now();
        let bills = edge
            .compute_bills_with(CYCLE, community.aggregates.clone())
            .unwrap();
        a += start.elapsed();
        drop(bills);
        let start = Instant::now();
        assert_eq!(streamed(&community, &store, &backend, drop), n);
        b += start.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / (rounds * n) as f64;
    println!(
        "alternating, {rounds} rounds: in memory {:.3} ms, streamed {:.3} ms per household, \
         streamed/in-memory {:.2}x (target <= 1.3x)",
        per(a),
        per(b),
        b.as_secs_f64() / a.as_secs_f64()
    );
}

criterion_group!(benches, bench_streaming);
criterion_main!(benches);
