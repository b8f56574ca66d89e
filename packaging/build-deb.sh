#!/bin/sh
# Build the Debian package of credns (target/debian/credns_VERSION-1_ARCH.deb) from the
# installed build: `cargo dist` (static-pie, musl, target/dist/credns), the man pages and shell
# completions that binary generates from its own clap definitions, the systemd units and
# tmpfiles.d entry in packaging/. Needs cargo-deb (`cargo install cargo-deb --locked`).
#   packaging/build-deb.sh               build, then package
#   packaging/build-deb.sh --no-build    package the target/dist/credns already built
# Further arguments go to cargo deb (e.g. `--output DIR`).
set -eu
cd "$(dirname "$0")/.."
if [ "${1:-}" = --no-build ]; then
  shift
else
  cargo -q dist
  # The libsubid provider, in the same profile (a cdylib: never linked statically).
  cargo build -q --profile dist -p credns-subid
fi
bin=target/dist/credns
[ -x "$bin" ] || { echo "$bin is missing: run cargo dist" >&2; exit 1; }
[ -f target/dist/libsubid_credns.so ] ||
  { echo "target/dist/libsubid_credns.so is missing: cargo build --profile dist -p credns-subid" >&2; exit 1; }
gen=target/dist/packaging
rm -rf "$gen"
"$bin" generate man "$gen/man"
# Compressed as Debian policy asks (cargo-deb leaves files under the target directory as they are).
gzip -9n "$gen"/man/*.1
for shell in bash zsh fish; do
  "$bin" generate completions "$shell" --dir "$gen/completions"
done
# The package's version is the binary's own (so a stale binary cannot be packaged as new).
version=$("$bin" --version | cut -d' ' -f2)
cargo deb -p credns --no-build --profile dist --deb-version "$version-1" "$@"
