//! The batched evaluation on a device: households stream through in
//! batches sized to the device's memory, alternating between lanes so that
//! one batch's copies and host packing overlap another's kernels. Generic
//! over [`Exec`], so the CPU emulator runs exactly this code.

use pb_glwe::eval::{EvalError, check_inputs};
use pb_glwe::layout::REWARD_COEFF;
use pb_glwe::params::POLYNOMIAL_SIZE;
use pb_glwe::{HiddenTotals, PreparedWeights, SeededGlwe};
use pb_shared_billing::EvalJob;
use rayon::prelude::*;

use crate::CudaError;
use crate::consts::{STREAM_WORDS, Tables};
use crate::exec::{Arg, Blocks, DeviceBuffer, Exec, HostBuffer};

const N: usize = POLYNOMIAL_SIZE;
/// Dynamic shared memory of an NTT block: one polynomial of residues.
const NTT_SHARED: u32 = (N * 8) as u32;

/// Device words of one household in a batch with `chunks` ciphertexts.
fn device_words_per_household(chunks: usize) -> usize {
    let polys = chunks + 1;
    2 * polys + 4          // seeds
        + 2 * N * polys    // bodies
        + 3 * N * polys    // mask residues
        + 3 * N            // r residues
        + STREAM_WORDS     // ChaCha20 stream
        + 2 * N + 4 // output
}

/// Staging words of one household: input and output.
fn host_words_per_household(chunks: usize) -> (usize, usize) {
    let polys = chunks + 1;
    (2 * polys + 4 + 2 * N * polys, 2 * N + 4)
}

/// Blocks for a grid-stride kernel over `items` items.
fn grid(blocks: Blocks, items: usize) -> u32 {
    items
        .div_ceil(blocks.other as usize)
        .clamp(1, blocks.max_grid as usize) as u32
}

struct Constants<B> {
    primes: B,
    twiddles: B,
    inv_twiddles: B,
    crt: B,
}

struct Weights<B> {
    polys: Vec<Vec<i64>>,
    raw: B,
    transformed: B,
}

/// One lane's buffers, sized for `batch` households of `chunks` ciphertexts.
struct Lane<E: Exec> {
    batch: usize,
    chunks: usize,
    input: E::Host,
    output: E::Host,
    seeds: E::Buf,
    bodies: E::Buf,
    masks: E::Buf,
    r: E::Buf,
    streams: E::Buf,
    out: E::Buf,
    /// First job and count of the batch in flight, if any.
    in_flight: Option<(usize, usize)>,
}

/// The device state of a [`crate::CudaBackend`]: constants, the cycle's
/// weights and the lanes.
pub(crate) struct Pipeline<E: Exec> {
    exec: E,
    consts: Constants<E::Buf>,
    weights: Option<Weights<E::Buf>>,
    lanes: Vec<Lane<E>>,
    max_batch: usize,
}

impl<E: Exec> Pipeline<E> {
    /// Uploads the constant tables. `max_batch` caps households per batch.
    pub(crate) fn new(exec: E, max_batch: usize) -> Result<Pipeline<E>, CudaError> {
        let t = Tables::new();
        let upload = |data: &[u64]| -> Result<E::Buf, CudaError> {
            let buf = exec.alloc(data.len())?;
            exec.upload_now(&buf, data)?;
            Ok(buf)
        };
        let consts = Constants {
            primes: upload(&t.primes)?,
            twiddles: upload(&t.twiddles)?,
            inv_twiddles: upload(&t.inv_twiddles)?,
            crt: upload(&t.crt)?,
        };
        Ok(Pipeline {
            exec,
            consts,
            weights: None,
            lanes: Vec::new(),
            max_batch: max_batch.max(1),
        })
    }

