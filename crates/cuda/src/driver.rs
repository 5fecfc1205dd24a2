//! The CUDA driver behind [`Exec`]: libcuda and libnvrtc are loaded at run
//! time (cudarc's dynamic loading), so this builds and runs on machines
//! without a CUDA toolkit and reports "no device" there.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUfunction_attribute_enum;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
    result,
};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx, compile_ptx_with_opts};

use crate::exec::{Arg, Blocks, DeviceBuffer, Exec, HostBuffer};
use crate::{CudaError, KERNEL_SOURCE, KERNELS};

/// What the backend found and did at start.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// Device name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Compute capability.
    pub capability: (i32, i32),
    /// Total device memory in bytes.
    pub memory: usize,
    /// Time NVRTC took to compile the kernels, in milliseconds.
    pub compile_millis: u128,
}

fn driver_error(what: &str, e: result::DriverError) -> CudaError {
    CudaError::Driver(format!("{what}: {e:?}"))
}

fn compile_error(e: CompileError) -> CudaError {
    match e {
        CompileError::CompileError { log, .. } => {
            CudaError::Compile(log.to_string_lossy().into_owned())
        }
        other => CudaError::Compile(format!("{other:?}")),
    }
}

/// Checks that libcuda and libnvrtc can be loaded, without touching them
/// further (cudarc panics on the first call into a missing library).
pub(crate) fn libraries_present() -> Result<(), CudaError> {
    // SAFETY: only tries to dlopen the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    nvrtc_present()
}

/// Checks that libnvrtc can be loaded.
pub(crate) fn nvrtc_present() -> Result<(), CudaError> {
    let found = cudarc::get_lib_name_candidates("nvrtc")
        .into_iter()
        .any(|name| {
            // SAFETY: loading NVRTC runs no initialisers with preconditions.
            unsafe { libloading::Library::new(name) }.is_ok()
        });
    if found {
        Ok(())
    } else {
        Err(CudaError::NoNvrtc)
    }
}

/// Compiles `kernels/billing.cu` to PTX with NVRTC, for `arch` (e.g. `(9, 0)`)
/// or NVRTC's default architecture.
pub fn compile_kernels(arch: Option<(i32, i32)>) -> Result<Ptx, CudaError> {
    nvrtc_present()?;
    let mut options = vec!["--std=c++17".to_string()];
    if let Some((major, minor)) = arch {
        options.push(format!("--gpu-architecture=compute_{major}{minor}"));
    }
    compile_ptx_with_opts(
        KERNEL_SOURCE,
        CompileOptions {
            options,
            name: Some("billing.cu".into()),
            ..Default::default()
        },
    )
    .map_err(compile_error)
}

/// Device memory: the slice (kept for its `Drop`, which frees it) and its
/// device address.
pub(crate) struct DevBuf {
    _slice: CudaSlice<u64>,
    addr: u64,
}

impl DeviceBuffer for DevBuf {
    fn addr(&self, offset: usize) -> u64 {
        self.addr + 8 * offset as u64
    }
}

/// Page-locked host memory, so that copies run asynchronously.
pub(crate) struct Pinned {
    ptr: *mut u64,
    len: usize,
}

// SAFETY: the allocation is owned exclusively by this value.
unsafe impl Send for Pinned {}

impl HostBuffer for Pinned {
    fn words(&self) -> &[u64] {
        // SAFETY: `ptr` points to `len` initialised-on-allocation words owned
        // by self (see `alloc_host`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn words_mut(&mut self) -> &mut [u64] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: allocated by `malloc_host` and freed once; every copy that
        // used it was synchronised before the pipeline drops its lanes.
        let _ = unsafe { result::free_host(self.ptr.cast()) };
    }
}

/// A CUDA device with its compiled kernels and one stream per lane.
pub(crate) struct Driver {
    ctx: Arc<CudaContext>,
    streams: Vec<Arc<CudaStream>>,
    functions: Vec<(&'static str, CudaFunction)>,
    blocks: Blocks,
    pub(crate) info: DeviceInfo,
}

impl Driver {
    /// Opens device 0, compiles and loads the kernels.
    pub(crate) fn open() -> Result<Driver, CudaError> {
        libraries_present()?;
        let count = CudaContext::device_count().map_err(|e| driver_error("device count", e))?;
        if count < 1 {
            return Err(CudaError::NoDevice);
        }
        let ctx = CudaContext::new(0).map_err(|e| driver_error("context", e))?;
        // The pipeline orders its own work: each lane's buffers are used on
        // that lane's stream only, and shared buffers are written before
        // any lane starts.
        // SAFETY: see above; no buffer crosses streams unsynchronised.
        unsafe { ctx.disable_event_tracking() };
        let name = ctx.name().map_err(|e| driver_error("device name", e))?;
        let capability = ctx
            .compute_capability()
            .map_err(|e| driver_error("compute capability", e))?;
        let memory = ctx.total_mem().map_err(|e| driver_error("memory", e))?;
        let started = Instant::now();
        let ptx = compile_kernels(Some(capability))?;
        let compile_millis = started.elapsed().as_millis();
        let module = ctx
            .load_module(ptx)
            .map_err(|e| driver_error("load module", e))?;
        let mut functions = Vec::new();
        for &kernel in KERNELS {
            let f = module
                .load_function(kernel)
                .map_err(|e| driver_error(kernel, e))?;
            if kernel.starts_with("pb_ntt") {
                f.set_attribute(
                    CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    65536,
                )
                .map_err(|e| driver_error("shared memory size", e))?;
            }
            functions.push((kernel, f));
        }
        let streams = (0..2)
            .map(|_| ctx.new_stream())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| driver_error("stream", e))?;
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute_enum::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_error("multiprocessors", e))?;
        Ok(Driver {
            ctx,
            streams,
            functions,
            blocks: Blocks {
                ntt: 512,
                other: 256,
                max_grid: (sms.max(1) as u32) * 16,
            },
            info: DeviceInfo {
                name,
                capability,
                memory,
                compile_millis,
            },
        })
    }

    fn bind(&self) -> Result<(), CudaError> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| driver_error("bind context", e))
    }
}

