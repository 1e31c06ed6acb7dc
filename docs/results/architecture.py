"""Import structure of edgeslim's crates: lines per crate, the crate dependency graph, and the
module cycles inside each crate (docs/results/architecture.md; run by architecture.sh).

A cycle is counted between sibling modules: `a` and `b` under the same parent are in a cycle
when some file inside `a` names something inside `b` and the other way round (through
`crate::`, `super::` or `self::` paths). A parent re-exporting its children, or a child using
its parent's items, is containment, not a cycle between siblings, and is not counted.
"""
import json, os, re, subprocess, sys
from collections import defaultdict

root = sys.argv[1] if len(sys.argv) > 1 else "."


def rs_files(src):
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def module_path(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("lib", "main", "mod"):
        rel = rel[:-1]
    return tuple(rel)


def crate_cycles(src):
    files = {module_path(src, p): p for p in rs_files(src)}
    mods = set(files)
    # Names a module re-exports from a child (`pub use error::{Error, Result}` at the root):
    # `crate::Error` is then a use of the child `error`.
    reexports = {}
    for m, p in files.items():
        text = open(p, encoding="utf-8").read()
        for r in re.finditer(r"pub use (?:self::)?(\w+)::(?:\{([^}]*)\}|(\w+))", text):
            child = m + (r.group(1),)
            if child not in mods:
                continue
            for name in re.findall(r"\w+", r.group(2) or r.group(3)):
                reexports[(m, name)] = child
    edges = defaultdict(set)  # parent -> {(a, b)} between its children a, b
    for m, p in files.items():
        text = open(p, encoding="utf-8").read()
        text = re.sub(r"//[^\n]*", "", text)  # comments name paths without using them
        refs = [r.group(1) for r in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text)]
        for g in re.finditer(r"\b(crate|super)::\{([^}]*)\}", text):
            refs += [g.group(1) + "::" + n for n in re.findall(r"\b\w+\b", g.group(2))]
        for ref_text in refs:
            parts = ref_text.split("::")
            base = list(m) if not p.endswith(("mod.rs", "lib.rs", "main.rs")) else list(m) + ["_"]
            if parts[0] == "crate":
                path, rest = [], parts[1:]
            else:
                path, rest = base[:-1], parts[1:]  # `self` is the file's module
                if parts[0] == "self":
                    path = base[:-1] if base[-1] == "_" else list(m)
                    path = list(m)
                while rest and rest[0] == "super":
                    path, rest = path[:-1], rest[1:]
                if parts[0] == "super":
                    path = list(m)[:-1]
                    r = parts[1:]
                    while r and r[0] == "super":
                        path, r = path[:-1], r[1:]
                    rest = r
            target = tuple(path)
            for seg in rest:
                if target + (seg,) in mods:
                    target = target + (seg,)
                elif (target, seg) in reexports:
                    target = reexports[(target, seg)]
                    break
                else:
                    break
            # The siblings under the deepest common parent.
            k = 0
            while k < min(len(m), len(target)) and m[k] == target[k]:
                k += 1
            if k < len(m) and k < len(target):
                edges[m[:k]].add((m[k], target[k]))
    cycles = []
    for parent, es in edges.items():
        graph = defaultdict(set)
        for a, b in es:
            graph[a].add(b)
        cycles += [("/".join(parent) + "/" if parent else "") + " <-> ".join(sorted(c))
                   for c in sccs(graph) if len(c) > 1]
    return sorted(cycles)


def sccs(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}

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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


meta = json.loads(subprocess.run(
    ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"],
    cwd=root, capture_output=True, text=True, check=True).stdout)
names = {p["name"] for p in meta["packages"]}
print("crate | lines of Rust | depends on (workspace crates) | module cycles")
print("---|---|---|---")
total = 0
for p in sorted(meta["packages"], key=lambda p: p["manifest_path"]):
    src = os.path.dirname(p["manifest_path"])
    lines = 0
    for sub in ("src", "examples", "tests", "benches"):
        d = os.path.join(src, sub)
        if os.path.isdir(d):
            lines += sum(sum(1 for _ in open(f, encoding="utf-8")) for f in rs_files(d))
    total += lines
    deps = sorted(d["name"] for d in p["dependencies"] if d["name"] in names and d["kind"] is None)
    cyc = crate_cycles(os.path.join(src, "src"))
    print(f"{p['name']} | {lines} | {', '.join(deps) or '—'} | {'; '.join(cyc) or 'none'}")
print(f"total | {total} | |")
