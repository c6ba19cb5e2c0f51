//! GPU tests (gpu_kernels): placeholder until the owning worker fills it; exits 0.

fn main() {
    println!("kiln-engine gpu_kernels: no tests yet");
}
