// Entry point of the kernel emulator (see emu.hpp): launches a kernel of
// billing.cu by name with its arguments passed as 64-bit words (pointers and
// integers alike), as the Rust side (crates/cuda, emulator.rs) does.
#include "emu.hpp"

#include <cstring>
#include <mutex>

thread_local pb_dim3 threadIdx;
pb_dim3 blockIdx;
pb_dim3 blockDim;
pb_dim3 gridDim;
std::barrier<>* pb_emu_barrier = nullptr;
u64* pb_emu_dynamic_shared = nullptr;

#include "../billing.cu"

#define P(i) reinterpret_cast<u64*>(a[i])
#define CP(i) reinterpret_cast<const u64*>(a[i])
#define U32(i) static_cast<u32>(a[i])

// Returns 0 on success, 1 for an unknown kernel, 2 for a wrong argument count.
extern "C" int pb_emu_launch(const char* name, u32 grid, u32 block, u64 smem, const u64* a,
                             u32 nargs) {
    static std::mutex one_launch_at_a_time;
    std::lock_guard<std::mutex> guard(one_launch_at_a_time);
    auto run = [&](u32 want, auto f) {
        if (nargs != want) return 2;
        pb_emu_run(grid, block, (size_t)smem, f);
        return 0;
    };
    if (!std::strcmp(name, "pb_mask_residues"))
        return run(3, [&] { pb_mask_residues(CP(0), CP(1), P(2)); });
    if (!std::strcmp(name, "pb_chacha_streams"))
        return run(3, [&] { pb_chacha_streams(CP(0), U32(1), P(2)); });
    if (!std::strcmp(name, "pb_rerandomizer_r"))
        return run(2, [&] { pb_rerandomizer_r(CP(0), P(1)); });
    if (!std::strcmp(name, "pb_small_residues"))
        return run(3, [&] { pb_small_residues(CP(0), CP(1), P(2)); });
    if (!std::strcmp(name, "pb_ntt_forward"))
        return run(4, [&] { pb_ntt_forward(P(0), a[1], CP(2), CP(3)); });
    if (!std::strcmp(name, "pb_ntt_inverse"))
        return run(4, [&] { pb_ntt_inverse(P(0), a[1], CP(2), CP(3)); });
    if (!std::strcmp(name, "pb_scale"))
        return run(3, [&] { pb_scale(P(0), U32(1), CP(2)); });
    if (!std::strcmp(name, "pb_pointwise"))
        return run(6, [&] { pb_pointwise(P(0), CP(1), CP(2), U32(3), U32(4), CP(5)); });
    if (!std::strcmp(name, "pb_crt_mask"))
        return run(6, [&] { pb_crt_mask(CP(0), a[1], CP(2), U32(3), CP(4), P(5)); });
    if (!std::strcmp(name, "pb_bodies"))
        return run(6, [&] { pb_bodies(CP(0), CP(1), CP(2), U32(3), U32(4), P(5)); });
    if (!std::strcmp(name, "pb_sum_columns"))
        return run(4, [&] { pb_sum_columns(CP(0), U32(1), U32(2), P(3)); });
    return 1;
}
