#!/usr/bin/env bash
# Every check, as CI runs it: formatting, lints (warnings are errors), all tests, and the
# deterministic simulator over its CI seeds. Works on a fresh machine: it installs what the
# checks need and is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SIM_SEEDS="${SIM_SEEDS:-1000}"

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
cargo --version
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

# What the build and the tests need from Debian: protoc (etcd's protobuf definitions are
# compiled at build time by etcd-client's build-server feature), etcdctl (the
# compatibility tests drive Synod with etcd's own client) and a TrueType font (the
# benchmarks' plots). A test whose tool is missing fails; it never skips.
missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# scripts/fetch-etcd.sh (below) checks Debian's archive with it.
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || missing+=(debian-archive-keyring)
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

# A real etcd 3.5.30 (the release Synod answers as), unpacked from Debian's archive by
# scripts/fetch-etcd.sh without installing anything (once; kept in a cache directory):
# tests/etcd_compare.rs runs the same script on it and on Synod and compares the answers,
# and tests/etcdctl.rs uses its etcdctl for `endpoint hashkv --cluster`. They fail without
# it. About 15 s and 140 MB the first time.
step "etcd 3.5.30 for the comparison with etcd"
etcd_dir="${ETCD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/synod/etcd-3.5}"
etcd_paths="$(scripts/fetch-etcd.sh "$etcd_dir" | tail -n 2)" # fails the script if it fails
eval "$etcd_paths"
export ETCD_BIN="$ETCD"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
cargo test --workspace

step "simulator: ${SIM_SEEDS} seeds with every fault kind on"
cargo run --release -p synod-sim -- --seeds "$SIM_SEEDS"
