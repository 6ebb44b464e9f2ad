#!/usr/bin/env python3
"""The layer rule, checked from the code's imports; exits 1 when it is broken.

The layers and their order come from one table: "The layers" in docs/architecture.md, top layer first, one row a
layer, its folders (or files) of src/ in backticks. The crate's own docs (the table in src/lib.rs) must name the
same layers in the same order. Then:
  - a layer imports only the layers below its row (folders in one row may import each other, without a circle);
  - no two files import each other, directly or round a longer circle (within a folder or across);
  - no file of src/ is longer than MAX_LINES lines (tests too): a longer one is cut where its parts are.
Imports are read from `use crate::...` / `super::...` (grouped or not) and `crate::x::` paths in code; test-only
files and `#[cfg(test)] mod tests` blocks are left out (tests may reach across layers). `--graph` prints the
folders' import graph."""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# Not part of the layered code: the binary's entry point and test-only modules.
LEFT_OUT = {"main.rs", "fuzz.rs", "tests.rs", "scripted.rs"}
# The longest a file of src/ may be.
MAX_LINES = 600


def table(text, heading, column):
    """The rows of the first markdown table after `heading`: for each, the src/ folders and files named in its
    `column` (doc comments' `//! ` taken off)."""
    body = text.split(heading, 1)[1]
    rows = []
    for line in body.splitlines():
        line = line.removeprefix("//! ")
        if not line.startswith("|"):
            if rows:
                break
            continue
        names = re.findall(r"`(?:src/)?([a-z_]+)(?:/|\.rs)?`", line.split("|")[column])
        names = [n for n in names if (SRC / n).is_dir() or (SRC / f"{n}.rs").exists()]
        if names:
            rows.append(names)
    return rows


def strip_tests(text):
    """The code without its test module and without comments (docs may name anything)."""
    i = text.find("#[cfg(test)]\nmod tests")
    text = text if i < 0 else text[:i]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def paths(text):
    """Every `crate::a::b` and `super::a` path the code uses, grouped imports spread out, as lists of names."""
    found = []

    def spread(prefix, body):
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
            it = it.strip()
            m = re.match(r"((?:[a-z_]+::)*)\{(.*)\}$", it, re.S)
            if m:
                spread(prefix + [p for p in m.group(1).split("::") if p], m.group(2))
            elif it:
                found.append(prefix + [p for p in re.split(r"::", it.split(" as ")[0]) if p])

    for root in ("crate", "super"):
        for m in re.finditer(rf"\b{root}((?:::[a-zA-Z_]+)*)::\{{", text):
            start = m.end()
            depth, i = 1, start
            while depth and i < len(text):
                depth += text[i] == "{"
                depth -= text[i] == "}"
                i += 1
            spread([root] + [p for p in m.group(1).split("::") if p], text[start:i - 1])
        for m in re.finditer(rf"\b{root}((?:::[a-zA-Z_]+)+)", text):
            found.append([root] + [p for p in m.group(1).split("::") if p])
    return found


def module_file(parts):
    """The source file of the longest module prefix of `parts` (names under src/), if any."""
    best = None
    here = SRC
    for p in parts:
        if (here / f"{p}.rs").exists():
            best = here / f"{p}.rs"
        elif (here / p / "mod.rs").exists():
            best = here / p / "mod.rs"
        else:
            break
        here = here / p
    return best


def module_of(path):
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    return parts[:-1] if parts[-1] == "mod" else parts


def file_imports(path, text):
    me = module_of(path)
    # `super` of a file is its folder's module; of a mod.rs, the folder above.
    parent = me[:-1]
    out = set()
    for p in paths(text):
        if p[0] == "crate":
            target = module_file(p[1:])
        else:
            up = parent
            rest = p[1:]
            while rest and rest[0] == "super":
                up, rest = up[:-1], rest[1:]
            target = module_file(up + rest) if rest else None
        if target and target != path:
            out.add(target)
    return out


def layer_of(path):
    return path.relative_to(SRC).parts[0].removesuffix(".rs")


def circles(graph):
    """Tarjan's strongly connected components of more than one node."""
    index, low, on, stack, found, n = {}, {}, set(), [], [], [0]

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
                found.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    problems = []
    rows = table((ROOT / "docs" / "architecture.md").read_text(), "## The layers", 2)
    lib_rows = table((SRC / "lib.rs").read_text(), "The layers, top first", 2)
    if [sorted(r) for r in rows] != [sorted(r) for r in lib_rows]:
        problems.append(f"src/lib.rs's layer table {lib_rows} is not docs/architecture.md's {rows}")
    row_of = {name: i for i, row in enumerate(rows) for name in row}

    for path in sorted(SRC.rglob("*.rs")):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            problems.append(f"{path.relative_to(ROOT)}: {n} lines, over {MAX_LINES}")

    files = {}
    for path in sorted(SRC.rglob("*.rs")):
        if path.name in LEFT_OUT or path.parent == SRC and path.name == "lib.rs":
            continue
        files[path] = file_imports(path, strip_tests(path.read_text()))

    folders = {}
    for path, deps in files.items():
        me = layer_of(path)
        if me not in row_of:
            problems.append(f"{me}: a layer that docs/architecture.md's table does not name")
            continue
        for dep in deps:
            other = layer_of(dep)
            if other == me:
                continue
            folders.setdefault(me, set()).add(other)
            if row_of.get(other, -1) < row_of[me]:
                problems.append(f"{path.relative_to(ROOT)} imports {dep.relative_to(ROOT)}: layer {other} is not "
                                f"below {me}")
    for c in circles(folders):
        problems.append("folders import each other: " + " <-> ".join(c))
    for c in circles(files):
        problems.append("files import each other: " + " <-> ".join(str(p.relative_to(ROOT)) for p in c))

    if "--graph" in sys.argv:
        for k in sorted(folders):
            print(f"{k:10} -> {', '.join(sorted(folders[k]))}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
