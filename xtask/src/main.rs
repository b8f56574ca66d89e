//! `cargo dist` (an alias in .cargo/config.toml): the installed build of `credns`, at
//! `target/dist/credns`.
//!
//! It is the `dist` profile (release, fat LTO) linked statically against musl. Why musl and not
//! a static glibc: glibc's start-up asks the CPU for its cache geometry, dozens of `cpuid`
//! instructions, and in a virtual machine every `cpuid` traps to the hypervisor. On the
//! project's VM that is ~0.7 ms of every start of a static glibc program, against ~0.06 ms for
//! a static musl one (BENCHMARKS.md): `credns key upcall` starts once per upcall and `credns
//! run` once per container. Cargo puts a target's build under `target/<triple>/`; this task
//! copies the binary to the one path the README, the packaging and the benchmarks name.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The target the installed build is linked for.
const TARGET: &str = "x86_64-unknown-linux-musl";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref().and_then(|a| a.to_str()) {
        Some("dist") => match dist(args.collect()) {
            Ok(bin) => {
                eprintln!("cargo dist: {}", bin.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cargo dist: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo dist [CARGO-RUSTC-OPTIONS]   (builds target/dist/credns)");
            ExitCode::from(2)
        }
    }
}

/// The workspace's root: this crate's parent directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Whether the toolchain has the standard library for `TARGET`.
fn target_installed(cargo: &OsString) -> Result<bool, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| {
        // cargo and rustc of one toolchain sit side by side.
        Path::new(cargo)
            .parent()
            .filter(|d| d.join("rustc").is_file())
            .map_or_else(|| "rustc".into(), |d| d.join("rustc").into_os_string())
    });
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .map_err(|e| format!("running {}: {e}", Path::new(&rustc).display()))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let has_std = std::fs::read_dir(&dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    });
    Ok(out.status.success() && has_std)
}

/// Build, then copy the binary to `target/dist/credns` (written beside it, then renamed: a
/// running daemon's binary is never half-replaced).
fn dist(extra: Vec<OsString>) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if !target_installed(&cargo)? {
        return Err(format!(
            "the Rust standard library for {TARGET} is not installed: \
             run `rustup target add {TARGET}`"
        ));
    }
    eprintln!("cargo dist: building credns for {TARGET} (profile dist: a few minutes)");
    let st = Command::new(&cargo)
        .current_dir(root())
        .args([
            "rustc",
            "-q",
            "--profile",
            "dist",
            "-p",
            "credns",
            "--bin",
            "credns",
        ])
        .args(["--target", TARGET])
        .args(&extra)
        .args(["--", "-C", "target-feature=+crt-static"])
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !st.success() {
        return Err(format!("building credns for {TARGET} failed ({st})"));
    }
    let target = target_dir();
    let built = target.join(TARGET).join("dist/credns");
    let dir = target.join("dist");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(".credns.tmp");
    let bin = dir.join("credns");
    std::fs::copy(&built, &tmp)
        .map_err(|e| format!("copying {} to {}: {e}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, &bin).map_err(|e| format!("installing {}: {e}", bin.display()))?;
    Ok(bin)
}
