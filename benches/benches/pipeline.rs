//! Costs per household and cycle at T = 672 slots (one week of 15 minutes):
//! core `hide` (communities of 50 and 1,000), edge evaluation (one core, and
//! the rayon backend over all cores), household decryption, and the
//! serialized sizes (printed once).
//!
//! `edge_T672/transforms_of_one_household` times only the NTTs and mask
//! expansions that one evaluation performs (tfhe-ntt `prime64` plans and
//! `pb_glwe::mask::expand_mask`, the crates the evaluation calls), and after
//! the `edge_T672` group a summary times both alternately in the same run
//! and prints their ratio (issue 17: at most 1.5).
//!
//! Run: `cargo bench -p pb-benches --bench pipeline` (a filter such as
//! `-- edge_T672` runs part of it; the summary runs with `edge` or `ratio`).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

use pb_glwe::mask::expand_mask;
use pb_glwe::ntt::{CrtNtt, primes};
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
use tfhe_ntt::prime64::Plan;

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
    let mut transforms = Transforms::new(e.weights.chunk_count());
    g.bench_function("transforms_of_one_household", |b| {
        b.iter(|| transforms.run())
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
    if selected(&["edge", "ratio"]) {
        ratio_report(&e);
    }

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

/// Whether a benchmark filter given on the command line (`cargo bench
/// --bench pipeline -- <filter>`) selects one of `names` (no filter: all).
fn selected(names: &[&str]) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters.iter().any(|f| {
            names
                .iter()
                .any(|n| n.contains(f.as_str()) || f.contains(n))
        })
}

/// The NTTs and mask expansions of one household's evaluation, on the
/// crates the evaluation uses: per chunk one mask expansion and a forward
/// transform per prime; the same for the public key's mask; a forward
/// transform of the binary `r` per prime; one inverse transform per prime
/// of the accumulated product.
struct Transforms {
    plans: Vec<Plan>,
    residues: Vec<Vec<u64>>,
    mask: Vec<u128>,
    expansions: usize,
    forward: usize,
    inverse: usize,
}

impl Transforms {
    fn new(chunks: usize) -> Transforms {
        let plans: Vec<Plan> = primes()
            .iter()
            .map(|&p| Plan::try_new(POLYNOMIAL_SIZE, p).expect("the scheme's primes plan"))
            .collect();
        let residues = plans
            .iter()
            .map(|plan| {
                (0..POLYNOMIAL_SIZE as u64)
                    .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % plan.modulus())
                    .collect()
            })
            .collect();
        Transforms {
            plans,
            residues,
            mask: vec![0; POLYNOMIAL_SIZE],
            expansions: chunks + 1,
            forward: 3 * (chunks + 2),
            inverse: 3,
        }
    }

    fn run(&mut self) {
        for s in 0..self.expansions {
            expand_mask(black_box(s as u128), &mut self.mask);
        }
        for f in 0..self.forward {
            self.plans[f % 3].fwd(&mut self.residues[f % 3]);
        }
        for i in 0..self.inverse {
            self.plans[i % 3].inv(&mut self.residues[i % 3]);
        }
        black_box(&self.mask);
        black_box(&self.residues);
    }
}

/// Times one household's evaluation and its transforms alternately (so
/// that both see the same machine load) and prints the medians and ratio.
fn ratio_report(e: &Edge) {
    let ntt = CrtNtt::new(POLYNOMIAL_SIZE);
    let (_, hidden, cpk) = &e.households[0];
    let mut scratch = EvalScratch::default();
    let mut transforms = Transforms::new(e.weights.chunk_count());
    const ROUNDS: usize = 60;
    const REPS: u32 = 10;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..REPS {
            f();
        }
        start.elapsed() / REPS
    };
    let (mut eval, mut eval_rr, mut tr) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let rr = Rerandomizer::from_seed([round as u8; 32]);
        eval.push(time(&mut || {
            black_box(
                evaluate(
                    &ntt,
                    &e.weights,
                    &hidden.ciphertexts,
                    cpk,
                    &rr,
                    &mut scratch,
                )
                .unwrap(),
            );
        }));
        eval_rr.push(time(&mut || {
            let rr = Rerandomizer::from_seed(black_box([round as u8; 32]));
            black_box(
                evaluate(
                    &ntt,
                    &e.weights,
                    &hidden.ciphertexts,
                    cpk,
                    &rr,
                    &mut scratch,
                )
                .unwrap(),
            );
        }));
        tr.push(time(&mut || transforms.run()));
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (eval, eval_rr, tr) = (median(&mut eval), median(&mut eval_rr), median(&mut tr));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "one household at T = {T} ({} chunk(s)), one core, medians of {ROUNDS} alternating rounds of {REPS}:\n  \
         evaluate {:.1} us, with Rerandomizer::from_seed {:.1} us\n  \
         its transforms ({} mask expansions, {} forward and {} inverse 64-bit NTTs of size {}) {:.1} us\n  \
         ratio evaluate / transforms = {:.2} (with from_seed {:.2}; target <= 1.5)",
        e.weights.chunk_count(),
        us(eval),
        us(eval_rr),
        transforms.expansions,
        transforms.forward,
        transforms.inverse,
        POLYNOMIAL_SIZE,
        us(tr),
        us(eval) / us(tr),
        us(eval_rr) / us(tr),
    );
}

criterion_group!(benches, bench_hide, bench_edge, bench_edge_batch);
criterion_main!(benches);
