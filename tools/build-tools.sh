#!/usr/bin/env bash
# Builds the real Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kubectl), the node's kubelet and kube-scheduler, etcd and helm from their Go modules into a
# cache outside the repository, the test node's sandbox process (tools/pause),
# keyed by version, and the repository's own thalassa-health test tool (tools/health),
# keyed by a hash of its sources. Skips whatever is already built. Prints the bin
# directory last.
#
#   tools/build-tools.sh            # build what is missing, print the bin dir
#   TOOLS_CACHE=/some/dir tools/build-tools.sh
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.1

here=$(cd "$(dirname "$0")" && pwd)
cache=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thalassa-operator-tools}
bin="$cache/bin-k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly

# The file name go build gives a main package: its last path element, skipping a /vN suffix.
binary_name() {
  local p=$1
  case "$(basename "$p")" in v[0-9]*) p=$(dirname "$p") ;; esac
  basename "$p"
}

log() { printf '[build-tools] %s\n' "$*" >&2; }

build() { # name module-dir ldflags packages...
  local name=$1 dir=$2 ldflags=$3; shift 3
  local want=("$@") missing=0 p
  for p in "${want[@]}"; do [ -x "$bin/$(binary_name "$p")" ] || missing=1; done
  [ "$missing" = 1 ] || { log "$name: cached in $bin"; return 0; }
  log "$name: building (cold builds take minutes on 2 cores)"
  local start=$SECONDS
  (cd "$here/$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/.partial-$name/" "${want[@]}")
  for p in "${want[@]}"; do mv "$bin/.partial-$name/$(binary_name "$p")" "$bin/"; done
  rmdir "$bin/.partial-$name"
  log "$name: built in $((SECONDS - start))s"
}

# thalassa-health is this repository's code, not a pinned release: its binary is named after a
# hash of tools/health's sources (so any change rebuilds it) and bin/thalassa-health links to
# the current one. Older builds are removed.
build_health() {
  local hash name old
  hash=$(cd "$here/health" && export LC_ALL=C && sha256sum go.mod go.sum *.go | sha256sum | cut -c1-12)
  name=thalassa-health-$hash
  if [ -x "$bin/$name" ]; then log "thalassa-health: cached in $bin ($hash)"; else
    log "thalassa-health: building ($hash)"
    local start=$SECONDS
    (cd "$here/health" && go build -trimpath -ldflags "-s -w" -o "$bin/.partial-$name" .)
    mv "$bin/.partial-$name" "$bin/$name"
    log "thalassa-health: built in $((SECONDS - start))s"
  fi
  ln -sfn "$name" "$bin/thalassa-health"
  for old in "$bin"/thalassa-health-*; do [ "$old" = "$bin/$name" ] || rm -f "$old"; done
}

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags="$k8s_ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done

if [ -x "$bin/etcd" ]; then log "etcd: cached in $bin"; else
  # go build names a /vN module's binary after the element before the major version.
  build etcd etcd "-s -w" go.etcd.io/etcd/server/v3
  mv "$bin/server" "$bin/etcd"
fi
build kubernetes k8s "$k8s_ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler
build helm helm "-s -w" helm.sh/helm/v4/cmd/helm
# Static, so testenv's node can put it alone into the sandbox image (`testenv up --node`).
build pause pause "-s -w" thalassa-operator-tools/pause
build_health

echo "$bin"
