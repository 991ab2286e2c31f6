#!/usr/bin/env python3
"""Lists the Rust functions longer than a limit; exits 1 if there is any.

    python3 .ci/fn-lengths.py crates/wshd/src crates/wshd-sdk/src      # limit 90 lines
    python3 .ci/fn-lengths.py --max 60 crates/wshd/src/ws/session.rs

Arguments are directories (searched recursively for *.rs) or .rs files. A function's length
counts the lines from the one holding its `fn` keyword to the one holding its closing brace,
both included (attributes and doc comments above it are not counted). Braces inside comments,
string literals (also raw and byte strings) and character literals are ignored. Nested
functions are listed on their own and also count in the function around them; declarations
without a body (`fn f();` in a trait) are skipped.

Output, longest first: `path:line: name N lines`. Exit status: 0 none over the limit,
1 some, 2 usage error. Standard library only.
"""

import argparse
import os
import re
import sys

# `fn` followed by a name: an item. A function pointer type (`fn(u8) -> u8`) has no name.
FN_ITEM = re.compile(r"\bfn\s+(?:r#)?([A-Za-z_][A-Za-z0-9_]*)")
IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")


def blank(text, start, end):
    """The characters text[start:end] with everything but newlines made spaces."""
    return "".join(c if c == "\n" else " " for c in text[start:end])


def skip_block_comment(src, i):
    """Index after the block comment starting at i (they nest in Rust)."""
    depth, i = 0, i
    while i < len(src):
        if src.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif src.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return i


def skip_string(src, i):
    """Index after the (non-raw) string literal whose opening quote is at i."""
    i += 1
    while i < len(src) and src[i] != '"':
        i += 2 if src[i] == "\\" else 1
    return i + 1


def raw_string_end(src, i):
    """If a raw string (r"..", r#".."#, br"..", cr"..") starts at i, the index after it."""
    m = re.compile(r'(?:b|c)?r(#*)"').match(src, i)
    if not m or (i > 0 and IDENT_CHAR.match(src[i - 1])):
        return None
    close = '"' + m.group(1)
    end = src.find(close, m.end())
    return len(src) if end < 0 else end + len(close)


def char_literal_end(src, i):
    """If a character literal ('x', '\\n', '\\u{7b}', b'{') starts at the quote at i, the index
    after it; None for a lifetime or label ('a, 'static)."""
    if src.startswith("\\", i + 1):
        end = src.find("'", i + 3)  # the escaped character itself may be a quote
        return None if end < 0 else end + 1
    if i + 2 < len(src) and src[i + 2] == "'":
        return i + 3
    return None


def strip(src):
    """The source with comments and literals blanked out, line breaks kept."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        end = None
        if src.startswith("//", i):
            end = src.find("\n", i)
            end = n if end < 0 else end
        elif src.startswith("/*", i):
            end = skip_block_comment(src, i)
        elif c in "rbc":
            end = raw_string_end(src, i)
        if end is None and c == '"':
            end = skip_string(src, i)
        elif end is None and c == "'":
            end = char_literal_end(src, i)
        if end is None:
            out.append(c)
            i += 1
        else:
            out.append(blank(src, i, end))
            i = end
    return "".join(out)


def functions(src):
    """(name, first line, line count) of every function with a body in the source text."""
    code = strip(src)
    for m in FN_ITEM.finditer(code):
        # The body is the first `{` outside parentheses and brackets; a `;` there first
        # means no body (`[u8; 4]` is inside brackets).
        depth, i = 0, m.end()
        while i < len(code):
            c = code[i]
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            elif depth == 0 and c in "{;":
                break
            i += 1
        if i >= len(code) or code[i] == ";":
            continue
        braces = 0
        for j in range(i, len(code)):
            if code[j] == "{":
                braces += 1
            elif code[j] == "}":
                braces -= 1
                if braces == 0:
                    first = code.count("\n", 0, m.start()) + 1
                    last = code.count("\n", 0, j) + 1
                    yield m.group(1), first, last - first + 1
                    break


def rust_files(parser, paths):
    for path in paths:
        if os.path.isfile(path):
            yield path
            continue
        if not os.path.isdir(path):
            parser.error("no such file or directory: %s" % path)
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                if name.endswith(".rs"):
                    yield os.path.join(root, name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max", type=int, default=90, help="longest allowed (default 90)")
    parser.add_argument("paths", nargs="+", help="directories or .rs files")
    args = parser.parse_args()
    long_ones = []
    for path in rust_files(parser, args.paths):
        with open(path, encoding="utf-8") as f:
            src = f.read()
        for name, line, length in functions(src):
            if length > args.max:
                long_ones.append((length, path, line, name))
    for length, path, line, name in sorted(long_ones, key=lambda f: (-f[0], f[1], f[2])):
        print("%s:%d: %s %d lines" % (path, line, name, length))
    if long_ones:
        print("%d function(s) longer than %d lines" % (len(long_ones), args.max))
    return 1 if long_ones else 0


if __name__ == "__main__":
    sys.exit(main())
