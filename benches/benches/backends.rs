//! CPU against CUDA on the billing authority's batched work: evaluating
//! every household of a cycle (mask expansion, exact products modulo 2^128,
//! re-randomisation and flooding, body coefficients) at T = 672 slots.
//!
//! Rows: `backends/cpu/<households>` and, where a GPU is usable,
//! `backends/cuda/<households>`, for 1,000, 10,000 and 100,000 households
//! (`PB_BENCH_HOUSEHOLDS=1000,10000` to choose). After the group a summary
//! prints households per second of each backend and the CPU/GPU ratio, from
//! the very timings criterion measured. `PB_BENCH_MILLION=1` also bills
//! 1,000,000 households once on the GPU and prints the time.
//!
//! Households come from a pool of 64 distinct encrypted households, each
//! job with its own re-randomisation seed (the work per household does not
//! depend on its data); jobs go to the backend in slices of 20,000, as an
//! edge streaming a large cycle would, so memory stays bounded.
//!
//! Run: `cargo bench -p pb-benches --bench backends`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pb_cuda::CudaBackend;
use pb_cuda::testdata::Sample;
use pb_glwe::PreparedWeights;
use pb_shared_billing::{ComputeBackend, CpuBackend, EvalJob};

const T: usize = 672;
const POOL: usize = 64;
const SLICE: usize = 20_000;

/// (backend, households) -> (total time, households evaluated).
static MEASURED: Mutex<BTreeMap<(&'static str, usize), (Duration, u64)>> =
    Mutex::new(BTreeMap::new());

fn sizes() -> Vec<usize> {
    std::env::var("PB_BENCH_HOUSEHOLDS")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|x| match x.trim().parse() {
                    Ok(n) if n > 0 => n,
                    _ => panic!(
                        "PB_BENCH_HOUSEHOLDS={v:?}: expected positive numbers, e.g. 1000,10000"
                    ),
                })
                .collect()
        })
        .unwrap_or_else(|| vec![1_000, 10_000, 100_000])
}

fn jobs(sample: &Sample, n: usize) -> Vec<EvalJob<'_>> {
    (0..n)
        .map(|i| {
            let (cts, pk) = &sample.households[i % POOL];
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            EvalJob {
                ciphertexts: cts,
                public_key: pk,
                rerandomizer: seed,
            }
        })
        .collect()
}

/// Evaluates all jobs in slices, dropping the results.
fn run(backend: &dyn ComputeBackend, weights: &PreparedWeights, jobs: &[EvalJob<'_>]) {
    for slice in jobs.chunks(SLICE) {
        let out = backend.evaluate(weights, slice).expect("evaluate");
        assert_eq!(out.len(), slice.len());
    }
}

fn bench_backends(c: &mut Criterion) {
    let sample = Sample::new(POOL, T, 672);
    let cpu = CpuBackend::new();
    let cuda = match CudaBackend::new() {
        Ok(b) => {
            println!("cuda: {:?}", b.info());
            Some(b)
        }
        Err(e) => {
            println!("cuda rows skipped: {e}");
            None
        }
    };
    let mut backends: Vec<(&'static str, &dyn ComputeBackend)> = vec![("cpu", &cpu)];
    if let Some(b) = &cuda {
        backends.push(("cuda", b));
    }
    let mut group = c.benchmark_group("backends");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    for n in sizes() {
        let all = jobs(&sample, n);
        group.throughput(Throughput::Elements(n as u64));
        for &(name, backend) in &backends {
            group.bench_with_input(BenchmarkId::new(name, n), &all, |b, all| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(backend, &sample.weights, all);
                    }
                    let took = start.elapsed();
                    let mut m = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
                    let e = m.entry((name, n)).or_default();
                    e.0 += took;
                    e.1 += iters * n as u64;
                    took
                })
            });
        }
    }
    group.finish();
    summary();
    if let (Some(b), Ok("1")) = (&cuda, std::env::var("PB_BENCH_MILLION").as_deref()) {
        let all = jobs(&sample, 1_000_000);
        let start = Instant::now();
        run(b, &sample.weights, &all);
        let took = start.elapsed();
        println!(
            "cuda: 1,000,000 households x {T} slots in {:.2} s ({:.0} households/s)",
            took.as_secs_f64(),
            1e6 / took.as_secs_f64()
        );
    }
}

fn summary() {
    let m = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    let rate =
        |name: &'static str, n: usize| m.get(&(name, n)).map(|(d, h)| *h as f64 / d.as_secs_f64());
    println!("\nbackends (T = {T}), households per second over all samples:");
    println!(
        "{:>12} {:>14} {:>14} {:>10}",
        "households", "cpu", "cuda", "cuda/cpu"
    );
    for n in sizes() {
        let (c, g) = (rate("cpu", n), rate("cuda", n));
        let fmt = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.0}"));
        let ratio = match (c, g) {
            (Some(c), Some(g)) => format!("{:.1}x", g / c),
            _ => "-".into(),
        };
        println!("{n:>12} {:>14} {:>14} {ratio:>10}", fmt(c), fmt(g));
    }
}

criterion_group!(benches, bench_backends);
criterion_main!(benches);
