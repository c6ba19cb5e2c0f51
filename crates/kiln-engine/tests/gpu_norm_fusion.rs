//! Placeholder: the GPU tests of this fusion are being written.

fn main() {
    println!("no GPU tests here yet");
}
