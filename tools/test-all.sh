#!/usr/bin/env bash
# The project's single test command (see README):
#   1. builds etcd / kube-apiserver / kube-controller-manager / kubectl / helm, and the test
#      node's kubelet / kube-scheduler / pause, if missing (tools/build-tools.sh; cold ~10-15 min
#      on 2 cores, then cached outside the repo),
#   2. cargo fmt --check, cargo clippy -D warnings, CRD drift check (tools/check-crds.sh),
#   3. installs the node's Debian packages if missing (tools/node-packages.sh, as root), then
#      builds the operator image (tools/build-image.sh: release build + buildah, no daemon) and
#      exports OPERATOR_IMAGE_ARCHIVE, the docker-archive tests/offline/image.rs checks against
#      the Dockerfile (without it, that test builds the image itself),
#   4. starts ONE real local control plane (`testenv up`) for the whole run and exports
#      TESTENV_DIR so every test binary attaches to it,
#   5. cargo test --workspace: unit and emulator tests, and the operator's integration test
#      binaries, tests/offline (no cluster), tests/cluster (every test that needs the control
#      plane; its areas take turns, see docs/testing.md) and tests/node (the image on a real
#      kubelet node of its own control plane; SKIPPED by name in the summary where this machine
#      cannot run a node), with libtest's default thread count.
# Every step runs even if an earlier check failed; the exit status is non-zero if any failed.
# A tool that is not installed (rustfmt, clippy) is reported as SKIPPED, loudly.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

failed=()
skipped=()
run_dir=
up_pid=

step() { printf '\n==> %s\n' "$*" >&2; }
check() { # name command...
  local name=$1; shift
  step "$name"
  if ! "$@"; then
    echo "FAILED: $name" >&2
    failed+=("$name")
  fi
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
    kill -TERM "$up_pid" 2>/dev/null
    wait "$up_pid" 2>/dev/null
  fi
  if [ -n "$run_dir" ]; then
    if [ "$status" = 0 ]; then
      rm -rf "$run_dir"
    else
      echo "test-all: control-plane logs kept in $run_dir/control-plane/logs" >&2
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "tools (tools/build-tools.sh)"
bin_dir=$(tools/build-tools.sh | tail -n 1) || { echo "FAILED: building the tools" >&2; exit 1; }
export TESTENV_BIN_DIR=$bin_dir
export PATH="$bin_dir:$PATH" # kubectl and helm for tests and scripts that shell out

if cargo fmt --version >/dev/null 2>&1; then
  check "cargo fmt --check" cargo fmt --all --check
else
  echo "!!!!! SKIPPED: cargo fmt --check (rustfmt not installed) !!!!!" >&2
  skipped+=("cargo fmt --check (rustfmt not installed)")
fi
if cargo clippy --version >/dev/null 2>&1; then
  check "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
else
  echo "!!!!! SKIPPED: cargo clippy --all-targets -- -D warnings (clippy not installed) !!!!!" >&2
  skipped+=("cargo clippy (clippy not installed)")
fi
check "CRD drift (tools/check-crds.sh)" tools/check-crds.sh

# The image once, here, so the test binaries only read it. The script prints the archive path
# last. On failure the step is FAILED and OPERATOR_IMAGE_ARCHIVE is set empty: the image test
# then fails at once instead of running the same build again.
build_image() {
  local archive
  export OPERATOR_IMAGE_ARCHIVE=
  archive=$(tools/build-image.sh | tail -n 1) && [ -f "$archive" ] || return 1
  OPERATOR_IMAGE_ARCHIVE=$archive
}
# The node tests (tests/node) need Debian packages; this installs what is missing (as root).
check "node packages (tools/node-packages.sh)" tools/node-packages.sh
check "image (tools/build-image.sh)" build_image

step "control plane (testenv up)"
cargo build -q -p testenv --bin testenv || { echo "FAILED: building testenv" >&2; exit 1; }
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/thalassa-test-all.XXXXXX")
# --exit-with: if this script is killed (even with SIGKILL), the control plane stops too.
# --crds: the operator's CRDs exist before kube-controller-manager starts, so its garbage
# collector handles their ownerReferences at once instead of after a 30 s discovery resync.
crd_args=()
if compgen -G "crds/*.yaml" >/dev/null; then crd_args=(--crds crds); fi
"$target_dir/debug/testenv" up --dir "$run_dir/control-plane" --exit-with $$ "${crd_args[@]}" \
  >"$run_dir/testenv-up.log" 2>&1 &
up_pid=$!
until [ -f "$run_dir/control-plane/controlplane.json" ]; do
  if ! kill -0 "$up_pid" 2>/dev/null; then
    echo "FAILED: the control plane did not start:" >&2
    cat "$run_dir/testenv-up.log" >&2
    exit 1
  fi
  sleep 0.2
done
grep -v '^\[build-tools\]' "$run_dir/testenv-up.log" >&2
# shellcheck source=/dev/null
source "$run_dir/control-plane/env" # TESTENV_DIR, KUBECONFIG, TESTENV_API_URL, TESTENV_SA_ISSUER

if ! node_missing=$("$target_dir/debug/testenv" node-check 2>&1); then
  echo "!!!!! SKIPPED: tests/node (${node_missing}) !!!!!" >&2
  skipped+=("tests/node: every test passes without running (${node_missing})")
fi
check "cargo test --workspace" cargo test --workspace

step "summary"
for s in "${skipped[@]}"; do echo "SKIPPED: $s" >&2; done
if [ ${#failed[@]} -gt 0 ]; then
  for f in "${failed[@]}"; do echo "FAILED: $f" >&2; done
  exit 1
fi
echo "test-all: all steps passed" >&2
