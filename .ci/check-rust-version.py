"""The workspace's declared rust-version must be at least every dependency's.

Reads `cargo metadata` (the locked graph, all features) on stdin. A cheap stand-in for building
with the declared toolchain: a dependency that needs a newer compiler than we declare makes the
declaration false, whatever our own code needs.
"""
import json
import sys


def key(v):
    return tuple(int(p) for p in v.split("."))


meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"workspace members declare different rust-versions: {sorted(map(str, ours))}")
declared = ours.pop()
need = [
    (key(p["rust_version"]), p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members and p.get("rust_version")
]
need.sort(reverse=True)
worst = need[0]
if worst[0] > key(declared):
    sys.exit(
        f"rust-version = \"{declared}\" is false: {worst[1]} {worst[2]} needs {worst[3]}"
        " (Cargo.toml [workspace.package])"
    )
print(f"rust-version {declared} covers every dependency (highest: {worst[1]} {worst[2]}, {worst[3]})")
