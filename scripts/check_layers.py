#!/usr/bin/env python3
"""Check that kaokore's top-level modules form layers: no module imports from a higher
layer, and no two top-level modules import each other in a cycle.

Imports are read from the code, not only from `use` lines: every `crate::NAME` path (and,
in a file directly under src/, `super::NAME`; in the binary's files, `kaokore::NAME`)
counts, inline ones included. Comments and `#[cfg(test)]` items are left out: tests may
reach anywhere. A folder's `mod.rs` and its own children may refer to each other freely.

    python3 scripts/check_layers.py            check; exit 1 on a violation
    python3 scripts/check_layers.py --graph    also print every edge with its files
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

# From the ground up. A module may import from its own layer (without a cycle) or below.
LAYERS = [
    ("ground", ["metadata", "digest", "fs", "layout", "process", "progress"]),
    ("image", ["decode", "normalize", "encode"]),
    ("io", ["fetch", "out", "info"]),
    ("formats", ["pack"]),
    ("checks", ["verify", "report", "config"]),
    ("pipeline", ["error", "pipeline"]),
    ("command line", ["cli", "main"]),
]
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
# The binary's own files (they import the library as `kaokore::`).
BINARY = {"main", "cli"}


def strip_comments(text):
    """Remove // and /* */ comments, keeping strings (a path inside a string is not an import,
    but none of ours looks like one)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def strip_cfg_test(text):
    """Remove every item that follows `#[cfg(test)]`: a block `{...}` or a line ending in `;`."""
    out = []
    i = 0
    marker = re.compile(r"#\[cfg\(test\)\]")
    while True:
        m = marker.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        j = m.end()
        # Skip to the item's body or end.
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j < len(text) and text[j] == "{":
            depth = 0
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
        i = j + 1


def grouped_names(text, start):
    """The first name of each path in the braces that open at `start`:
    `{a, b::c, d::{e, f}}` gives a, b and d."""
    depth = 0
    items = [""]
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        elif ch == "," and depth == 1:
            items.append("")
            continue
        if depth == 1:
            items[-1] += ch
    names = []
    for item in items:
        name = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", item)
        if name:
            names.append(name.group(1))
    return names


def imports(path, module, src):
    """The top-level modules `path` (of top-level module `module`) refers to."""
    text = strip_cfg_test(strip_comments(path.read_text(encoding="utf-8")))
    prefixes = ["crate::"]
    if module in BINARY:
        prefixes = ["kaokore::", "crate::"]
    elif path.parent == src:
        prefixes.append("super::")
    else:
        depth = len(path.relative_to(src).parts) - 1
        if path.name != "mod.rs":
            depth += 1
        prefixes.append("super::" * depth)
    found = set()
    for prefix in prefixes:
        for m in re.finditer(r"(?<![A-Za-z0-9_:])" + re.escape(prefix), text):
            rest = text[m.end() :]
            if rest.startswith("{"):
                found.update(grouped_names(text, m.end()))
            else:
                name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
                if name:
                    found.add(name.group(0))
    return {n for n in found if n in LAYER_OF and n != module}


def main():
    src = Path(__file__).resolve().parent.parent / "src"
    edges = defaultdict(set)
    unknown = []
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.name == "lib.rs":
            continue
        module = rel.parts[0].removesuffix(".rs")
        if module not in LAYER_OF:
            unknown.append(str(rel))
            continue
        for target in imports(path, module, src):
            edges[(module, target)].add(str(rel))

    problems = []
    for name in unknown:
        problems.append(f"src/{name}: its module has no layer in scripts/check_layers.py")
    for (a, b), files in sorted(edges.items()):
        if LAYER_OF[b] > LAYER_OF[a]:
            problems.append(
                f"{a} (layer {LAYER_OF[a] + 1}, {LAYERS[LAYER_OF[a]][0]}) imports {b} "
                f"(layer {LAYER_OF[b] + 1}, {LAYERS[LAYER_OF[b]][0]}) in {', '.join(sorted(files))}"
            )
    # Cycles: strongly connected components of more than one module.
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(sorted(comp))

    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            visit(v)
    cycles = [c for c in comps if len(c) > 1]
    for c in cycles:
        problems.append("import cycle: " + ", ".join(c))

    file_edges = sum(len(f) for f in edges.values())
    print(
        f"check_layers: {len(edges)} module edges ({file_edges} file-to-module), "
        f"{sum(1 for a, b in edges if LAYER_OF[b] > LAYER_OF[a])} upward, "
        f"{len(cycles)} cycle(s)"
    )
    if "--graph" in sys.argv:
        for (a, b), files in sorted(edges.items()):
            print(f"  {a} -> {b}: {', '.join(sorted(files))}")
    for p in problems:
        print("check_layers: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