    /// Uploads and transforms the cycle's weights unless already there.
    fn ensure_weights(&mut self, weights: &PreparedWeights) -> Result<(), CudaError> {
        let polys = weights.polynomials();
        if self.weights.as_ref().is_some_and(|w| w.polys == polys) {
            return Ok(());
        }
        self.weights = None;
        let chunks = polys.len();
        let flat: Vec<u64> = polys.iter().flatten().map(|&w| w as u64).collect();
        let raw = self.exec.alloc(flat.len())?;
        self.exec.upload_now(&raw, &flat)?;
        let transformed = self.exec.alloc(3 * N * chunks)?;
        let blocks = self.exec.blocks();
        let c = &self.consts;
        self.exec.launch(
            0,
            "pb_small_residues",
            chunks as u32,
            blocks.other,
            0,
            &[
                Arg::U64(raw.addr(0)),
                Arg::U64(c.primes.addr(0)),
                Arg::U64(transformed.addr(0)),
            ],
        )?;
        self.exec.launch(
            0,
            "pb_ntt_forward",
            3 * chunks as u32,
            blocks.ntt,
            NTT_SHARED,
            &[
                Arg::U64(transformed.addr(0)),
                Arg::U64(3 * N as u64),
                Arg::U64(c.primes.addr(0)),
                Arg::U64(c.twiddles.addr(0)),
            ],
        )?;
        self.exec.launch(
            0,
            "pb_scale",
            grid(blocks, 3 * N * chunks),
            blocks.other,
            0,
            &[
                Arg::U64(transformed.addr(0)),
                Arg::U32(chunks as u32),
                Arg::U64(c.primes.addr(0)),
            ],
        )?;
        self.exec.sync(0)?;
        self.weights = Some(Weights {
            polys: polys.to_vec(),
            raw,
            transformed,
        });
        Ok(())
    }

    /// Households per batch for `chunks` ciphertexts each: what fits in
    /// half the free device memory over all lanes, at most `max_batch`.
    fn batch_size(&self, chunks: usize, jobs: usize) -> Result<usize, CudaError> {
        let free = self.exec.free_memory()?;
        let per = device_words_per_household(chunks) * 8 * self.exec.lanes();
        let fit = (free / 2) / per;
        if fit == 0 {
            return Err(CudaError::OutOfMemory { free });
        }
        Ok(fit
            .min(self.max_batch)
            .min(jobs.div_ceil(self.exec.lanes()))
            .max(1))
    }

    fn ensure_lanes(&mut self, batch: usize, chunks: usize) -> Result<(), CudaError> {
        if self
            .lanes
            .first()
            .is_some_and(|l| l.batch >= batch && l.chunks == chunks)
        {
            return Ok(());
        }
        self.lanes.clear();
        let polys = chunks + 1;
        let (host_in, host_out) = host_words_per_household(chunks);
        for _ in 0..self.exec.lanes() {
            self.lanes.push(Lane {
                batch,
                chunks,
                input: self.exec.alloc_host(host_in * batch)?,
                output: self.exec.alloc_host(host_out * batch)?,
                seeds: self.exec.alloc((2 * polys + 4) * batch)?,
                bodies: self.exec.alloc(2 * N * polys * batch)?,
                masks: self.exec.alloc(3 * N * polys * batch)?,
                r: self.exec.alloc(3 * N * batch)?,
                streams: self.exec.alloc(STREAM_WORDS * batch)?,
                out: self.exec.alloc((2 * N + 4) * batch)?,
                in_flight: None,
            });
        }
        Ok(())
    }

