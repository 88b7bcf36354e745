#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, written by `cargo run --bin crdgen`) into the Helm
# chart (charts/thalassa-secrets-operator/crds/) and the kustomize base (config/crd/bases/),
# which cannot reference files outside its own root. `cargo test --test cluster chart::` fails when the
# copies differ from crds/.
#
#   tools/sync-chart-crds.sh          # copy
#   tools/sync-chart-crds.sh --check  # only report differences (exit 1 if any)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/crds"
targets=("$root/charts/thalassa-secrets-operator/crds" "$root/config/crd/bases")
check=0
[ "${1:-}" = "--check" ] && check=1

shopt -s nullglob
files=("$src"/*.yaml)
if [ ${#files[@]} -eq 0 ]; then
  echo "sync-chart-crds: no CRDs in $src; generate them first:" >&2
  echo "  cargo run --bin crdgen -- --out-dir crds" >&2
  exit 1
fi

status=0
for dir in "${targets[@]}"; do
  mkdir -p "$dir"
  for f in "${files[@]}"; do
    name=$(basename "$f")
    if ! cmp -s "$f" "$dir/$name"; then
      if [ $check = 1 ]; then
        echo "sync-chart-crds: ${dir#"$root"/}/$name differs from crds/$name" >&2
        status=1
      else
        cp "$f" "$dir/$name"
        echo "sync-chart-crds: updated ${dir#"$root"/}/$name" >&2
      fi
    fi
  done
  # Copies of CRDs that no longer exist in crds/.
  for f in "$dir"/*.yaml; do
    [ -e "$src/$(basename "$f")" ] && continue
    if [ $check = 1 ]; then
      echo "sync-chart-crds: ${f#"$root"/} has no source in crds/" >&2
      status=1
    else
      rm "$f"
      echo "sync-chart-crds: removed ${f#"$root"/}" >&2
    fi
  done
done
exit $status
