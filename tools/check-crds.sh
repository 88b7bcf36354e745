#!/usr/bin/env bash
# Fails when the committed CRDs (crds/*.yaml) differ from what `crdgen` generates now, i.e. when
# someone changed the Rust types without regenerating:
#   cargo run --bin crdgen -- --out-dir crds
# Also runs tools/sync-chart-crds.sh --check (chart and kustomize copies) when present.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

shopt -s nullglob
committed=(crds/*.yaml)
if [ ${#committed[@]} -eq 0 ]; then
  echo "check-crds: SKIPPED: no crds/*.yaml committed yet" >&2
  exit 0
fi

generated=$(mktemp)
expected=$(mktemp)
trap 'rm -f "$generated" "$expected"' EXIT
cargo run -q --bin crdgen > "$generated"
cat "${committed[@]}" > "$expected"
if ! diff -u --label "committed: ${committed[*]}" --label "cargo run --bin crdgen" "$expected" "$generated"; then
  echo "check-crds: crds/ is out of date; regenerate with: cargo run --bin crdgen -- --out-dir crds" >&2
  exit 1
fi
echo "check-crds: crds/ matches crdgen" >&2

if [ -x tools/sync-chart-crds.sh ]; then
  tools/sync-chart-crds.sh --check
fi
