//! GPU tests (gpu): placeholder until the owning worker fills it; exits 0.

fn main() {
    println!("kiln-engine gpu: no tests yet");
}
