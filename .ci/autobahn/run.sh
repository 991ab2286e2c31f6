#!/usr/bin/env bash
# Runs Autobahn|Testsuite (wstest -m fuzzingclient) against a running WebSocket echo server and
# compares every case's verdict with expected.json. The last line printed is exactly
# "N passed, M failed"; the exit status is 0 only when every case got its expected, passing
# verdict (1: some did not; 2: usage or install error).
#
#   bash .ci/autobahn/run.sh ws://127.0.0.1:9998/echo            # all 517 cases, 10-13 min
#   bash .ci/autobahn/run.sh ws://127.0.0.1:9998/echo --cases '1.*,7.1.5'
#   bash .ci/autobahn/run.sh ws://127.0.0.1:9998/echo --update   # rewrite expected.json
#
# Options: --cases LIST     comma-separated case patterns instead of all ('*')
#          --update         record this run's verdicts in expected.json, then compare
#          --out DIR        report directory (default target/autobahn-reports)
#          --timeout SECS   stop wstest after SECS (its reports are then lost: every case
#                           counts as without a result)
#          --verbose        show wstest's output (always in DIR/wstest.log)
# The first run installs wstest (install.sh, ~35 s, cached in ~/.cache/wshd-autobahn-py27).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# Removes what an earlier run left in the report directory, so that it describes this run.
clear_reports() {
    local out="$1"
    mkdir -p "$out"
    rm -f "$out/index.html" "$out/index.json" "$out/fuzzingclient.json" "$out/wstest.log" \
        "$out"/*_case_*.html "$out"/*_case_*.json
}

# wstest runs in the report directory (it writes a few files in its working directory).
run_wstest() {
    local python2="$1" out="$2" timeout="$3" verbose="$4" cmd
    cmd=("$python2" -m autobahntestsuite.wstest -m fuzzingclient -s "$out/fuzzingclient.json")
    # -k: SIGKILL if wstest ignores the SIGTERM.
    [[ "$timeout" != 0 ]] && cmd=(timeout -k 30 "$timeout" "${cmd[@]}")
    if [[ "$verbose" == 1 ]]; then
        (cd "$out" && "${cmd[@]}") </dev/null 2>&1 | tee "$out/wstest.log"
        return "${PIPESTATUS[0]}"
    fi
    (cd "$out" && "${cmd[@]}") </dev/null >"$out/wstest.log" 2>&1
}

main() {
    local url="" out="$HERE/../../target/autobahn-reports" timeout=0 verbose=0
    local spec_args=() check_args=()
    while (($#)); do
        case "$1" in
            --cases) spec_args+=(--cases "${2:?--cases needs a value}") && shift ;;
            --update) spec_args+=(--update) && check_args+=(--update) ;;
            --out) out="${2:?--out needs a directory}" && shift ;;
            --timeout) timeout="${2:?--timeout needs seconds}" && shift ;;
            --verbose) verbose=1 ;;
            ws://* | wss://*) url="$1" ;;
            *) usage ;;
        esac
        shift
    done
    [[ -n "$url" ]] || usage
    [[ "$timeout" =~ ^[0-9]+$ ]] || usage

    local python2 selected start status=0
    python2="$(bash "$HERE/install.sh")"
    clear_reports "$out"
    out="$(cd "$out" && pwd)"
    selected="$(python3 "$HERE/verdicts.py" spec --out "$out" --url "$url" "${spec_args[@]}")"
    echo "wstest: $selected cases against $url (log: $out/wstest.log)"
    start=$SECONDS
    run_wstest "$python2" "$out" "$timeout" "$verbose" || status=$?
    local how="exit $status after $((SECONDS - start)) s"
    [[ "$status" == 124 || "$status" == 137 ]] && how+=" (stopped by --timeout $timeout)"
    python3 "$HERE/verdicts.py" check --out "$out" --wstest "$how" "${check_args[@]}"
}

main "$@"
