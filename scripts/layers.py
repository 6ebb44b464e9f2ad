#!/usr/bin/env python3
"""Prints the import graph between src/'s top-level folders (layers) and its cycles; exits 1 on a cycle.
Imports are read from `use crate::...` (grouped or not) and `crate::x::` paths in code; test-only modules and
`#[cfg(test)] mod tests` blocks are left out (tests may reach across layers)."""
import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def layer_of(path):
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def strip_tests(text):
    """The code without its test module and without comments (docs may name any layer)."""
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def imports(text):
    found = set(re.findall(r"\bcrate::([a-z_]+)", text))
    for body in re.findall(r"\bcrate::\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}", text, re.S):
        depth, item, items = 0, "", []
        for ch in body:
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                items.append(item)
                item = ""
            else:
                item += ch
        items.append(item)
        for it in items:
            m = re.match(r"\s*([a-z_]+)", it)
            if m:
                found.add(m.group(1))
    return found


graph = {}
for path in SRC.rglob("*.rs"):
    if path.name in ("main.rs", "fuzz.rs", "tests.rs", "scripted.rs"):
        continue
    me = layer_of(path)
    deps = {d for d in imports(strip_tests(path.read_text())) if (SRC / d).is_dir() or (SRC / f"{d}.rs").exists()}
    deps.discard(me)
    graph.setdefault(me, set()).update(deps)

for k in sorted(graph):
    print(f"{k:10} -> {', '.join(sorted(graph[k]))}")

# Tarjan's strongly connected components.
index, low, on, stack, sccs, n = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = n[0]
    n[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph.get(v, ()):
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
        if len(comp) > 1:
            sccs.append(sorted(comp))


for v in list(graph):
    if v not in index:
        visit(v)
for c in sccs:
    print("cycle:", " <-> ".join(c))
sys.exit(1 if sccs else 0)
