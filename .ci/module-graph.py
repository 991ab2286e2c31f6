#!/usr/bin/env python3
"""Prints the module dependency graph of a crate's top-level modules and fails on a cycle.

    python3 .ci/module-graph.py [crates/wshd/src] [--dot]

A module `a` depends on `b` when any file under `a` (a.rs, a/...) names `crate::b` (in a `use`
or a path). The output lists each module with the modules it uses, then any cycle found
(strongly connected components of more than one module); the exit status is 1 when there is
one. With --dot it prints Graphviz instead (`... --dot | dot -Tpng > modules.png`).
Comments and doc comments are ignored; `#[cfg(test)]` code counts like any other.
"""
import os
import re
import sys


def modules(src):
    """Top-level module name -> list of its files."""
    found = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs"):
            continue
        if entry.endswith(".rs"):
            found.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for root, _, files in os.walk(path):
                found.setdefault(entry, []).extend(os.path.join(root, f) for f in files if f.endswith(".rs"))
    return found


def uses(files, names):
    """The top-level modules named as `crate::x` in `files`."""
    used = set()
    pattern = re.compile(r"\bcrate::(\w+)")
    for path in files:
        with open(path, encoding="utf-8") as f:
            for line in f:
                code = line.split("//", 1)[0]
                used.update(m for m in pattern.findall(code) if m in names)
    return used


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else "crates/wshd/src"
    mods = modules(src)
    graph = {m: uses(files, mods) - {m} for m, files in mods.items()}
    if "--dot" in sys.argv:
        print("digraph modules {")
        for m in sorted(graph):
            for d in sorted(graph[m]):
                print(f'  "{m}" -> "{d}";')
        print("}")
        return 0
    for m in sorted(graph):
        print(f"{m:10} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    found = cycles(graph)
    for component in found:
        print(f"import cycle: {' <-> '.join(component)}")
    if not found:
        print("no import cycle between top-level modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
