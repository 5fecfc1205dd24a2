//! The CUDA compute backend of SharedBilling (design section 11).
//!
//! [`CudaBackend`] runs the billing authority's batched vector work (mask
//! expansion, negacyclic products modulo `2^128` by a three-prime NTT and
//! CRT, re-randomisation and flooding, the body coefficients and the PRZS
//! sums) on an NVIDIA GPU. The kernels are the CUDA C sources in `kernels/`,
//! compiled at run time by NVRTC; libcuda and libnvrtc are loaded
//! dynamically, so the crate builds everywhere and [`select_backend`] falls
//! back to the rayon [`CpuBackend`] (the reference) where no device is usable.
//!
//! Results are bit-identical to the CPU backend for the same inputs and
//! randomness. That is checked
//! * on every machine, by running the same kernel sources and the same
//!   pipeline on the CPU through an emulator ([`EmulatedBackend`]);
//! * on a GPU, by the exactness test and by a known-answer self-test that
//!   [`CudaBackend::new`] runs before it accepts the device.

#![warn(missing_docs)]

mod consts;
mod driver;
mod emulator;
mod exec;
mod pipeline;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use pb_glwe::eval::EvalError;
use pb_glwe::{HiddenTotals, PreparedWeights};
use pb_shared_billing::{BackendChoice, ComputeBackend, CpuBackend, EvalJob};
use thiserror::Error;

pub use driver::{DeviceInfo, compile_kernels};

use crate::driver::Driver;
use crate::emulator::Emulator;
use crate::pipeline::{Pipeline, check_jobs};

/// The kernel sources (`kernels/billing.cu`), compiled by NVRTC at run time.
pub const KERNEL_SOURCE: &str = include_str!("../../../kernels/billing.cu");

/// The kernels the backend launches, all defined in [`KERNEL_SOURCE`].
pub const KERNELS: &[&str] = &[
    "pb_mask_residues",
    "pb_chacha_streams",
    "pb_rerandomizer_r",
    "pb_small_residues",
    "pb_ntt_forward",
    "pb_ntt_inverse",
    "pb_scale",
    "pb_pointwise",
    "pb_crt_mask",
    "pb_bodies",
    "pb_sum_columns",
];

/// Why the CUDA backend cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CudaError {
    /// libcuda could not be loaded.
    #[error("no CUDA driver (libcuda) on this machine")]
    NoDriver,
    /// libnvrtc could not be loaded.
    #[error("no NVRTC library (libnvrtc) to compile the kernels; put it on LD_LIBRARY_PATH")]
    NoNvrtc,
    /// The driver sees no device.
    #[error("the CUDA driver sees no device")]
    NoDevice,
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// NVRTC refused the kernels.
    #[error("NVRTC could not compile kernels/billing.cu: {0}")]
    Compile(String),
    /// A kernel launch failed.
    #[error("kernel launch: {0}")]
    Launch(String),
    /// Not even one household fits in device memory.
    #[error("device memory exhausted ({free} bytes free)")]
    OutOfMemory {
        /// Free bytes when the batch was sized.
        free: usize,
    },
    /// The device computed something other than the CPU reference.
    #[error("self-test failed: the device's result differs from the CPU backend's")]
    SelfTest,
    /// A setting (environment variable) has an invalid value.
    #[error("{0}")]
    Config(String),
    /// The CUDA libraries panicked (e.g. a missing symbol).
    #[error("CUDA library failure: {0}")]
    Panicked(String),
}

/// Households per batch at most: `PB_CUDA_BATCH` if set (a positive
/// integer), else 4,096.
fn batch_cap(value: Option<&str>) -> Result<usize, CudaError> {
    match value {
        None => Ok(4096),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(CudaError::Config(format!(
                "PB_CUDA_BATCH={v:?}: expected a positive number of households"
            ))),
        },
    }
}

