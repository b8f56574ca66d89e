#!/usr/bin/env bash
# Every test of credns, on a fresh machine. Run as root: the differential tests use real user
# namespaces, and in CI (CI=true) nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v unshare >/dev/null || need_pkgs+=(util-linux)
command -v losetup >/dev/null || need_pkgs+=(mount)
command -v mkfs.ext4 >/dev/null || need_pkgs+=(e2fsprogs)
command -v setfacl >/dev/null || need_pkgs+=(acl)
if ((${#need_pkgs[@]})) && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

# In CI a test that would skip for want of root or a kernel feature fails instead.
if [ "${CI:-}" = true ]; then export CREDNS_REQUIRE_ALL=1; fi

cargo build --workspace --all-targets --locked
cargo test --workspace --locked --no-fail-fast
