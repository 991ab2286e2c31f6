#!/usr/bin/env bash
# Server CPU per echoed message, split into user and system time, for several wshd builds and
# fastwebsockets in one run (100 connections x 16-byte round trips; server on CPU 0, load
# generator on CPU 1). Used to compare builds while profiling (docs/performance.md,
# "Finding the costs").
#
#   crates/wshd-bench/scripts/cpu-split.sh ROUNDS SECONDS DIR...
#   CONNECTIONS=1 crates/wshd-bench/scripts/cpu-split.sh ROUNDS SECONDS DIR...
#   LOAD_ARGS="--mode throughput --size 65536 --window 16" crates/wshd-bench/scripts/cpu-split.sh ...
#
# CONNECTIONS (default 100) sets the load generator's connections; with 1 it shares CPU 0
# with the server, as `wshd-bench run` does for its one-connection workload. LOAD_ARGS are
# passed on to `wshd-bench load` (the line above is the `throughput` workload of
# `wshd-bench run`: 64 KiB messages, 16 in flight per connection).
#
# Each DIR holds a `wshd` binary and `libecho_wsh.so`; a file DIR/path containing
# `/builtin_echo` drives wshd's built-in echo instead (a `[[route]] builtin = "echo"` is added).
# Rounds alternate the servers; the medians are printed. Needs target/release/wshd-bench.
set -euo pipefail
rounds=$1 seconds=$2
shift 2
connections=${CONNECTIONS:-100}
read -r -a load_args <<<"${LOAD_ARGS:-}"
loadgen_cpu=1
[[ $connections == 1 ]] && loadgen_cpu=0
bench="$(cd "$(dirname "$0")/../../.." && pwd)/target/release/wshd-bench"
out="$(mktemp -d)"
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$out"' EXIT
declare -A pids urls
port=21100
for dir in "$@"; do
    mkdir -p "$dir/h"
    cp "$dir/libecho_wsh.so" "$dir/h/"
    printf '[server]\nlisten = ["127.0.0.1:%s"]\n[handlers]\ndir = "%s/h"\n[log]\nlevel = "warn"\n' \
        "$port" "$dir" >"$dir/server.toml"
    path=/echo
    if [[ -f "$dir/path" ]]; then
        path="$(cat "$dir/path")"
        printf '[[route]]\npath = "/builtin_echo"\nbuiltin = "echo"\n' >>"$dir/server.toml"
    fi
    taskset -c 0 "$dir/wshd" -c "$dir/server.toml" >"$dir/wshd.log" 2>&1 &
    pids[$dir]=$!
    urls[$dir]="ws://127.0.0.1:$port$path"
    port=$((port + 1))
done
taskset -c 0 "$bench" fws-echo --addr "127.0.0.1:$port" >/dev/null 2>&1 &
pids[fastwebsockets]=$!
urls[fastwebsockets]="ws://127.0.0.1:$port/"
sleep 1
# utime and stime (clock ticks) of a process and its children (a wshd master's workers).
ticks() {
    local files=("/proc/$1/stat")
    for child in $(pgrep -P "$1" || true); do files+=("/proc/$child/stat"); done
    cat "${files[@]}" 2>/dev/null | awk '{u += $14; s += $15} END {print u, s}'
}
for _ in $(seq "$rounds"); do
    for name in "$@" fastwebsockets; do
        taskset -c "$loadgen_cpu" "$bench" load --url "${urls[$name]}" --connections "$connections" --seconds $((seconds + 2)) "${load_args[@]}" >"$out/load" 2>&1 &
        load=$!
        sleep 1
        before=$(ticks "${pids[$name]}")
        sleep "$seconds"
        after=$(ticks "${pids[$name]}")
        wait "$load"
        rate=$(sed -n 's/^RESULT .* rate=\([0-9.]*\).*/\1/p' "$out/load")
        hz=$(getconf CLK_TCK)
        echo "$name $rate $before $after" | awk -v s="$seconds" -v hz="$hz" \
            '{m=$2*s; printf "%s %s %.3f %.3f\n", $1, $2, ($5-$3)*1e6/hz/m, ($6-$4)*1e6/hz/m}' >>"$out/rounds"
    done
done
python3 - "$out/rounds" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, rate, user, system = line.split()
    rows[name].append((float(rate), float(user), float(system)))
print(f"{'server':32} {'msgs/s':>9} {'user':>6} {'system':>7} {'total µs/msg':>13}")
for name, v in rows.items():
    med = lambda i: statistics.median(x[i] for x in v)
    tot = statistics.median(x[1] + x[2] for x in v)
    print(f"{name:32} {med(0):9.0f} {med(1):6.3f} {med(2):7.3f} {tot:13.3f}")
PY