/// Runs `f`, turning a panic inside the CUDA libraries into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, CudaError>) -> Result<T, CudaError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown".into());
            Err(CudaError::Panicked(msg))
        }
    }
}

/// A [`ComputeBackend`] on a device pipeline, falling back to the CPU
/// backend (and staying there) if the device fails mid-run.
struct DeviceBackend<E: exec::Exec> {
    name: &'static str,
    pipeline: Mutex<Pipeline<E>>,
    cpu: CpuBackend,
    failed: AtomicBool,
    max_batch: usize,
}

impl<E: exec::Exec> DeviceBackend<E> {
    fn new(name: &'static str, exec: E, max_batch: usize) -> Result<Self, CudaError> {
        Ok(DeviceBackend {
            name,
            pipeline: Mutex::new(Pipeline::new(exec, max_batch)?),
            cpu: CpuBackend::new(),
            failed: AtomicBool::new(false),
            max_batch: max_batch.max(1),
        })
    }

    fn run<T>(&self, f: impl FnOnce(&mut Pipeline<E>) -> Result<T, CudaError>) -> Option<T> {
        if self.failed.load(Ordering::Relaxed) {
            return None;
        }
        let mut pipeline = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
        match guarded(|| f(&mut pipeline)) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "{} backend failed; continuing on the CPU backend", self.name);
                self.failed.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Evaluates on the device only, reporting device errors.
    fn evaluate_strict(
        &self,
        weights: &PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<HiddenTotals>, CudaError> {
        let mut pipeline = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
        guarded(|| pipeline.evaluate(weights, jobs))
    }

    /// Sums on the device only, reporting device errors.
    fn sum_masked_strict(&self, len: usize, vectors: &[&[u64]]) -> Result<Vec<u64>, CudaError> {
        let mut pipeline = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
        guarded(|| pipeline.sum_masked(len, vectors))
    }
}

impl<E: exec::Exec> ComputeBackend for DeviceBackend<E> {
    fn name(&self) -> &'static str {
        self.name
    }

    /// The pipeline's batch cap (`PB_CUDA_BATCH`), at most 1,024 households
    /// (about 300 MB of host memory at 96 slots): the pipeline cuts a
    /// streamed batch further to fit the device.
    fn preferred_batch(&self) -> usize {
        self.max_batch.min(1024)
    }

    fn sum_masked(&self, len: usize, vectors: &[&[u64]]) -> Vec<u64> {
        self.run(|p| p.sum_masked(len, vectors))
            .unwrap_or_else(|| self.cpu.sum_masked(len, vectors))
    }

