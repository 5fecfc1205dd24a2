//! Builds the CPU emulator of the CUDA kernels (kernels/emu), so that the
//! test suite runs the very kernel sources on machines without a GPU.

fn main() {
    let kernels = std::path::Path::new("../../kernels");
    for file in ["billing.cu", "emu/emu.hpp", "emu/emu.cpp"] {
        println!("cargo:rerun-if-changed={}", kernels.join(file).display());
    }
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .opt_level(2)
        .warnings(true)
        .file(kernels.join("emu/emu.cpp"))
        .compile("pb_kernel_emu");
    println!("cargo:rustc-link-lib=pthread");
}
