//! packaging/: the systemd units pass `systemd-analyze verify` and say what the code expects
//! (the socket's path and name), the tmpfiles.d entry makes the directories with their modes,
//! and the Debian package (packaging/build-deb.sh over the installed build, target/dist/credns)
//! holds the binary, units, man pages and completions, enables the socket, and unpacked into a
//! scratch root with `dpkg --root` gives a `credns --version` that runs there.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use credns_service::activation::REGISTRY_FD_NAME;
use credns_service::DEFAULT_SOCKET;

const BIN: &str = env!("CARGO_BIN_EXE_credns");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn packaging(file: &str) -> String {
    std::fs::read_to_string(repo().join("packaging").join(file)).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}\n{}", o.status, text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `systemd-analyze verify` on the units in `dir`, with `man:` references looked up in `man`:
/// its whole output (empty when nothing is wrong) and whether it succeeded.
fn verify(dir: &Path, man: &Path) -> (bool, String) {
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.join("credns.socket"))
        .arg(dir.join("credns.service"))
        .arg(dir.join("credns-userdb.socket"))
        .arg(dir.join("credns-nsresource.socket"))
        .env("MANPATH", man)
        .output()
        .unwrap();
    (o.status.success(), text(&o))
}

/// The value of `key=` in a unit file (the first one).
fn setting<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_units_pass_systemd_analyze_verify_and_match_the_daemon() {
    let test = "the_units_pass_systemd_analyze_verify_and_match_the_daemon";
    if !common::needs_tool(test, "systemd-analyze", "systemd") {
        return;
    }
    let socket = packaging("credns.socket");
    let service = packaging("credns.service");
    assert_eq!(setting(&socket, "ListenStream"), Some(DEFAULT_SOCKET));
    assert_eq!(
        setting(&socket, "FileDescriptorName"),
        Some(REGISTRY_FD_NAME)
    );
    assert_eq!(setting(&socket, "SocketMode"), Some("0666"));
    assert_eq!(setting(&service, "Type"), Some("notify"));
    assert_eq!(
        setting(&service, "ExecStart"),
        Some("/usr/bin/credns serve")
    );
    assert_eq!(setting(&service, "Restart"), Some("on-failure"));

    // The units as installed, but with ExecStart naming this build (verify checks that the
    // program exists) and their man: references found among the pages this build generates.
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    let man = dir.path().join("man");
    std::fs::create_dir_all(&units).unwrap();
    run(Command::new(BIN)
        .args(["generate", "man"])
        .arg(man.join("man1")));
    for (name, unit) in [("credns.socket", &socket), ("credns.service", &service)] {
        std::fs::write(units.join(name), unit.replace("/usr/bin/credns", BIN)).unwrap();
    }
    // The faces' sockets start the same service, under the names the daemon takes them by.
    for (name, fd_name) in [
        (
            "credns-userdb.socket",
            credns_service::activation::USERDB_FD_NAME,
        ),
        (
            "credns-nsresource.socket",
            credns_service::activation::NSRESOURCE_FD_NAME,
        ),
    ] {
        let unit = packaging(&format!("faces/{name}"));
        assert_eq!(
            setting(&unit, "FileDescriptorName"),
            Some(fd_name),
            "{name}"
        );
        assert_eq!(setting(&unit, "Service"), Some("credns.service"), "{name}");
        std::fs::write(units.join(name), unit).unwrap();
    }
    let (ok, out) = verify(&units, &man);
    assert!(ok && out.is_empty(), "systemd-analyze verify:\n{out}");

    // The same check notices a mistake.
    std::fs::write(
        units.join("credns.service"),
        service.replace("/usr/bin/credns", BIN) + "ProtectSystem=stricter\n",
    )
    .unwrap();
    let (_, out) = verify(&units, &man);
    assert!(
        out.contains("protect system value"),
        "a bad setting passed: {out}"
    );
}

#[test]
fn the_tmpfiles_entry_makes_the_store_private_and_the_socket_directory_open() {
    let test = "the_tmpfiles_entry_makes_the_store_private_and_the_socket_directory_open";
    if !common::needs_root(test) || !common::needs_tool(test, "systemd-tmpfiles", "systemd") {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    run(Command::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo().join("packaging/credns.tmpfile")));
    for (dir, mode) in [("var/lib/credns", 0o700), ("run/credns", 0o755)] {
        let m = std::fs::metadata(root.path().join(dir)).unwrap();
        assert!(m.is_dir(), "{dir}");
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{dir}");
    }
}