    fn evaluate(
        &self,
        weights: &PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<HiddenTotals>, EvalError> {
        check_jobs(weights, jobs)?;
        match self.run(|p| p.evaluate(weights, jobs)) {
            Some(out) => Ok(out),
            None => self.cpu.evaluate(weights, jobs),
        }
    }
}

/// The device-only entry points (no CPU fallback, errors reported) and the
/// [`ComputeBackend`] implementation of a wrapper around a `DeviceBackend`.
macro_rules! device_backend_api {
    ($backend:ty) => {
        impl $backend {
            /// Evaluates on the device only (no CPU fallback), reporting
            /// device errors: for exactness tests and benchmarks.
            pub fn evaluate_on_device(
                &self,
                weights: &PreparedWeights,
                jobs: &[EvalJob<'_>],
            ) -> Result<Vec<HiddenTotals>, CudaError> {
                self.inner.evaluate_strict(weights, jobs)
            }

            /// Sums on the device only, reporting device errors.
            pub fn sum_masked_on_device(
                &self,
                len: usize,
                vectors: &[&[u64]],
            ) -> Result<Vec<u64>, CudaError> {
                self.inner.sum_masked_strict(len, vectors)
            }
        }

        impl ComputeBackend for $backend {
            fn name(&self) -> &'static str {
                self.inner.name()
            }
            fn sum_masked(&self, len: usize, vectors: &[&[u64]]) -> Vec<u64> {
                self.inner.sum_masked(len, vectors)
            }
            fn preferred_batch(&self) -> usize {
                self.inner.preferred_batch()
            }
            fn evaluate(
                &self,
                weights: &PreparedWeights,
                jobs: &[EvalJob<'_>],
            ) -> Result<Vec<HiddenTotals>, EvalError> {
                self.inner.evaluate(weights, jobs)
            }
        }
    };
}

/// The CUDA backend: SharedBilling's vector work on GPU 0.
pub struct CudaBackend {
    inner: DeviceBackend<Driver>,
    info: DeviceInfo,
}

impl CudaBackend {
    /// Opens GPU 0, compiles the kernels with NVRTC and checks one household
    /// against the CPU backend bit for bit before accepting the device.
    pub fn new() -> Result<CudaBackend, CudaError> {
        guarded(|| {
            let driver = Driver::open()?;
            let info = driver.info.clone();
            let max_batch = batch_cap(std::env::var("PB_CUDA_BATCH").ok().as_deref())?;
            let inner = DeviceBackend::new("cuda", driver, max_batch)?;
            self_test(&inner)?;
            Ok(CudaBackend { inner, info })
        })
    }

    /// The device found at start.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }
}

device_backend_api!(CudaBackend);

/// The CUDA kernels and device pipeline run on the CPU by the C++ emulator
/// (`kernels/emu`): for testing the GPU code path bit for bit on machines
/// without a GPU. Very slow; never a production backend.
pub struct EmulatedBackend {
    inner: DeviceBackend<Emulator>,
}

impl EmulatedBackend {
    /// An emulated device with `threads_per_block` threads per block and at
    /// most `max_batch` households per batch (small values exercise the
    /// batching).
    pub fn new(threads_per_block: u32, max_batch: usize) -> Result<EmulatedBackend, CudaError> {
        let threads = threads_per_block.clamp(1, 1024).next_power_of_two();
        Ok(EmulatedBackend {
            inner: DeviceBackend::new("cuda-emulator", Emulator::new(threads), max_batch)?,
        })
    }
}

device_backend_api!(EmulatedBackend);

/// A one-household known-answer test: the device must reproduce the CPU
/// backend bit for bit, or it is not used.
fn self_test<E: exec::Exec>(backend: &DeviceBackend<E>) -> Result<(), CudaError> {
    let sample = testdata::Sample::new(2, 672, 0x5e1f_7e57);
    let jobs = sample.jobs();
    let want = CpuBackend::new()
        .evaluate(&sample.weights, &jobs)
        .map_err(|e| CudaError::Launch(format!("self-test input: {e}")))?;
    let got = backend.evaluate_strict(&sample.weights, &jobs)?;
    if got != want {
        return Err(CudaError::SelfTest);
    }
    let vectors: Vec<&[u64]> = sample.masked.iter().map(Vec::as_slice).collect();
    if backend.sum_masked_strict(672, &vectors)? != CpuBackend::new().sum_masked(672, &vectors) {
        return Err(CudaError::SelfTest);
    }
    Ok(())
}

/// Picks the compute backend for `choice` and says which one and why:
/// `auto` takes the CUDA backend when a device passes its self-test and the
/// CPU backend otherwise; `cuda` fails with the reason when it cannot run.
pub fn select_backend(choice: BackendChoice) -> Result<(Box<dyn ComputeBackend>, String), String> {
    let cpu = || format!("cpu ({} threads)", rayon::current_num_threads());
    match choice {
        BackendChoice::Cpu => Ok((Box::new(CpuBackend::new()), format!("backend: {}", cpu()))),
        BackendChoice::Auto => match CudaBackend::new() {
            Ok(b) => {
                let said = describe(&b);
                Ok((Box::new(b), format!("backend: {said} (auto)")))
            }
            Err(e) => Ok((
                Box::new(CpuBackend::new()),
                format!("backend: {} (auto: CUDA not usable: {e})", cpu()),
            )),
        },
        BackendChoice::Cuda => match CudaBackend::new() {
            Ok(b) => {
                let said = describe(&b);
                Ok((Box::new(b), format!("backend: {said}")))
            }
            Err(e) => Err(format!("backend cuda: {e} (use --backend cpu or auto)")),
        },
    }
}

fn describe(b: &CudaBackend) -> String {
    let i = b.info();
    format!(
        "cuda ({}, compute {}.{}, {} MiB; kernels compiled by NVRTC in {} ms)",
        i.name,
        i.capability.0,
        i.capability.1,
        i.memory >> 20,
        i.compile_millis
    )
}

/// Synthetic households for self-tests, tests and benchmarks.
pub mod testdata {
    use pb_glwe::ntt::plan;
    use pb_glwe::seeding::deterministic;
    use pb_glwe::{CompactPublicKey, PreparedWeights, SecretKey, SeededGlwe};
    use pb_shared_billing::EvalJob;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    /// Distinct encrypted households of one cycle with its weights.
    pub struct Sample {
        /// The cycle's weights.
        pub weights: PreparedWeights,
        /// Per household: its ciphertexts and public key.
        pub households: Vec<(Vec<SeededGlwe>, CompactPublicKey)>,
        /// Per household: the rerandomiser seed.
        pub seeds: Vec<[u8; 32]>,
        /// Per household: a masked PRZS vector of `slots` values.
        pub masked: Vec<Vec<u64>>,
    }

    impl Sample {
        /// `households` households with `slots` slots per side-vector part
        /// (three parts per side, as the billing models use).
        pub fn new(households: usize, slots: usize, seed: u64) -> Sample {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut seeder = deterministic(seed as u128);
            let len = 3 * slots;
            let mut weight = |bound: u64| -> Vec<i64> {
                (0..len)
                    .map(|_| (rng.next_u64() % (2 * bound)) as i64 - bound as i64)
                    .collect()
            };
            let wb = weight(1 << 20);
            let wr = weight(1 << 20);
            let weights = PreparedWeights::new(plan(), &wb, &wr)
                .unwrap_or_else(|e| panic!("sample weights: {e}"));
            let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xa5a5);
            let mut households_out = Vec::with_capacity(households);
            let mut seeds = Vec::with_capacity(households);
            let mut masked = Vec::with_capacity(households);
            for _ in 0..households {
                let sk = SecretKey::generate(&mut seeder);
                let cpk = sk.public_key(&mut seeder);
                let bill: Vec<i64> = (0..len)
                    .map(|_| (rng.next_u32() % 100_000) as i64)
                    .collect();
                let reward: Vec<i64> = (0..len)
                    .map(|_| (rng.next_u32() % 100_000) as i64)
                    .collect();
                let cts = pb_glwe::layout::pack(&bill, &reward)
                    .iter()
                    .map(|m| sk.encrypt(m, &mut seeder))
                    .collect();
                households_out.push((cts, cpk));
                let mut s = [0u8; 32];
                rng.fill_bytes(&mut s);
                seeds.push(s);
                masked.push((0..slots).map(|_| rng.next_u64()).collect());
            }
            Sample {
                weights,
                households: households_out,
                seeds,
                masked,
            }
        }

        /// One job per household.
        pub fn jobs(&self) -> Vec<EvalJob<'_>> {
            self.households
                .iter()
                .zip(&self.seeds)
                .map(|((cts, pk), seed)| EvalJob {
                    ciphertexts: cts,
                    public_key: pk,
                    rerandomizer: *seed,
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_cap_takes_positive_integers_and_names_bad_values() {
        assert_eq!(batch_cap(None), Ok(4096));
        assert_eq!(batch_cap(Some("128")), Ok(128));
        for bad in ["0", "-3", "many", ""] {
            let err = batch_cap(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("PB_CUDA_BATCH"), "{err}");
        }
    }
}