    /// Evaluates every job (already checked well-formed, with the weights'
    /// chunk count).
    pub(crate) fn evaluate(
        &mut self,
        weights: &PreparedWeights,
        jobs: &[EvalJob<'_>],
    ) -> Result<Vec<HiddenTotals>, CudaError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        self.ensure_weights(weights)?;
        let chunks = weights.chunk_count();
        let batch = self.batch_size(chunks, jobs.len())?;
        self.ensure_lanes(batch, chunks)?;
        let lanes = self.lanes.len();
        let mut results = Vec::with_capacity(jobs.len());
        let outcome = (|| {
            for (index, start) in (0..jobs.len()).step_by(batch).enumerate() {
                let lane = index % lanes;
                self.collect(lane, &mut results)?;
                let count = batch.min(jobs.len() - start);
                self.submit(lane, &jobs[start..start + count])?;
                self.lanes[lane].in_flight = Some((start, count));
            }
            // Drain in submission order.
            let next = jobs.len().div_ceil(batch);
            for i in 0..lanes {
                self.collect((next + i) % lanes, &mut results)?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            // Leave no batch half-collected for the next call.
            for lane in 0..lanes {
                let _ = self.exec.sync(lane);
                self.lanes[lane].in_flight = None;
            }
            return Err(e);
        }
        debug_assert_eq!(results.len(), jobs.len());
        Ok(results)
    }

    /// Waits for the lane's batch in flight, if any, and appends its results.
    fn collect(&mut self, lane: usize, results: &mut Vec<HiddenTotals>) -> Result<(), CudaError> {
        let Some((start, count)) = self.lanes[lane].in_flight.take() else {
            return Ok(());
        };
        self.exec.sync(lane)?;
        debug_assert_eq!(start, results.len());
        let words = self.lanes[lane].output.words();
        let (masks, bodies) = words.split_at(2 * N * self.lanes[lane].batch);
        let unpacked: Vec<HiddenTotals> = (0..count)
            .into_par_iter()
            .map(|h| {
                let m = &masks[2 * N * h..2 * N * (h + 1)];
                let b = &bodies[4 * h..4 * h + 4];
                HiddenTotals {
                    mask: m
                        .chunks_exact(2)
                        .map(|w| w[0] as u128 | (w[1] as u128) << 64)
                        .collect(),
                    body: [
                        b[0] as u128 | (b[1] as u128) << 64,
                        b[2] as u128 | (b[3] as u128) << 64,
                    ],
                }
            })
            .collect();
        results.extend(unpacked);
        Ok(())
    }

    /// Packs a batch into the lane's staging memory and queues its copies
    /// and kernels.
    fn submit(&mut self, lane: usize, jobs: &[EvalJob<'_>]) -> Result<(), CudaError> {
        let count = jobs.len();
        let blocks = self.exec.blocks();
        let (l, consts, exec) = (&mut self.lanes[lane], &self.consts, &self.exec);
        let weights = self
            .weights
            .as_ref()
            .ok_or_else(|| CudaError::Launch("weights not uploaded".into()))?;
        let chunks = l.chunks;
        let polys = chunks + 1;
        let batch = l.batch;
        // Staging layout: mask seeds (2 words per polynomial), rerandomiser
        // seeds (4 words per household), bodies (2N words per polynomial).
        let seed_words = 2 * polys * batch;
        let rr_words = 4 * batch;
        let input = l.input.words_mut();
        let (seeds, rest) = input.split_at_mut(seed_words);
        let (rr, bodies) = rest.split_at_mut(rr_words);
        let poly_seed = |job: &EvalJob<'_>, c: usize| -> u128 {
            if c < chunks {
                job.ciphertexts[c].seed
            } else {
                job.public_key.0.seed
            }
        };
        seeds
            .par_chunks_mut(2 * polys)
            .zip(rr.par_chunks_mut(4))
            .zip(bodies.par_chunks_mut(2 * N * polys))
            .zip(jobs.par_iter())
            .for_each(|(((s, r), b), job)| {
                for c in 0..polys {
                    let seed = poly_seed(job, c);
                    s[2 * c] = seed as u64;
                    s[2 * c + 1] = (seed >> 64) as u64;
                    let body: &SeededGlwe = if c < chunks {
                        &job.ciphertexts[c]
                    } else {
                        &job.public_key.0
                    };
                    for (w, &x) in b[2 * N * c..2 * N * (c + 1)]
                        .chunks_exact_mut(2)
                        .zip(&body.body)
                    {
                        w[0] = x as u64;
                        w[1] = (x >> 64) as u64;
                    }
                }
                for (i, w) in r.iter_mut().enumerate() {
                    let mut bytes = [0u8; 8];
                    bytes.copy_from_slice(&job.rerandomizer[8 * i..8 * i + 8]);
                    *w = u64::from_le_bytes(bytes);
                }
            });
        // Copies: seeds, rerandomiser seeds, bodies.
        exec.upload(lane, &l.seeds, 0, &l.input, 0, 2 * polys * count)?;
        exec.upload(lane, &l.seeds, seed_words, &l.input, seed_words, 4 * count)?;
        exec.upload(
            lane,
            &l.bodies,
            0,
            &l.input,
            seed_words + rr_words,
            2 * N * polys * count,
        )?;
        let p = consts.primes.addr(0);
        let h = count as u32;
        exec.launch(
            lane,
            "pb_chacha_streams",
            (count * 145).div_ceil(blocks.other as usize) as u32,
            blocks.other,
            0,
            &[
                Arg::U64(l.seeds.addr(seed_words)),
                Arg::U32(h),
                Arg::U64(l.streams.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_mask_residues",
            (polys * count) as u32,
            blocks.other,
            0,
            &[
                Arg::U64(l.seeds.addr(0)),
                Arg::U64(p),
                Arg::U64(l.masks.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_rerandomizer_r",
            h,
            blocks.other,
            0,
            &[Arg::U64(l.streams.addr(0)), Arg::U64(l.r.addr(0))],
        )?;
        exec.launch(
            lane,
            "pb_ntt_forward",
            (3 * polys * count) as u32,
            blocks.ntt,
            NTT_SHARED,
            &[
                Arg::U64(l.masks.addr(0)),
                Arg::U64(3 * N as u64),
                Arg::U64(p),
                Arg::U64(consts.twiddles.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_ntt_forward",
            3 * h,
            blocks.ntt,
            NTT_SHARED,
            &[
                Arg::U64(l.r.addr(0)),
                Arg::U64(3 * N as u64),
                Arg::U64(p),
                Arg::U64(consts.twiddles.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_pointwise",
            grid(blocks, 3 * N * count),
            blocks.other,
            0,
            &[
                Arg::U64(l.masks.addr(0)),
                Arg::U64(l.r.addr(0)),
                Arg::U64(weights.transformed.addr(0)),
                Arg::U32(h),
                Arg::U32(chunks as u32),
                Arg::U64(p),
            ],
        )?;
        let household_stride = (3 * N * polys) as u64;
        exec.launch(
            lane,
            "pb_ntt_inverse",
            3 * h,
            blocks.ntt,
            NTT_SHARED,
            &[
                Arg::U64(l.masks.addr(0)),
                Arg::U64(household_stride),
                Arg::U64(p),
                Arg::U64(consts.inv_twiddles.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_crt_mask",
            grid(blocks, N * count),
            blocks.other,
            0,
            &[
                Arg::U64(l.masks.addr(0)),
                Arg::U64(household_stride),
                Arg::U64(l.streams.addr(0)),
                Arg::U32(h),
                Arg::U64(consts.crt.addr(0)),
                Arg::U64(l.out.addr(0)),
            ],
        )?;
        exec.launch(
            lane,
            "pb_bodies",
            h,
            blocks.other,
            4 * 8 * blocks.other,
            &[
                Arg::U64(l.bodies.addr(0)),
                Arg::U64(weights.raw.addr(0)),
                Arg::U64(l.streams.addr(0)),
                Arg::U32(chunks as u32),
                Arg::U32(REWARD_COEFF as u32),
                Arg::U64(l.out.addr(2 * N * batch)),
            ],
        )?;
        // Masks come back to the start of the staging buffer, bodies to
        // their full-batch offset (where `collect` reads them).
        exec.download(lane, &mut l.output, 0, &l.out, 0, 2 * N * count)?;
        exec.download(
            lane,
            &mut l.output,
            2 * N * batch,
            &l.out,
            2 * N * batch,
            4 * count,
        )?;
        Ok(())
    }

    /// Sums `vectors` column-wise modulo 2^64 on the device, in groups of
    /// members that fit in memory.
    pub(crate) fn sum_masked(
        &mut self,
        len: usize,
        vectors: &[&[u64]],
    ) -> Result<Vec<u64>, CudaError> {
        let mut total = vec![0u64; len];
        if len == 0 || vectors.is_empty() {
            return Ok(total);
        }
        let free = self.exec.free_memory()?;
        let group = ((free / 4) / (8 * len)).clamp(1, vectors.len());
        let mut host = self.exec.alloc_host(group * len)?;
        let mut sums = self.exec.alloc_host(len)?;
        let dev = self.exec.alloc(group * len)?;
        let out = self.exec.alloc(len)?;
        let blocks = self.exec.blocks();
        for members in vectors.chunks(group) {
            let words = host.words_mut();
            words[..members.len() * len]
                .par_chunks_mut(len)
                .zip(members.par_iter())
                .for_each(|(dst, src)| {
                    let n = src.len().min(len);
                    dst[..n].copy_from_slice(&src[..n]);
                    dst[n..].fill(0);
                });
            self.exec
                .upload(0, &dev, 0, &host, 0, members.len() * len)?;
            self.exec.launch(
                0,
                "pb_sum_columns",
                grid(blocks, len),
                blocks.other,
                0,
                &[
                    Arg::U64(dev.addr(0)),
                    Arg::U32(members.len() as u32),
                    Arg::U32(len as u32),
                    Arg::U64(out.addr(0)),
                ],
            )?;
            self.exec.download(0, &mut sums, 0, &out, 0, len)?;
            self.exec.sync(0)?;
            for (t, s) in total.iter_mut().zip(sums.words()) {
                *t = t.wrapping_add(*s);
            }
        }
        Ok(total)
    }
}

/// Checks jobs as the CPU backend does ([`check_inputs`]), so both refuse
/// the same input.
pub(crate) fn check_jobs(weights: &PreparedWeights, jobs: &[EvalJob<'_>]) -> Result<(), EvalError> {
    jobs.iter()
        .try_for_each(|job| check_inputs(weights, job.ciphertexts, job.public_key))
}