impl Exec for Driver {
    type Buf = DevBuf;
    type Host = Pinned;

    fn lanes(&self) -> usize {
        self.streams.len()
    }

    fn blocks(&self) -> Blocks {
        self.blocks
    }

    fn free_memory(&self) -> Result<usize, CudaError> {
        self.bind()?;
        Ok(self
            .ctx
            .mem_get_info()
            .map_err(|e| driver_error("memory info", e))?
            .0)
    }

    fn alloc(&self, words: usize) -> Result<DevBuf, CudaError> {
        self.bind()?;
        let stream = &self.streams[0];
        // SAFETY: every word is written by an upload or a kernel before it
        // is read.
        let slice = unsafe { stream.alloc::<u64>(words.max(1)) }
            .map_err(|e| driver_error("allocation", e))?;
        stream
            .synchronize()
            .map_err(|e| driver_error("allocation", e))?;
        let addr = slice.device_ptr(stream).0;
        Ok(DevBuf {
            _slice: slice,
            addr,
        })
    }

    fn alloc_host(&self, words: usize) -> Result<Pinned, CudaError> {
        self.bind()?;
        let bytes = words.max(1) * 8;
        // SAFETY: a plain page-locked allocation; zeroed below before use.
        let ptr = unsafe { result::malloc_host(bytes, 0) }
            .map_err(|e| driver_error("pinned allocation", e))?
            .cast::<u64>();
        // SAFETY: `ptr` holds `bytes` writable bytes.
        unsafe { std::ptr::write_bytes(ptr, 0, words.max(1)) };
        Ok(Pinned { ptr, len: words })
    }

    fn upload(
        &self,
        lane: usize,
        dst: &DevBuf,
        dst_off: usize,
        src: &Pinned,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError> {
        let src = &src.words()[src_off..src_off + words];
        // SAFETY: `dst` holds `dst_off + words` words (lanes are sized for
        // their batch); `src` is pinned and outlives the copy, which the
        // pipeline synchronises before touching the staging memory again.
        unsafe { result::memcpy_htod_async(dst.addr(dst_off), src, self.streams[lane].cu_stream()) }
            .map_err(|e| driver_error("upload", e))
    }

    fn upload_now(&self, dst: &DevBuf, src: &[u64]) -> Result<(), CudaError> {
        self.bind()?;
        // SAFETY: `dst` holds at least `src.len()` words; synchronous copy.
        unsafe { result::memcpy_htod_sync(dst.addr(0), src) }.map_err(|e| driver_error("upload", e))
    }

    fn download(
        &self,
        lane: usize,
        dst: &mut Pinned,
        dst_off: usize,
        src: &DevBuf,
        src_off: usize,
        words: usize,
    ) -> Result<(), CudaError> {
        let dst = &mut dst.words_mut()[dst_off..dst_off + words];
        // SAFETY: as for `upload`; the pipeline reads `dst` only after
        // synchronising the lane.
        unsafe { result::memcpy_dtoh_async(dst, src.addr(src_off), self.streams[lane].cu_stream()) }
            .map_err(|e| driver_error("download", e))
    }

    fn launch(
        &self,
        lane: usize,
        kernel: &'static str,
        grid: u32,
        block: u32,
        shared_bytes: u32,
        args: &[Arg],
    ) -> Result<(), CudaError> {
        let function = self
            .functions
            .iter()
            .find(|(name, _)| *name == kernel)
            .map(|(_, f)| f)
            .ok_or_else(|| CudaError::Launch(format!("no kernel {kernel}")))?;
        let mut builder = self.streams[lane].launch_builder(function);
        for arg in args {
            match arg {
                Arg::U64(x) => builder.arg(x),
                Arg::U32(x) => builder.arg(x),
            };
        }
        let config = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: shared_bytes,
        };
        // SAFETY: the arguments match the kernel's parameters (pointers as
        // 64-bit words) and point into live buffers sized for the launch.
        unsafe { builder.launch(config) }
            .map(|_| ())
            .map_err(|e| CudaError::Launch(format!("{kernel}: {e:?}")))
    }

    fn sync(&self, lane: usize) -> Result<(), CudaError> {
        self.streams[lane]
            .synchronize()
            .map_err(|e| driver_error("synchronize", e))
    }
}
