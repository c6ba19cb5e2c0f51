fn main() {
    println!("kiln: being written");
}
