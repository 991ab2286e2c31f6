#!/usr/bin/env python3
"""Autobahn|Testsuite spec, verdicts and the comparison with expected.json (run.sh calls this).

    python3 .ci/autobahn/verdicts.py spec  --out DIR --url URL [--cases LIST]
    python3 .ci/autobahn/verdicts.py check --out DIR [--update] [--expected FILE]

`spec` writes DIR/fuzzingclient.json, wstest's input: fuzzingclient.json of this directory
(all cases) with the server's URL and the report directory filled in, and --cases instead of
its case list when given.

`check` reads the reports wstest left in DIR (index.json and one JSON per case), gives each
selected case a verdict, compares it with expected.json and prints a summary whose last line
is exactly "N passed, M failed". It can be run again on an existing report directory.

Verdict per case:
  - Autobahn's "behavior" is the base (OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED);
  - a passing behavior (OK, NON-STRICT) whose closing handshake was FAILED or UNCLEAN becomes
    FAILED (else a server that never answers a close frame would pass most cases), and one
    whose close was WRONG CODE or FAILED BY CLIENT (the client had to drop TCP) NON-STRICT;
  - a selected case without a result (server gone, wstest stopped) is NO RESULT.
passed = the verdict equals the expected one AND is OK, NON-STRICT or INFORMATIONAL;
failed = every other selected case. Exit status 1 if any failed, 2 on a usage error.

--update first records this run's verdicts in expected.json (every selected case must have a
result), then compares as usual; commit the file with the change that explains it.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = "wshd"  # the server's name in the spec; index.json is keyed by it
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
ORDER = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "NO RESULT")
MAX_LISTED = 40  # changed cases printed one per line; the rest are counted


def case_key(case_id):
    return tuple(int(part) for part in case_id.split("."))


def select(patterns, catalogue):
    """The case ids wstest runs for `patterns`, as its CaseSet.resolveCasePatternList does:
    a pattern with '*' is a regular expression ('.' literal, '*' any text) matched at the
    start of the id; any other pattern is one id."""
    chosen = set()
    for pattern in patterns:
        if "*" in pattern:
            regex = re.compile(re.escape(pattern).replace(r"\*", ".*"))
            chosen.update(c for c in catalogue if regex.match(c))
        else:
            chosen.add(pattern)
    return sorted(chosen, key=case_key)


def verdict(result):
    behavior, close = result.get("behavior"), result.get("behaviorClose")
    if behavior in ("UNIMPLEMENTED", "INFORMATIONAL"):
        return behavior
    if behavior not in PASSING:
        return "FAILED"
    if close in ("OK", "INFORMATIONAL"):
        return behavior
    if close in ("WRONG CODE", "FAILED BY CLIENT"):
        return "NON-STRICT"
    return "FAILED"  # closing handshake FAILED or UNCLEAN


def fail(message):
    print("error: " + message, file=sys.stderr)
    sys.exit(2)


def load_json(path, default=None):
    if default is not None and not os.path.exists(path):
        return default
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_expected(path, verdicts):
    # One case per line in suite order, so that a diff shows exactly the cases that changed.
    lines = ['  "%s": "%s"' % (c, verdicts[c]) for c in sorted(verdicts, key=case_key)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


def cmd_spec(args):
    spec = load_json(os.path.join(HERE, "fuzzingclient.json"))
    if args.cases is not None:
        spec["cases"] = [p.strip() for p in args.cases.split(",") if p.strip()]
    patterns = spec["cases"]
    catalogue = load_json(args.expected, default={})
    selected = select(patterns, catalogue)
    unknown = [c for c in selected if c not in catalogue]
    if catalogue and unknown:
        fail("no case %s in %s" % (", ".join(unknown), args.expected))
    if not selected and not args.update:
        # wstest would wait forever for a case to run.
        fail("cases %s select no case of %s" % (",".join(patterns), args.expected))
    spec["servers"] = [{"agent": AGENT, "url": args.url}]
    spec["outdir"] = os.path.abspath(args.out)
    with open(os.path.join(args.out, "fuzzingclient.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    print(len(selected) if selected else "all")


def explain(out, result):
    """One line on what a case's report says went wrong."""
    if result is None:
        return "no result"
    text = ""
    try:
        report = load_json(os.path.join(out, result["reportfile"]))
        text = " / ".join(t for t in (report.get("result"), report.get("resultClose")) if t)
    except (OSError, KeyError, ValueError):
        pass
    return "behavior %s, close %s, server close code %s: %s" % (
        result.get("behavior"), result.get("behaviorClose"), result.get("remoteCloseCode"),
        text[:160])


