#!/bin/sh
# Fuzzes one target for a number of minutes (see docs/fuzzing.md):
#
#     fuzz/run.sh TARGET MINUTES [libFuzzer options...]
#     fuzz/run.sh frame_decoder 30 -runs=10000000   # whichever comes first
#
# New inputs go into fuzz/corpus/TARGET (minimise before committing: see docs/fuzzing.md),
# crashes into fuzz/artifacts/TARGET. Stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo fuzz
# pass its -Z flags; `-s none` because the fuzzed code is safe Rust (decision 0017), and
# `-a` keeps debug assertions (integer overflow checks) on in the optimised build. One
# process (no -jobs: with it libFuzzer forks workers that log to files).
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 TARGET MINUTES [libFuzzer options...]" >&2
    exit 2
fi
target=$1
minutes=$2
shift 2
cd "$(dirname "$0")"
exec env RUSTC_BOOTSTRAP=1 nice -n 10 cargo fuzz run -s none -a "$target" "corpus/$target" -- \
    -max_total_time=$((minutes * 60)) -timeout=10 -print_final_stats=1 "$@"
