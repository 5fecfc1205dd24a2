// A CPU emulation of the few CUDA features kernels/billing.cu uses, so that
// the kernels themselves (not a re-implementation) run and are checked bit
// for bit against the CPU backend on machines without a GPU.
//
// Each block runs alone; each of its threads is an OS thread, and
// __syncthreads() is a std::barrier over them. __shared__ variables become
// function statics (one block at a time shares them), dynamic shared memory
// one buffer per launch. Slow, and meant only for tests with small blocks.
#pragma once

#include <barrier>
#include <cstddef>
#include <thread>
#include <vector>

#define PB_EMULATOR 1

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

struct pb_dim3 {
    u32 x, y, z;
};

extern thread_local pb_dim3 threadIdx;
extern pb_dim3 blockIdx;
extern pb_dim3 blockDim;
extern pb_dim3 gridDim;
extern std::barrier<>* pb_emu_barrier;
extern u64* pb_emu_dynamic_shared;

#define PB_KERNEL static
#define PB_DEV static inline
#define PB_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(pb_emu_dynamic_shared)
#define PB_MULHI(a, b) ((u64)(((unsigned __int128)(a) * (unsigned __int128)(b)) >> 64))
#define __shared__ static
#define __constant__ static const
#define __syncthreads() pb_emu_barrier->arrive_and_wait()

// Runs `kernel` over `grid` blocks of `block` threads with `smem` bytes of
// dynamic shared memory.
template <class F>
void pb_emu_run(u32 grid, u32 block, size_t smem, F kernel) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    std::vector<u64> shared(smem / sizeof(u64) + 1);
    pb_emu_dynamic_shared = shared.data();
    for (u32 b = 0; b < grid; ++b) {
        blockIdx = {b, 0, 0};
        std::barrier<> bar((std::ptrdiff_t)block);
        pb_emu_barrier = &bar;
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (u32 t = 0; t < block; ++t) {
            threads.emplace_back([t, &kernel] {
                threadIdx = {t, 0, 0};
                kernel();
            });
        }
        for (auto& th : threads) th.join();
    }
}
