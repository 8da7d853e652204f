#!/usr/bin/env bash
# The main job: a local 3-member Synod cluster on loopback, ready for etcdctl.
# Works on a fresh machine: installs what the build needs (protoc) and, for trying it out,
# etcd's command-line client (etcdctl), then builds and starts `synod dev`.
# Extra arguments go to `synod dev` (see `synod dev --help`), e.g. --data-dir DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

echo "== building synod (release)"
cargo build --release -p synod-server
exec target/release/synod dev "$@"
