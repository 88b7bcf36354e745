#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers and validators that see user or server input, with AFL++
# through cargo-afl on the stable toolchain. Not part of CI.
#
#   tools/fuzz.sh [seconds-per-target] [target...]
#
# Targets (fuzz/src/bin): paths (path validation, prefix keys, Secret keys, durations), wire (JSON
# decoding of every wire type), base64 (value decoding). Default: all three, 180 s each.
#
# Installs cargo-afl when missing (its install builds AFL++ from the sources bundled in the crate;
# needs cc and make), builds the targets with AFL++ instrumentation in fuzz/target, runs each for
# the given time and prints execs, speed, coverage and findings. The corpus and findings stay in
# fuzz/out/<target>/default (crashes/ and hangs/); a second run continues from the corpus.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-180}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(paths wire base64)

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/fuzz/target}

if ! cargo afl --version >/dev/null 2>&1; then
  echo "== installing cargo-afl (builds AFL++, a few minutes)"
  cargo install cargo-afl --locked --version 0.18.2
fi
# The install builds AFL++; if that step could not (no cc at the time), build it now. This fails
# harmlessly when it is already built.
cargo afl config --build >/dev/null 2>&1 || true

cd "$root/fuzz"
echo "== building ${targets[*]} with AFL++ instrumentation"
cargo afl build --release --locked $(printf -- '--bin %s ' "${targets[@]}")

# A container has no control over core dumps or the CPU governor; AFL++ only warns about both.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_NO_AFFINITY=1
# A backtrace of the 100 MB debug-info binary takes long enough to be reported as a hang.
export RUST_BACKTRACE=0

status=0
for target in "${targets[@]}"; do
  seeds="$root/fuzz/seeds/$target"
  out="$root/fuzz/out/$target"
  mkdir -p "$out"
  input=(-i "$seeds")
  # Resume from the existing corpus when there is one.
  [ -d "$out/default/queue" ] && input=(-i -)
  echo "== fuzzing $target for ${seconds}s"
  cargo afl fuzz "${input[@]}" -o "$out" -V "$seconds" -- "$CARGO_TARGET_DIR/release/$target" \
    >"$out/afl.log" 2>&1 || { echo "afl-fuzz failed for $target, see $out/afl.log"; tail -20 "$out/afl.log"; status=1; continue; }
  stats="$out/default/fuzzer_stats"
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes)
  printf '%-7s execs %s (%s/s), corpus %s, edges %s of %s (bitmap %s), stability %s, crashes %s, hangs %s\n' \
    "$target" "$(get execs_done)" "$(get execs_per_sec)" "$(get corpus_count)" \
    "$(get edges_found)" "$(get total_edges)" "$(get bitmap_cvg)" "$(get stability)" \
    "$crashes" "$(get saved_hangs)"
  if [ "${crashes:-0}" != 0 ]; then
    status=1
    # Replay each crash and group them by the failed check (the message up to its first quote).
    echo "  crashes in $out/default/crashes, by panic message:"
    for crash in "$out"/default/crashes/id:*; do
      (AFL_NO_UI=1 "$CARGO_TARGET_DIR/release/$target" <"$crash" 2>&1 || true) |
        grep -m1 -A1 panicked | tail -n1 | sed -E 's/ *"[^"]*".*$//'
    done | sort | uniq -c | sed 's/^/   /'
    first=$(ls "$out"/default/crashes/id:* | head -n1)
    echo "  first one ($first):"
    ("$CARGO_TARGET_DIR/release/$target" <"$first" 2>&1 || true) | grep -m1 -A1 panicked | sed 's/^/    /'
  fi
done
exit "$status"
