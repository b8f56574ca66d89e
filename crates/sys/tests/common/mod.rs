//! What the sys integration tests share.

/// Whether this process is root. If not, the test is skipped, saying `why` it needs root, or
/// fails under `CREDNS_REQUIRE_ALL=1` (CI), where nothing may skip.
pub fn needs_root(test: &str, why: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let reason = format!("needs root ({why})");
    if std::env::var("CREDNS_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and CREDNS_REQUIRE_ALL=1 forbids skipping");
    }
    println!("{test}: skipped: {reason}");
    false
}
