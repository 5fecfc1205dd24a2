//! The CUDA backend against the CPU reference, bit for bit.
//!
//! * Everywhere: the kernel sources run on the CPU through the emulator
//!   (`kernels/emu`), driven by the same device pipeline as on a GPU.
//! * On a machine with a usable GPU: the real device. Without one the test
//!   says it was skipped; `PBILL_REQUIRE_CUDA=1` turns the skip into a
//!   failure (for runs on GPU machines).

use pb_cuda::testdata::Sample;
use pb_cuda::{CudaBackend, EmulatedBackend};
use pb_glwe::eval::EvalError;
use pb_shared_billing::{ComputeBackend, CpuBackend, EvalJob};

fn cpu_reference(sample: &Sample) -> Vec<pb_glwe::HiddenTotals> {
    CpuBackend::new()
        .evaluate(&sample.weights, &sample.jobs())
        .expect("cpu backend")
}

#[test]
fn emulated_kernels_equal_the_cpu_backend_one_chunk() {
    // Three households in batches of two over two lanes: a full batch, then
    // a short one.
    let sample = Sample::new(3, 672, 11);
    let emu = EmulatedBackend::new(32, 2).expect("emulator");
    let got = emu
        .evaluate_on_device(&sample.weights, &sample.jobs())
        .expect("emulated run");
    let want = cpu_reference(&sample);
    assert_eq!(got.len(), want.len());
    for (h, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.body, w.body, "household {h}: body coefficients");
        assert!(g.mask == w.mask, "household {h}: mask differs");
    }
}

#[test]
fn emulated_kernels_equal_the_cpu_backend_two_chunks_and_block_sizes() {
    // 1,000 slots: 3,000 values per side, two ciphertexts per household.
    let sample = Sample::new(2, 1000, 12);
    assert_eq!(sample.weights.chunk_count(), 2);
    let want = cpu_reference(&sample);
    for threads in [16, 64] {
        let emu = EmulatedBackend::new(threads, 1).expect("emulator");
        let got = emu
            .evaluate_on_device(&sample.weights, &sample.jobs())
            .expect("emulated run");
        assert!(got == want, "{threads} threads per block: results differ");
    }
}

#[test]
fn emulated_weights_are_replaced_between_cycles() {
    // The backend caches a cycle's transformed weights; a new cycle must not
    // reuse the old ones.
    let a = Sample::new(1, 96, 13);
    let b = Sample::new(1, 96, 14);
    let emu = EmulatedBackend::new(32, 4).expect("emulator");
    for sample in [&a, &b, &a] {
        let got = emu
            .evaluate_on_device(&sample.weights, &sample.jobs())
            .expect("emulated run");
        assert!(got == cpu_reference(sample));
    }
}

#[test]
fn emulated_przs_sums_equal_the_cpu_backend() {
    let sample = Sample::new(5, 700, 15);
    let vectors: Vec<&[u64]> = sample.masked.iter().map(Vec::as_slice).collect();
    let emu = EmulatedBackend::new(32, 4).expect("emulator");
    let got = emu
        .sum_masked_on_device(700, &vectors)
        .expect("emulated sum");
    assert_eq!(got, CpuBackend::new().sum_masked(700, &vectors));
    // Through the trait, with a vector shorter than `len` (zero-padded).
    let short: Vec<&[u64]> = vec![&sample.masked[0][..10], &sample.masked[1]];
    assert_eq!(
        emu.sum_masked(700, &short),
        CpuBackend::new().sum_masked(700, &short)
    );
}

#[test]
fn bad_jobs_get_the_cpu_backends_errors() {
    let sample = Sample::new(1, 96, 16);
    let emu = EmulatedBackend::new(32, 4).expect("emulator");
    let (cts, pk) = &sample.households[0];
    let none = EvalJob {
        ciphertexts: &[],
        public_key: pk,
        rerandomizer: [0; 32],
    };
    let want = CpuBackend::new().evaluate(&sample.weights, &[none]);
    assert!(matches!(want, Err(EvalError::ChunkCount { .. })));
    assert_eq!(emu.evaluate(&sample.weights, &[none]), want);
    let mut short = cts.clone();
    short[0].body.pop();
    let bad = EvalJob {
        ciphertexts: &short,
        public_key: pk,
        rerandomizer: [0; 32],
    };
    assert_eq!(
        emu.evaluate(&sample.weights, &[bad]),
        Err(EvalError::Malformed)
    );
    // An empty batch is fine.
    assert_eq!(emu.evaluate(&sample.weights, &[]), Ok(Vec::new()));
}

#[test]
fn cuda_device_equals_the_cpu_backend() {
    let backend = match CudaBackend::new() {
        Ok(b) => b,
        Err(e) => {
            assert!(
                std::env::var("PBILL_REQUIRE_CUDA").as_deref() != Ok("1"),
                "PBILL_REQUIRE_CUDA=1 but the CUDA backend cannot run: {e}"
            );
            eprintln!("SKIPPED cuda_device_equals_the_cpu_backend: no usable CUDA device ({e})");
            return;
        }
    };
    eprintln!("device: {:?}", backend.info());
    for (households, slots, seed) in [(64, 672, 21), (5, 1000, 22), (1, 96, 23)] {
        let sample = Sample::new(households, slots, seed);
        let got = backend
            .evaluate_on_device(&sample.weights, &sample.jobs())
            .expect("device run");
        assert!(
            got == cpu_reference(&sample),
            "{households} households x {slots} slots: the device differs from the CPU"
        );
        let vectors: Vec<&[u64]> = sample.masked.iter().map(Vec::as_slice).collect();
        assert_eq!(
            backend.sum_masked(slots, &vectors),
            CpuBackend::new().sum_masked(slots, &vectors)
        );
    }
}
