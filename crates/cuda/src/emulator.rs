//! The CUDA kernels run on the CPU by their C++ emulation
//! (`kernels/emu`, built by this crate's build script): the kernel sources
//! that NVRTC compiles for a GPU, with one OS thread per CUDA thread and a
//! barrier for `__syncthreads()`. It makes the device pipeline, batching and
//! every kernel checkable bit for bit against the CPU backend on machines
//! without a GPU. It is slow (small blocks, one block at a time): use it in
//! tests only.

use std::ffi::CString;

use crate::CudaError;
use crate::exec::{Arg, Blocks, DeviceBuffer, Exec, HostBuffer};

unsafe extern "C" {
    fn pb_emu_launch(
        name: *const std::ffi::c_char,
        grid: u32,
        block: u32,
        smem: u64,
        args: *const u64,
        nargs: u32,
    ) -> i32;
}

/// Emulated device memory: host memory whose address the kernels use.
pub(crate) struct EmuBuf(Box<[u64]>);

impl DeviceBuffer for EmuBuf {
    fn addr(&self, offset: usize) -> u64 {
        self.0[offset..].as_ptr() as u64
    }
}

/// Emulated staging memory.
pub(crate) struct EmuHost(Vec<u64>);

impl HostBuffer for EmuHost {
    fn words(&self) -> &[u64] {
        &self.0
    }
    fn words_mut(&mut self) -> &mut [u64] {
        &mut self.0
    }
}

/// The emulated device: synchronous, two lanes (to exercise the pipeline's
/// lane rotation), small blocks.
pub(crate) struct Emulator {
    blocks: Blocks,
}

impl Emulator {
    pub(crate) fn new(threads_per_block: u32) -> Emulator {
        Emulator {
            blocks: Blocks {
                ntt: threads_per_block,
                other: threads_per_block,
                max_grid: 8,
            },
        }
    }
}

impl Exec for Emulator {
    type Buf = EmuBuf;
    type Host = EmuHost;

    fn lanes(&self) -> usize {
        2
    }

    fn blocks(&self) -> Blocks {
        self.blocks
    }

    fn free_memory(&self) -> Result<usize, CudaError> {
        Ok(1 << 30)
    }

    fn alloc(&self, words: usize) -> Result<EmuBuf, CudaError> {
        // One spare word so that `addr(len)` (an empty tail) stays in bounds.
        Ok(EmuBuf(vec![0u64; words + 1].into_boxed_slice()))
    }

    fn alloc_host(&self, words: usize) -> Result<EmuHost, CudaError> {
        Ok(EmuHost(vec![0u64; words]))
    }

    fn upload(
        &self,
        _lane: usize,
        dst: &EmuBuf,
        dst_off: usize,
        src: &EmuHost,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError> {
        let src = &src.0[src_off..src_off + words];
        // SAFETY: `dst` owns at least `dst_off + words` words (the pipeline
        // sizes every buffer for its largest batch) and `src` is a distinct
        // host allocation; emulated kernels touch `dst` only inside launches,
        // which are synchronous.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst.addr(dst_off) as *mut u64, words);
        }
        Ok(())
    }

    fn upload_now(&self, dst: &EmuBuf, src: &[u64]) -> Result<(), CudaError> {
        // SAFETY: as in `upload`; `dst` holds at least `src.len()` words.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst.addr(0) as *mut u64, src.len());
        }
        Ok(())
    }

    fn download(
        &self,
        _lane: usize,
        dst: &mut EmuHost,
        dst_off: usize,
        src: &EmuBuf,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError> {
        dst.0[dst_off..dst_off + words].copy_from_slice(&src.0[src_off..src_off + words]);
        Ok(())
    }

    fn launch(
        &self,
        _lane: usize,
        kernel: &'static str,
        grid: u32,
        block: u32,
        shared_bytes: u32,
        args: &[Arg],
    ) -> Result<(), CudaError> {
        let name = CString::new(kernel).map_err(|_| CudaError::Launch(kernel.into()))?;
        let words: Vec<u64> = args
            .iter()
            .map(|a| match *a {
                Arg::U64(x) => x,
                Arg::U32(x) => x as u64,
            })
            .collect();
        // SAFETY: the arguments are the kernel's, in order (the pipeline
        // builds them from live buffers of the right sizes); the emulator
        // checks the kernel name and the argument count.
        let rc = unsafe {
            pb_emu_launch(
                name.as_ptr(),
                grid,
                block,
                shared_bytes as u64,
                words.as_ptr(),
                words.len() as u32,
            )
        };
        match rc {
            0 => Ok(()),
            _ => Err(CudaError::Launch(format!(
                "emulator refused {kernel} (code {rc})"
            ))),
        }
    }

    fn sync(&self, _lane: usize) -> Result<(), CudaError> {
        Ok(())
    }
}