def wrapped(ids, indent="    ", width=96):
    lines, line = [], indent
    for case_id in ids:
        if len(line) + len(case_id) + 1 > width and line.strip():
            lines.append(line)
            line = indent
        line += case_id + " "
    lines.append(line)
    return "\n".join(l.rstrip() for l in lines if l.strip())


def cmd_check(args):
    spec = load_json(os.path.join(args.out, "fuzzingclient.json"))
    index_path = os.path.join(args.out, "index.json")
    results = load_json(index_path, default={}).get(AGENT, {})
    expected = load_json(args.expected, default={})
    selected = select(spec["cases"], set(expected) | set(results))
    verdicts = {c: verdict(results[c]) if c in results else "NO RESULT" for c in selected}

    if args.update:
        lacking = [c for c in selected if c not in results]
        if lacking:
            fail("not updating %s: %d case(s) without a result (%s)"
                 % (args.expected, len(lacking), " ".join(lacking[:10])))
        if spec["cases"] == ["*"]:
            expected = {}  # a full run replaces the file: cases the suite dropped go too
        changes = sum(1 for c in selected if expected.get(c) != verdicts[c])
        expected.update(verdicts)
        write_expected(args.expected, expected)
        print("updated %s: %d cases, %d changed" % (args.expected, len(expected), changes))

    counts = {}
    for v in verdicts.values():
        counts[v] = counts.get(v, 0) + 1
    print("")
    print("=== Autobahn|Testsuite fuzzingclient against %s ===" % spec["servers"][0]["url"])
    print("reports:  %s (index.html)" % args.out)
    if args.wstest:
        print("wstest:   %s" % args.wstest)
    print("cases:    %d selected, %d with a result" % (len(selected), len(results)))
    print("verdicts: %s" % ", ".join("%s=%d" % (v, counts[v]) for v in ORDER if v in counts))
    for v in ORDER[1:]:
        if v in counts and v != "NO RESULT":
            print("  %s:\n%s" % (v, wrapped([c for c in selected if verdicts[c] == v])))
    if not os.path.exists(index_path):
        print("wstest wrote no index.json: did it run to the end?")

    changed = [c for c in selected if expected.get(c) != verdicts[c]]
    failing_as_expected = [c for c in selected if c not in changed and verdicts[c] not in PASSING]
    shown = os.path.relpath(args.expected)
    shown = args.expected if shown.startswith("..") else shown
    print("changed from %s: %s" % (shown, len(changed) or "none"))
    for c in changed[:MAX_LISTED]:
        print("  %s: expected %s, got %s (%s)" % (
            c, expected.get(c, "nothing (not in the file)"), verdicts[c], explain(args.out, results.get(c))))
    if len(changed) > MAX_LISTED:
        print("  ... and %d more" % (len(changed) - MAX_LISTED))
    if failing_as_expected:
        print("expected, but not a passing verdict:\n%s" % wrapped(failing_as_expected))

    failed = len(changed) + len(failing_as_expected)
    print("%d passed, %d failed" % (len(selected) - failed, failed))
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("spec", "check"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True, help="the report directory")
        p.add_argument("--expected", default=os.path.join(HERE, "expected.json"))
        p.add_argument("--update", action="store_true", help="record this run in --expected")
    sub.choices["spec"].add_argument("--url", required=True)
    sub.choices["spec"].add_argument("--cases", help="instead of the spec's '*': e.g. '1.*,7.1.5'")
    sub.choices["check"].add_argument("--wstest", help="how wstest ended, for the summary")
    args = parser.parse_args()
    if args.command == "spec":
        cmd_spec(args)
        return 0
    return cmd_check(args)


if __name__ == "__main__":
    sys.exit(main())
