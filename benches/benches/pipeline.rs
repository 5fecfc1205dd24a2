//! Costs per household and cycle at T = 672 slots (one week of 15 minutes):
//! core `hide` (communities of 50 and 1,000), edge evaluation (one core, and
//! the rayon backend over all cores), household decryption, and the
//! serialized sizes (printed once).
//!
//! Run: `cargo bench -p pb-benches --bench pipeline`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pb_glwe::ntt::CrtNtt;
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::seeding::deterministic;
use pb_glwe::{EvalScratch, PreparedWeights, Rerandomizer, SecretKey, evaluate};
use pb_hiding::wire::Wire;
use pb_hiding::{HiddenBill, HidingContext};
use pb_model::{Aggregates, BillingModel, CycleContext, Data};
use pb_przs::{IdentityKey, PairwiseKeys};
use pb_shared_billing::{ComputeBackend, CpuBackend, EvalJob};
use pb_units::{CommunityId, CycleId, MemberId, PriceUnits, Wh};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const T: usize = 672;

fn context() -> CycleContext {
    let p: Vec<PriceUnits> = (0..T)
        .map(|t| PriceUnits(10_000 + (t as i64 * 37) % 15_000))
        .collect();
    let r = p.iter().map(|x| PriceUnits(x.0 + 11_000)).collect();
    let f = vec![PriceUnits(6_000); T];
    CycleContext::new(CycleId(1), BillingModel::Ucs, p, r, f).unwrap()
}

fn data(member: &MemberId, i: usize) -> Data {
    let u: Vec<Wh> = (0..T)
        .map(|t| Wh(((t * 13 + i * 7) % 900) as i64 - 300))
        .collect();
    let x: Vec<Wh> = u
        .iter()
        .enumerate()
        .map(|(t, w)| Wh(w.0 + ((t * 31 + i) % 200) as i64 - 100))
        .collect();
    Data::new(member.clone(), CycleId(1), u, x).unwrap()
}

/// A household of a community of `n` members, with keys derived.
fn household(n: usize) -> (HidingContext, Data) {
    let mut rng = ChaCha20Rng::seed_from_u64(n as u64);
    let ids: Vec<(MemberId, IdentityKey)> = (0..n)
        .map(|i| {
            (
                MemberId::new(format!("m{i:05}")).unwrap(),
                IdentityKey::generate(&mut rng),
            )
        })
        .collect();
    let list: Vec<_> = ids.iter().map(|(m, k)| (m.clone(), k.public())).collect();
    let keys =
        PairwiseKeys::derive(&CommunityId("bench".into()), &ids[0].0, &ids[0].1, &list).unwrap();
    let sk = SecretKey::generate(&mut deterministic(n as u128));
    (HidingContext::new(keys, sk), data(&ids[0].0, 0))
}

fn bench_hide(c: &mut Criterion) {
    let ctx = context();
    let mut g = c.benchmark_group("core_hide_T672");
    g.sample_size(20);
    for n in [50usize, 1000] {
        let (h, d) = household(n);
        let mut seeder = deterministic(5);
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{n}_members")),
            &n,
            |b, _| b.iter(|| h.hide(&d, &ctx, &mut seeder).unwrap()),
        );
    }
    g.finish();
}

struct Edge {
    weights: PreparedWeights,
    households: Vec<(
        HidingContext,
        pb_hiding::HiddenData,
        pb_glwe::CompactPublicKey,
    )>,
}

fn edge(n: usize) -> Edge {
    let ctx = context();
    let mut seeder = deterministic(9);
    let households: Vec<_> = (0..n)
        .map(|i| {
            let (h, _) = household(3);
            let d = data(h.member(), i);
            let hidden = h.hide(&d, &ctx, &mut seeder).unwrap();
            let cpk = h.public_key(&mut seeder);
            (h, hidden, cpk)
        })
        .collect();
    let vectors: Vec<_> = (0..n)
        .map(|i| data(&MemberId::new("x").unwrap(), i).vectors())
        .collect();
    let w = BillingModel::Ucs
        .weights(&ctx, &Aggregates::in_clear(BillingModel::Ucs, T, &vectors))
        .unwrap();
    let weights = PreparedWeights::new(&CrtNtt::new(POLYNOMIAL_SIZE), &w.bill, &w.reward).unwrap();
    Edge {
        weights,
        households,
    }
}

fn bench_edge(c: &mut Criterion) {
    let e = edge(16);
    let ntt = CrtNtt::new(POLYNOMIAL_SIZE);
    let (_, hidden, cpk) = &e.households[0];
    let rr = Rerandomizer::from_seed([1; 32]);
    let mut scratch = EvalScratch::default();
    let mut g = c.benchmark_group("edge_T672");
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    g.bench_function("evaluate_one_household_one_core", |b| {
        b.iter(|| {
            evaluate(
                &ntt,
                &e.weights,
                &hidden.ciphertexts,
                cpk,
                &rr,
                &mut scratch,
            )
            .unwrap()
        })
    });
    g.bench_function("rerandomizer_expand", |b| {
        b.iter(|| Rerandomizer::from_seed([2; 32]))
    });
    let backend = CpuBackend::new();
    let jobs: Vec<EvalJob<'_>> = e
        .households
        .iter()
        .enumerate()
        .map(|(i, (_, h, k))| EvalJob {
            ciphertexts: &h.ciphertexts,
            public_key: k,
            rerandomizer: [i as u8; 32],
        })
        .collect();
    g.throughput(Throughput::Elements(jobs.len() as u64));
    g.bench_function(
        format!(
            "cpu_backend_{}_households_{}_threads",
            jobs.len(),
            rayon::current_num_threads()
        ),
        |b| b.iter(|| backend.evaluate(&e.weights, &jobs).unwrap()),
    );
    g.finish();

    // Decryption and sizes.
    let totals = backend.evaluate(&e.weights, &jobs[..1]).unwrap().remove(0);
    let (h, hidden, _) = &e.households[0];
    let bill = HiddenBill {
        member: h.member().clone(),
        cycle: CycleId(1),
        totals,
    };
    let mut g = c.benchmark_group("household_T672");
    g.bench_function("decrypt", |b| b.iter(|| h.decrypt(&bill).unwrap()));
    g.finish();
    println!(
        "serialized sizes at T = {T}: HiddenData (upload) {} bytes, HiddenBill (download) {} bytes, public key {} bytes",
        hidden.to_bytes().len(),
        bill.to_bytes().len(),
        cpk.0.body.len() * 16 + 16
    );
}

/// The rayon backend on a batch of 1,000 households (one household's
/// ciphertexts and key shared by all jobs, each job with its own
/// re-randomisation seed: the work per job is the same as for distinct
/// households, without 275 MB of setup).
fn bench_edge_batch(c: &mut Criterion) {
    let e = edge(1);
    let (_, hidden, cpk) = &e.households[0];
    let backend = CpuBackend::new();
    let jobs: Vec<EvalJob<'_>> = (0..1000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            EvalJob {
                ciphertexts: &hidden.ciphertexts,
                public_key: cpk,
                rerandomizer: seed,
            }
        })
        .collect();
    let mut g = c.benchmark_group("edge_batch_T672");
    g.sample_size(10);
    g.throughput(Throughput::Elements(jobs.len() as u64));
    g.bench_function(
        format!(
            "cpu_backend_1000_households_{}_threads",
            rayon::current_num_threads()
        ),
        |b| b.iter(|| backend.evaluate(&e.weights, &jobs).unwrap()),
    );
    g.finish();
}

criterion_group!(benches, bench_hide, bench_edge, bench_edge_batch);
criterion_main!(benches);
