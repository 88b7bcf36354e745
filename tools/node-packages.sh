#!/usr/bin/env bash
# Installs the Debian packages a testenv kubelet node needs (`testenv up --node`, tests/node,
# `tools/demo.sh --in-cluster`): containerd (with ctr), runc, the CNI plugins, iptables and
# buildah (the node's sandbox image and tools/build-image.sh). Installs only what is missing,
# and only as root with apt-get; otherwise says what is missing and exits 0, so callers go on
# and the node tests report themselves SKIPPED by name.
#
#   tools/node-packages.sh
set -euo pipefail

# package:file-it-installs (the same list as testenv/src/node.rs PACKAGES)
wanted=(
  containerd:/usr/bin/containerd
  containerd:/usr/bin/ctr
  runc:/usr/sbin/runc
  containernetworking-plugins:/usr/lib/cni/bridge
  iptables:/usr/sbin/iptables
  buildah:/usr/bin/buildah
)

log() { printf '[node-packages] %s\n' "$*" >&2; }

missing=()
for entry in "${wanted[@]}"; do
  package=${entry%%:*} file=${entry#*:}
  if [ ! -e "$file" ] && [[ " ${missing[*]-} " != *" $package "* ]]; then missing+=("$package"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  log "missing ${missing[*]}, and cannot install them here (needs root and apt-get): the node tests will be SKIPPED"
  exit 0
fi
log "installing ${missing[*]}"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
# The package lists may be stale on a fresh machine; refresh once if the install fails.
apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
  { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
log "installed in $((SECONDS - start))s"
