#!/usr/bin/env python3
"""Measures the shape of the code (issue 23): function lengths and parameter counts, files over
600 lines, Context's fields, condition-status literals outside the status module, test binaries,
README lines. Production code only: `#[cfg(test)]` modules are left out.

    tools/house-metrics.py            # summary
    tools/house-metrics.py --verbose  # also every long function and long parameter list

A rough lexical reading (no Rust parser): good enough to compare two revisions of this tree.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["src", "emulator/src", "testenv/src"]
STATUS_LITERAL = re.compile(r'"(True|False|Unknown)"')
FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)")


def strip_strings(line):
    return line


def blank_literals(text):
    """The text with comments, string and char literal contents blanked (newlines kept), so
    braces and parentheses inside them do not count."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'(b?r#*")', text[i:i + 8]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'b?r(#*)"', text[i:])
            end = text.find('"' + m.group(1), i + len(m.group(0))) + 1 + len(m.group(1))
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:end - 2]) + "  ")
            i = end
        elif c == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + re.sub(r"[^\n]", " ", text[i + 1:j]) + '"')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^'\\])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^'\\])'", text[i:i + 4])
            out.append("' '" + " " * (len(m.group(0)) - 3))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def production_lines(path):
    """The file's lines with every `#[cfg(test)]` item (a module or a function) removed."""
    raw = path.read_text().splitlines()
    lines = blank_literals(path.read_text()).splitlines()
    out, skip_depth, pending = [], None, False
    depth = 0
    for number, line in enumerate(lines):
        code = line
        if skip_depth is None and re.match(r"\s*#\[cfg\(test\)\]", line):
            pending = True
            continue
        if pending and skip_depth is None:
            if "{" in code:
                skip_depth = depth
            elif code.strip().endswith(";"):
                pending = False
                continue
        opened, closed = code.count("{"), code.count("}")
        depth += opened - closed
        if skip_depth is not None:
            if depth <= skip_depth:
                skip_depth, pending = None, False
            continue
        if pending and not code.strip():
            continue
        out.append((line, raw[number]))
    return out


def functions(lines):
    """(name, length, parameter count without self) of every fn with a body."""
    found = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        # Signature: up to the first `{` or `;` at paren depth 0.
        sig, j, parens = "", i, 0
        while j < len(lines):
            code = strip_strings(lines[j].split("//")[0])
            end = None
            for k, ch in enumerate(code):
                parens += ch in "(<[" and 1 or 0
                parens -= ch in ")>]" and 1 or 0
                if ch in "{;" and parens <= 0:
                    end = k
                    break
            sig += code if end is None else code[:end]
            if end is not None:
                break
            j += 1
        if j >= len(lines) or strip_strings(lines[j].split("//")[0])[end] == ";":
            continue
        depth, k = 0, j
        while k < len(lines):
            code = strip_strings(lines[k].split("//")[0])
            depth += code.count("{") - code.count("}")
            if depth <= 0 and k > j or (depth == 0 and "}" in code):
                break
            k += 1
        args = sig[sig.find("(", sig.find("fn ")) + 1 :]
        level, params, current = 0, [], ""
        for ch in args:
            if ch in "(<[":
                level += 1
            elif ch in ")>]":
                if level == 0:
                    break
                level -= 1
            if ch == "," and level == 0:
                params.append(current)
                current = ""
            else:
                current += ch
        params.append(current)
        params = [p for p in params if p.strip() and not re.fullmatch(r"\s*&?\s*(mut\s+)?('\w+\s+)?(mut\s+)?self\s*", p)]
        found.append((m.group(1), k - i + 1, len(params)))
    return found


def main():
    verbose = "--verbose" in sys.argv
    files = sorted(p for s in SOURCES for p in (ROOT / s).rglob("*.rs"))
    total_over_600, fns, literals = [], [], 0
    for path in files:
        rel = path.relative_to(ROOT)
        whole = len(path.read_text().splitlines())
        pairs = production_lines(path)
        prod = [blanked for blanked, _ in pairs]
        if whole > 600:
            total_over_600.append((whole, len(prod), str(rel)))
        if not re.search(r"(^|/)status(/|\.rs$)", str(rel)):
            literals += sum(len(STATUS_LITERAL.findall(raw.split("//")[0])) for _, raw in pairs)
        fns += [(length, params, f"{rel}:{name}") for name, length, params in functions(prod)]
    fns.sort(reverse=True)
    context = ROOT / "src/controller/mod.rs"
    text = context.read_text()
    body = re.search(r"pub(?:\(crate\))? struct Context \{(.*?)\n\}", text, re.S)
    fields = len(re.findall(r"^\s{4}(?:pub(?:\([^)]*\))?\s+)?\w+:", body.group(1), re.M)) if body else "?"
    tests = ROOT / "tests"
    binaries = len(list(tests.glob("*.rs"))) + len([d for d in tests.iterdir() if (d / "main.rs").exists()])
    reconcile = [f for f in fns if f[2].endswith(":reconcile") and "controller" in f[2]]
    print(f"driver `reconcile` fn lines:           {reconcile[0][0] if reconcile else '?'}")
    print(f"longest production function:          {fns[0][0]} lines ({fns[0][2]})")
    print(f"production functions over 100 lines:  {sum(1 for f in fns if f[0] > 100)}")
    print(f"functions with more than 5 params:    {sum(1 for f in fns if f[1] > 5)}")
    print(f"Context fields:                       {fields}")
    print(f"files over 600 lines (with tests):    {len(total_over_600)}")
    print(f"files over 600 production lines:      {sum(1 for f in total_over_600 if f[1] > 600)}")
    print(f"files over 1,000 lines (with tests):  {sum(1 for f in total_over_600 if f[0] > 1000)}")
    print(f"condition-status literals outside the status module: {literals}")
    print(f"integration test binaries:            {binaries}")
    print(f"README lines:                         {len((ROOT / 'README.md').read_text().splitlines())}")
    if verbose:
        print("\nfiles over 600 lines (total, production):")
        for whole, prod, rel in sorted(total_over_600, reverse=True):
            print(f"  {whole:5} {prod:5}  {rel}")
        print("\nfunctions over 100 lines:")
        for length, params, name in fns:
            if length > 100:
                print(f"  {length:4}  {name}")
        print("\nfunctions with more than 5 parameters:")
        for length, params, name in sorted(fns, key=lambda f: -f[1]):
            if params > 5:
                print(f"  {params:2}  {name}")


if __name__ == "__main__":
    main()
