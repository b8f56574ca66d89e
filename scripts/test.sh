#!/usr/bin/env bash
# Every test of credns, on a fresh machine. Run as root: the differential tests create real user
# namespaces, loop devices, filesystems, idmapped mounts and keys, and in CI (CI=true) nothing may
# skip.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests use from Debian, by the command that shows it is there.
declare -A pkg_for=(
  [unshare]=util-linux [setpriv]=util-linux [losetup]=mount [setfacl]=acl [keyctl]=keyutils
  [newuidmap]=uidmap [crun]=crun [mkfs.ext4]=e2fsprogs [mkfs.btrfs]=btrfs-progs
  [mkfs.xfs]=xfsprogs [hyperfine]=hyperfine
  [systemd-socket-activate]=systemd [systemd-analyze]=systemd [systemd-tmpfiles]=systemd
  [dpkg-deb]=dpkg
  [mkfs.xfs]=xfsprogs [hyperfine]=hyperfine [getsubids]=uidmap [ldconfig]=libc-bin
  [podman]=podman [getent]=libc-bin [setcap]=libcap2-bin [chattr]=e2fsprogs
)
need_pkgs=()
for cmd in "${!pkg_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/sbin:/usr/sbin" command -v "$cmd" >/dev/null 2>&1 ||
    need_pkgs+=("${pkg_for[$cmd]}")
done
# The run, oci and README tests build root filesystems from the static busybox.
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
# The userdb provider's tests resolve names through nss-systemd.
dpkg -s libnss-systemd >/dev/null 2>&1 || need_pkgs+=(libnss-systemd)
dpkg -s keyutils >/dev/null 2>&1 || need_pkgs+=(keyutils)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(printf '%s\n' "${need_pkgs[@]}" | sort -u) >/dev/null
  else
    echo "missing (install as root): ${need_pkgs[*]}" >&2
  fi
fi
export PATH="$PATH:/sbin:/usr/sbin"

# In CI (CI set to anything but empty, "false" or "0": CI=true, CI=1, ...) a test that would
# skip for want of root or a kernel feature fails instead, and so does anything the
# differential suites would otherwise leave uncompared.
in_ci=
case "${CI:-}" in '' | false | 0) ;; *) in_ci=1 ;; esac
if [ -n "$in_ci" ]; then export CREDNS_REQUIRE_ALL=1; fi

cargo build --workspace --all-targets --locked

# The installed build links against musl (xtask/src/main.rs says why): its standard library.
if command -v rustup >/dev/null 2>&1 &&
  ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi

# The packaging test packages the installed build (static-pie, target/dist/credns) with cargo-deb.
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked
cargo -q dist
cargo build -q --profile dist -p credns-subid

# Tests never touch what they did not create. In CI a daemon serves the host's defaults while
# they run (started here if none answers), and its store must come out byte for byte as it
# went in; elsewhere an existing host store is checked the same way.
host_store=/var/lib/credns/registry.redb
host_socket=/run/credns/io.credns.Registry
answers() { python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$host_socket" 2>/dev/null; }
started_daemon=
if [ -n "$in_ci" ] && [ "$(id -u)" = 0 ] && ! answers; then
  target/debug/credns serve >/dev/null 2>&1 &
  started_daemon=$!
  for _ in $(seq 200); do answers && break; sleep 0.05; done
  answers || { echo "the host daemon did not come up on $host_socket" >&2; exit 1; }
fi
store_sum() { if [ -e "$host_store" ]; then sha256sum "$host_store" | cut -d' ' -f1; else echo absent; fi; }
before=$(store_sum)

status=0
# The generated differential suites run 15,000 model scenarios (tests/model.rs, ~3 min), 6,000 key
# cases (tests/keys.rs) and ~2,000 map writes (tests/maps.rs) and idmapped cases, each with a
# new seed it prints; CREDNS_CONFORMANCE_SCALE scales them down, explicitly.
cargo test --workspace --locked --no-fail-fast || status=$?
# The benchmarks in test mode (no --bench): each runs a few rounds, with its agreement checks
# (answers equal to the kernel's or the baseline's) asserted.
CREDNS_BENCH_RUNS=3 CREDNS_AUDIT_NAMESPACES=20 CREDNS_BENCH_LOOKUPS=50 \
  cargo test --workspace --locked --no-fail-fast --benches || status=$?

after=$(store_sum)
if [ -n "$started_daemon" ]; then kill -TERM "$started_daemon"; wait "$started_daemon" || true; fi
if [ "$before" != "$after" ]; then
  echo "the host's registry store $host_store changed during the tests ($before -> $after)" >&2
  status=1
fi
[ "$status" = 0 ] || exit "$status"
echo "host registry store unchanged by the tests"

# The fuzz targets (their own workspace): every seed replays cleanly through an uninstrumented
# build, then each target fuzzes for a few seconds, instrumented (cargo-fuzz: libFuzzer's
# coverage guidance and AddressSanitizer, nightly), new inputs kept in a scratch corpus.
cargo build --manifest-path fuzz/Cargo.toml --locked --bins
for seeds in fuzz/seeds/*/; do
  target=$(basename "$seeds")
  "fuzz/target/debug/$target" -runs=0 "$seeds" >/dev/null 2>&1 ||
    { echo "fuzz target $target fails on its seeds: fuzz/target/debug/$target $seeds" >&2; exit 1; }
done
echo "fuzz targets: every seed replayed"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
fuzz_secs=${CREDNS_FUZZ_SECONDS:-8}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
(cd fuzz && cargo +nightly fuzz build) >/dev/null
targets=$(cd fuzz && cargo +nightly fuzz list)
for target in $targets; do
  mkdir -p "$scratch/$target"
  seeds=fuzz/seeds/$target
  [ -d "$seeds" ] || { echo "fuzz target $target has no seeds in $seeds" >&2; exit 1; }
  (cd fuzz && cargo +nightly fuzz run "$target" "$scratch/$target" "seeds/$target" -- \
    -max_total_time="$fuzz_secs" -print_final_stats=1) >"$scratch/$target.log" 2>&1 ||
    { tail -40 "$scratch/$target.log" >&2; echo "fuzz target $target failed (log above)" >&2; exit 1; }
  echo "fuzz $target: $(grep -m1 '^stat::number_of_executed_units' "$scratch/$target.log" | sed 's/.*: *//') runs in ${fuzz_secs}s, $(grep -o 'cov: [0-9]*' "$scratch/$target.log" | tail -1)"
done
