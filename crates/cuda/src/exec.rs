//! What the pipeline needs from a device: memory, copies, kernel launches
//! and independent in-order queues ("lanes", CUDA streams). Implemented by
//! the CUDA driver ([`crate::driver`]) and by the CPU emulator of the kernels
//! ([`crate::emulator`]).

use crate::CudaError;

/// A kernel argument: device addresses and 64-bit values travel as `U64`,
/// 32-bit integers as `U32` (the kernels' parameter types).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A device address or a 64-bit integer.
    U64(u64),
    /// A 32-bit integer.
    U32(u32),
}

/// Device memory of `u64` words, freed on drop.
pub(crate) trait DeviceBuffer {
    /// The device address of word `offset`.
    fn addr(&self, offset: usize) -> u64;
}

/// Host memory of `u64` words that copies can run from asynchronously
/// (page-locked on a GPU).
pub(crate) trait HostBuffer: Send {
    /// The words.
    fn words(&self) -> &[u64];
    /// The words, mutably.
    fn words_mut(&mut self) -> &mut [u64];
}

/// Block sizes of the kernel families.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Blocks {
    /// Threads per block of the NTT kernels.
    pub ntt: u32,
    /// Threads per block of the other kernels.
    pub other: u32,
    /// Largest grid of the grid-stride kernels.
    pub max_grid: u32,
}

/// A device the pipeline can drive.
pub(crate) trait Exec: Send {
    /// Device buffer type.
    type Buf: DeviceBuffer + Send;
    /// Staging buffer type.
    type Host: HostBuffer;
    /// Number of lanes.
    fn lanes(&self) -> usize;
    /// Block sizes to launch with.
    fn blocks(&self) -> Blocks;
    /// Bytes of device memory free now.
    fn free_memory(&self) -> Result<usize, CudaError>;
    /// Allocates `words` device words (content unspecified).
    fn alloc(&self, words: usize) -> Result<Self::Buf, CudaError>;
    /// Allocates `words` staging words (content unspecified).
    fn alloc_host(&self, words: usize) -> Result<Self::Host, CudaError>;
    /// Queues a copy of `src[src_off..src_off + words]` to `dst` at `dst_off`.
    fn upload(
        &self,
        lane: usize,
        dst: &Self::Buf,
        dst_off: usize,
        src: &Self::Host,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError>;
    /// Copies `src` to `dst` at offset 0 and waits (set-up data).
    fn upload_now(&self, dst: &Self::Buf, src: &[u64]) -> Result<(), CudaError>;
    /// Queues a copy of `src[src_off..src_off + words]` to `dst` at `dst_off`.
    fn download(
        &self,
        lane: usize,
        dst: &mut Self::Host,
        dst_off: usize,
        src: &Self::Buf,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError>;
    /// Queues a kernel launch.
    fn launch(
        &self,
        lane: usize,
        kernel: &'static str,
        grid: u32,
        block: u32,
        shared_bytes: u32,
        args: &[Arg],
    ) -> Result<(), CudaError>;
    /// Waits until everything queued on `lane` has run.
    fn sync(&self, lane: usize) -> Result<(), CudaError>;
}