/// The installed build: target/dist/credns (`cargo dist`; scripts/test.sh builds it).
fn dist_binary(test: &str) -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let bin = target.join("dist/credns");
    let why = (!bin.is_file()).then(|| format!("needs {} (run `cargo dist`)", bin.display()));
    common::require_or_skip(test, why).then_some(bin)
}

fn cargo_deb(test: &str) -> bool {
    let found = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    common::require_or_skip(
        test,
        (!found).then(|| "needs cargo-deb (cargo install cargo-deb --locked)".to_string()),
    )
}

#[test]
fn the_debian_package_holds_everything_and_installs_a_working_credns() {
    let test = "the_debian_package_holds_everything_and_installs_a_working_credns";
    if !common::needs_root(test)
        || !common::needs_tool(test, "dpkg-deb", "dpkg")
        || !cargo_deb(test)
    {
        return;
    }
    let Some(dist) = dist_binary(test) else {
        return;
    };
    // The installed build must be of these sources: its pages are this build's.
    let dir = tempfile::tempdir().unwrap();
    for (bin, to) in [(BIN, "ours"), (dist.to_str().unwrap(), "dist")] {
        run(Command::new(bin)
            .args(["generate", "man"])
            .arg(dir.path().join(to)));
    }
    let pages = |d: &str| -> Vec<(std::ffi::OsString, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path().join(d))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    assert!(
        pages("ours") == pages("dist"),
        "{} is older than these sources (its man pages differ): run `cargo dist`",
        dist.display()
    );

    let out = dir.path().join("deb");
    run(Command::new(repo().join("packaging/build-deb.sh"))
        .arg("--no-build")
        .arg("--output")
        .arg(&out));
    let debs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];

    let listing = run(Command::new("dpkg-deb").arg("-c").arg(deb));
    for path in [
        "./usr/bin/credns",
        "./usr/lib/systemd/system/credns.socket",
        "./usr/lib/systemd/system/credns.service",
        "./usr/share/doc/credns/examples/credns-userdb.socket",
        "./usr/lib/x86_64-linux-gnu/libsubid_credns.so",
        "./usr/share/doc/credns/examples/credns-nsresource.socket",
        "./usr/lib/tmpfiles.d/credns.conf",
        "./usr/share/man/man1/credns.1.gz",
        "./usr/share/man/man1/credns-run.1.gz",
        "./usr/share/man/man1/credns-serve.1.gz",
        "./usr/share/bash-completion/completions/credns",
        "./usr/share/zsh/vendor-completions/_credns",
        "./usr/share/fish/vendor_completions.d/credns.fish",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{listing}"
        );
    }
    let fields = run(Command::new("dpkg-deb").arg("-f").arg(deb));
    assert!(fields.contains("Package: credns\n"), "{fields}");
    assert!(fields.contains("Version: 0.1.0-1\n"), "{fields}");

    // Maintainer scripts: the socket is enabled and started, the service only through it.
    let control = dir.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(
        postinst.contains("deb-systemd-helper enable credns.socket"),
        "{postinst}"
    );
    assert!(!postinst.contains("enable credns.service"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-invoke start credns.socket"),
        "{postinst}"
    );
    assert!(
        postinst.contains("systemd-tmpfiles --create credns.conf"),
        "{postinst}"
    );
    assert!(!postinst.contains("#DEBHELPER#"), "{postinst}");
    let prerm = std::fs::read_to_string(control.join("prerm")).unwrap();
    assert!(
        prerm.contains("deb-systemd-invoke stop credns.service credns.socket"),
        "{prerm}"
    );
    // The faces' sockets are examples, never enabled by the package.
    for unit in ["credns-userdb.socket", "credns-nsresource.socket"] {
        assert!(!postinst.contains(&format!("enable {unit}")), "{postinst}");
        assert!(!postinst.contains(&format!("start {unit}")), "{postinst}");
    }
    let postrm = std::fs::read_to_string(control.join("postrm")).unwrap();
    assert!(
        postrm.contains("deb-systemd-helper purge credns.socket"),
        "{postrm}"
    );

    // Into a scratch root with dpkg's own database; the binary (static) runs there alone.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-depends", "--unpack"])
        .arg(deb));
    let status = run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["-s", "credns"]));
    assert!(status.contains("Status: install ok unpacked"), "{status}");
    let version = run(Command::new("chroot")
        .arg(&root)
        .args(["/usr/bin/credns", "--version"]));
    assert_eq!(version, "credns 0.1.0\n");
}
