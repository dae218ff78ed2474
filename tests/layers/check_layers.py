#!/usr/bin/env python3
"""Checks the include layers of korean-tiny-llm against the table in docs/architecture.md.

The rule is written down once, as the table between `<!-- layers:begin -->` and
`<!-- layers:end -->` in docs/architecture.md; this script reads it from there. It fails when:
  - a source file under core/, jobs/, server/ or cli/ belongs to no layer (a new folder needs a row),
  - a file includes a project header of a layer its own layer may not include,
  - a layer marked "no" in the LibTorch column includes LibTorch (<torch/...>, <ATen/...>,
    <c10/...> or core/torch_pch.h),
  - the table itself is inconsistent: an unknown layer name, a cycle, or a LibTorch-free layer
    allowed to include a layer that uses LibTorch (so "no LibTorch" also holds transitively).

Usage: check_layers.py [--root DIR]   (exit 0 clean, 1 violations, 2 a broken table)
"""
import argparse
import fnmatch
import os
import re
import sys

CHECKED_TOPS = ("core", "jobs", "server", "cli")
SOURCE_EXTS = (".h", ".hpp", ".cpp", ".cc")
TORCH_INCLUDE = re.compile(r"^\s*#\s*include\s*[<\"](torch/|ATen/|c10/|core/torch_pch\.h)")
PROJECT_INCLUDE = re.compile(r"^\s*#\s*include\s*\"([^\"]+)\"")


class Layer:
    def __init__(self, name, patterns, allowed, torch):
        self.name = name
        self.patterns = patterns  # "core/base/" (a folder) or "core/model/model_config.*" (files)
        self.allowed = allowed  # names of the layers this one may include ("*": any)
        self.torch = torch  # may it include LibTorch?


def cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def names_in(cell):
    return [n.strip().strip("`") for n in cell.split(",") if n.strip().strip("`") not in ("", "—", "-")]


def read_rules(doc_path):
    """Parses the layer table; returns [Layer] or raises ValueError."""
    with open(doc_path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- layers:begin -->(.*?)<!-- layers:end -->", text, re.S)
    if not m:
        raise ValueError(f"{doc_path}: no '<!-- layers:begin -->' ... '<!-- layers:end -->' table")
    rows = [l for l in m.group(1).splitlines() if l.strip().startswith("|")]
    if len(rows) < 3:
        raise ValueError(f"{doc_path}: the layer table has no rows")
    header = [c.lower() for c in cells(rows[0])]
    want = ["layer", "paths", "may include", "libtorch"]
    if header[:4] != want:
        raise ValueError(f"{doc_path}: layer table columns must be {want}, got {header}")
    layers = []
    for row in rows[2:]:
        c = cells(row)
        if len(c) < 4:
            raise ValueError(f"{doc_path}: short row: {row.strip()}")
        torch = c[3].lower()
        if torch not in ("yes", "no"):
            raise ValueError(f"{doc_path}: LibTorch must be yes or no in row: {row.strip()}")
        layers.append(Layer(c[0].strip("`"), names_in(c[1]), names_in(c[2]), torch == "yes"))
    validate(layers, doc_path)
    return layers


def validate(layers, where):
    by_name = {l.name: l for l in layers}
    if len(by_name) != len(layers):
        raise ValueError(f"{where}: a layer name appears twice")
    for l in layers:
        for a in l.allowed:
            if a == "*":
                continue
            if a not in by_name:
                raise ValueError(f"{where}: layer '{l.name}' may include unknown layer '{a}'")
            if not l.torch and by_name[a].torch:
                raise ValueError(f"{where}: LibTorch-free layer '{l.name}' may not include "
                                 f"'{a}', which uses LibTorch")
    # No cycles: the allowed-include graph must be a DAG ("*" layers are the top).
    state = {}

    def visit(name, path):
        if state.get(name) == "done":
            return
        if state.get(name) == "open":
            raise ValueError(f"{where}: the layer table has a cycle: {' -> '.join(path + [name])}")
        state[name] = "open"
        for a in by_name[name].allowed:
            if a != "*":
                visit(a, path + [name])
        state[name] = "done"

    for l in layers:
        visit(l.name, [])


def layer_of(rel_path, layers):
    """The layer whose pattern matches rel_path most specifically (files before folders)."""
    best, best_score = None, -1
    for l in layers:
        for p in l.patterns:
            if p.endswith("/"):
                hit = rel_path.startswith(p)
                score = len(p)
            else:
                hit = fnmatch.fnmatchcase(rel_path, p)
                score = 10000 + len(p)  # a file pattern beats any folder pattern
            if hit and score > best_score:
                best, best_score = l, score
    return best


def source_files(root):
    for top in CHECKED_TOPS:
        base = os.path.join(root, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "node_modules")
            for fn in sorted(filenames):
                if fn.endswith(SOURCE_EXTS):
                    yield os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")


def check(root, layers):
    """Returns a list of violation messages (empty when the tree keeps its layers)."""
    problems = []
    for rel in source_files(root):
        own = layer_of(rel, layers)
        if own is None:
            problems.append(f"{rel}: belongs to no layer (add a row to the table in "
                            f"docs/architecture.md)")
            continue
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        for n, line in enumerate(lines, 1):
            if not own.torch and TORCH_INCLUDE.match(line):
                problems.append(f"{rel}:{n}: layer '{own.name}' must not include LibTorch: "
                                f"{line.strip()}")
                continue
            m = PROJECT_INCLUDE.match(line)
            if not m or not os.path.isfile(os.path.join(root, m.group(1))):
                continue  # a system or third-party header
            target = layer_of(m.group(1), layers)
            if target is None or target is own or "*" in own.allowed:
                continue
            if target.name not in own.allowed:
                problems.append(f"{rel}:{n}: layer '{own.name}' may not include '{target.name}' "
                                f"({m.group(1)}); it may include: "
                                f"{', '.join(own.allowed) or 'nothing outside itself'}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")),
                    help="the repository root (default: this script's)")
    args = ap.parse_args()
    try:
        layers = read_rules(os.path.join(args.root, "docs", "architecture.md"))
    except ValueError as e:
        print(f"layer table: {e}", file=sys.stderr)
        return 2
    problems = check(args.root, layers)
    for p in problems:
        print(p, file=sys.stderr)
    files = sum(1 for _ in source_files(args.root))
    if problems:
        print(f"layer check: {len(problems)} violation(s) in {files} files", file=sys.stderr)
        return 1
    print(f"layer check: {files} files in {len(layers)} layers keep their layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
