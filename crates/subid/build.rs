//! The shared object names itself as libsubid dlopens it, so ldconfig indexes it by that name.
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsubid_credns.so");
}
