use pb_glwe::eval::EvalError;
use pb_glwe::ntt::CrtNtt;
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::{
    CompactPublicKey, EvalScratch, HiddenTotals, PreparedWeights, Rerandomizer, SeededGlwe,
    evaluate,
};
use rayon::prelude::*;

/// One household's share of a cycle's homomorphic work.
#[derive(Clone, Copy, Debug)]
pub struct EvalJob<'a> {
    /// The household's ciphertexts for the cycle.
    pub ciphertexts: &'a [SeededGlwe],
    /// The household's compact public key.
    pub public_key: &'a CompactPublicKey,
    /// Seed of the re-randomisation and flooding noise
    /// ([`Rerandomizer::from_seed`]); equal seeds give bit-identical results
    /// on every backend.
    pub rerandomizer: [u8; 32],
}

/// Where the billing authority's vector work runs.
///
/// Implementations must be bit-exact with [`CpuBackend`], the reference.
pub trait ComputeBackend: Send + Sync {
    /// Short name shown to users (`cpu`, `cuda`).
    fn name(&self) -> &'static str;

    /// Sums masked vectors of length `len` modulo 2^64 (the PRZS
    /// aggregation).
    fn sum_masked(&self, len: usize, vectors: &[&[u64]]) -> Vec<u64>;

    /// Evaluates every job against the cycle's weights, in order.
    fn evaluate(
        &self,
        weights: &PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<HiddenTotals>, EvalError>;

    /// Households per [`crate::CycleBiller::bill_batch`] call that keep
    /// this backend busy without holding more of a cycle in memory than
    /// needed (each household is about 0.3 MB of ciphertexts and key at
    /// 96 slots). Default: 256.
    fn preferred_batch(&self) -> usize {
        DEFAULT_BATCH
    }
}

/// [`ComputeBackend::preferred_batch`] unless a backend says otherwise.
pub const DEFAULT_BATCH: usize = 256;

/// The reference backend: households spread over cores with rayon.
#[derive(Debug)]
pub struct CpuBackend {
    ntt: CrtNtt,
}

impl Default for CpuBackend {
    fn default() -> Self {
        CpuBackend {
            ntt: CrtNtt::new(POLYNOMIAL_SIZE),
        }
    }
}

impl CpuBackend {
    /// A backend using rayon's global thread pool.
    pub fn new() -> CpuBackend {
        CpuBackend::default()
    }
}

impl ComputeBackend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn sum_masked(&self, len: usize, vectors: &[&[u64]]) -> Vec<u64> {
        // Slots are independent: split them over threads, sum members in order.
        let mut out = vec![0u64; len];
        out.par_chunks_mut(1024).enumerate().for_each(|(c, chunk)| {
            let base = c * 1024;
            for v in vectors {
                for (o, x) in chunk.iter_mut().zip(v.get(base..).unwrap_or_default()) {
                    *o = o.wrapping_add(*x);
                }
            }
        });
        out
    }

    /// 16 households per rayon thread, at least 64: enough to even out
    /// the threads' finishing times, a few tens of MB in memory.
    fn preferred_batch(&self) -> usize {
        (16 * rayon::current_num_threads()).clamp(64, 1024)
    }

    fn evaluate(
        &self,
        weights: &PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<HiddenTotals>, EvalError> {
        jobs.par_iter()
            .map_init(EvalScratch::default, |scratch, job| {
                let rr = Rerandomizer::from_seed(job.rerandomizer);
                evaluate(
                    &self.ntt,
                    weights,
                    job.ciphertexts,
                    job.public_key,
                    &rr,
                    scratch,
                )
            })
            .collect()
    }
}

/// Which compute backend to run SharedBilling on (`--backend`); the
/// `pb-cuda` crate's `select_backend` turns it into a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The fastest usable backend.
    #[default]
    Auto,
    /// The rayon CPU backend (the reference).
    Cpu,
    /// The CUDA backend.
    Cuda,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" => Ok(BackendChoice::Cuda),
            other => Err(format!(
                "unknown backend {other:?} (expected auto, cpu or cuda)"
            )),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}
