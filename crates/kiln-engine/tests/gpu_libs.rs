//! GPU tests (gpu_libs): placeholder until the owning worker fills it; exits 0.

fn main() {
    println!("kiln-engine gpu_libs: no tests yet");
}
