//! The program a conformance helper `execve`s to get an `mm` of the user namespace it is in
//! (a process whose `mm->user_ns` is not the initial namespace): it goes on serving the same
//! control socket (`credns_sys::reexec_helper_main`).

fn main() {
    credns_sys::reexec_helper_main()
}
