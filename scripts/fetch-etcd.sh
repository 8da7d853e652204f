#!/usr/bin/env bash
# Fetch a real etcd (server, etcdctl, etcdutl) of the version Synod is compared with, from
# Debian's package archive, for the tests, benches and probes that check Synod against etcd
# byte for byte (docs/design/WATCH_LEASE.md 1.8 was recorded with it).
#
# Usage: scripts/fetch-etcd.sh [DEST]
#   DEST          where to unpack; default $ETCD_DIR, else /work/etcd-3.5
#   ETCD_VERSION  the upstream version wanted; default 3.5.30 (the golden values' version)
#
# - Nothing is installed and the machine's apt setup is left alone: a private sources list
#   (Debian unstable and testing), apt state and cache live under DEST/.apt; `apt-get
#   download` fetches the etcd-server and etcd-client .debs of ETCD_VERSION and `dpkg-deb -x`
#   unpacks them into DEST (binaries in DEST/usr/bin).
# - Fails, listing what Debian offers, when no suite has ETCD_VERSION any more (Debian keeps
#   only the newest build per suite): then choose a version and re-check the golden values.
# - Idempotent: when DEST/usr/bin/etcd already is ETCD_VERSION it only prints the paths.
# - The last two lines of its standard output are `ETCD=<path>` and `ETCDCTL=<path>`, so a
#   caller can `eval "$(scripts/fetch-etcd.sh | tail -n 2)"`.
# - Needs apt-get, apt-cache, dpkg-deb and the Debian archive keyring; it reaches only
#   Debian's package archive.
set -euo pipefail

dest="${1:-${ETCD_DIR:-/work/etcd-3.5}}"
version="${ETCD_VERSION:-3.5.30}"
etcd="$dest/usr/bin/etcd"
etcdctl="$dest/usr/bin/etcdctl"

installed_version() {
	"$etcd" --version 2>/dev/null | sed -n 's/^etcd Version: //p'
}

fetch() {
	local apt_dir="$dest/.apt"
	mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" \
		"$apt_dir/debs" "$apt_dir/sources.list.d"
	local repo="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian"
	printf '%s unstable main\n%s testing main\n' "$repo" "$repo" >"$apt_dir/sources.list"
	local apt_opts=(
		-o "Dir::State=$apt_dir/state"
		-o "Dir::Cache=$apt_dir/cache"
		-o "Dir::Etc::SourceList=$apt_dir/sources.list"
		# An empty parts folder, so the system's sources.list.d is not read either.
		-o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
		# The state is private, so the system's apt lock is not needed (nor root for it).
		-o "Debug::NoLocking=1"
		# DEST may not be writable by the _apt user; download as the caller.
		-o "APT::Sandbox::User=$(id -un)"
	)
	apt-get "${apt_opts[@]}" -qq update
	local deb_version
	deb_version="$(apt-cache "${apt_opts[@]}" madison etcd-server |
		awk -v v="$version" '$3 ~ "^" v "-" { print $3; exit }')"
	if [ -z "$deb_version" ]; then
		echo "fetch-etcd: Debian offers no etcd-server $version; it has:" >&2
		apt-cache "${apt_opts[@]}" madison etcd-server >&2
		exit 1
	fi
	# `apt-get download` writes into the current directory.
	(cd "$apt_dir/debs" && rm -f ./*.deb &&
		apt-get "${apt_opts[@]}" -qq download "etcd-server=$deb_version" "etcd-client=$deb_version")
	for deb in "$apt_dir"/debs/*.deb; do
		dpkg-deb -x "$deb" "$dest"
	done
}

if [ "$(installed_version)" != "$version" ]; then
	fetch
fi
if [ "$(installed_version)" != "$version" ]; then
	echo "fetch-etcd: $etcd is not etcd $version" >&2
	exit 1
fi
echo "fetch-etcd: etcd $version in $dest/usr/bin" >&2
echo "ETCD=$etcd"
echo "ETCDCTL=$etcdctl"
