"""The layer rule of ARCHITECTURE.md, enforced: an ast walk over tlssniff/ (imports inside
functions included) asserting that no module imports a layer above its own and that no
``_private`` name is imported from another package.

The layers, bottom up (a module may import its own layer and every layer below):

    0 base        tlssniff/__init__, _native, errors, units
    1 capture     frames from files and interfaces; link/IP/L4 decoding; the pcapng writer
    2 flow        bounded per-connection state (TCP and UDP tables, eviction, limits)
    3 tls         sans-IO TLS records, handshake tracker, wire numbers
    4 quic dtls starttls   the other handshake carriers, each on top of tls
    5 analysis    verdicts, classification, aggregation, diagnostics (and, for now, the
                  engine: pipeline, connection, parallel)
    6 verify      the tshark cross-check (the report bundle runs it)
    7 output      writers, table, dashboard, report bundle, the display rule, safe files;
      sources     the verdict files analyze reads back (tlssniff's own JSONL and Parquet)
    7.5 probe     the active probe (prints through output's display rule and safe files)
    7.7 run       the one place where sources, the engine and the sinks meet: sessions, the
                  file and live sources, the exit policy
    8 options commands cli   the command line

``tlssniff/testing`` (real-handshake generators for tests, scripts and benchmarks) is outside
the rule: it may import anything, and nothing in the package may import it.

ALLOWED lists today's exceptions, each with its reason; it may only shrink: an entry that no
longer occurs fails the test too, so fixing a violation means deleting its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tlssniff"

LAYERS = {
    "tlssniff": 0, "_native": 0, "errors": 0, "units": 0,
    "capture": 1,
    "flow": 2,
    "tls": 3,
    "quic": 4, "dtls": 4, "starttls": 4, "preamble": 4,
    "analysis": 5,
    "engine": 5.5,
    "verify": 6,
    "output": 7, "sources": 7,
    "probe": 7.5,
    "run": 7.7,
    "options": 8, "commands": 8, "cli": 8, "__main__": 8,
}

# (importing module, imported module): why it is still here.
ALLOWED: dict[tuple[str, str], str] = {
    # The UDP table picks the app of a new flow itself (QUIC Initial or DTLS ClientHello);
    # the TCP table takes an app factory from the engine instead. Giving the UDP table one
    # too needs the Analyzer (engine/pipeline.py) to pass it.
    ("tlssniff.flow.udp", "tlssniff.quic.connection"): "UDP app detection inside the table",
    ("tlssniff.flow.udp", "tlssniff.dtls.connection"): "UDP app detection inside the table",
}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tlssniff"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import of the file."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append((alias.name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            found.append((target, names, node.lineno))
    return found


def _resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """``from pkg import mod`` imports the module pkg.mod: resolve such names to modules."""
    out = []
    rest = []
    for n in names:
        if f"{target}.{n}" in modules:
            out.append((f"{target}.{n}", []))
        else:
            rest.append(n)
    if rest or not names:
        out.append((target, rest))
    return out


def _violations() -> tuple[list[str], list[str], set[tuple[str, str]]]:
    modules = _modules()
    upward, private, seen = [], [], set()
    for module, path in sorted(modules.items()):
        pkg = _package(module)
        if pkg == "testing":
            continue
        for target, names, line in _imports(module, path):
            if not target.startswith("tlssniff"):
                continue
            for mod, taken in _resolve(target, names, modules):
                tpkg = _package(mod)
                where = f"{path.relative_to(ROOT.parent)}:{line}"
                if tpkg == "testing":
                    upward.append(f"{where}: {module} imports the test helpers {mod}")
                    continue
                if LAYERS[tpkg] > LAYERS[pkg]:
                    if (module, mod) in ALLOWED:
                        seen.add((module, mod))
                    else:
                        upward.append(f"{where}: {module} (layer {pkg}) imports {mod} "
                                      f"(layer {tpkg}, above it)")
                if tpkg != pkg:
                    bad = [n for n in taken if n.startswith("_") and not n.endswith("__")]
                    if mod.rsplit(".", 1)[-1].startswith("_") and mod != "tlssniff._native":
                        bad.append(mod)
                    if bad:
                        private.append(f"{where}: {module} imports private {bad} from {mod}")
    return upward, private, seen


def test_every_package_has_a_layer():
    assert {_package(m) for m in _modules()} - {"testing"} <= set(LAYERS)


def test_nothing_imports_upward():
    upward, _, _ = _violations()
    assert not upward, "\n".join(upward)


def test_no_private_name_crosses_a_package():
    _, private, _ = _violations()
    assert not private, "\n".join(private)


def test_allow_list_only_shrinks():
    _, _, seen = _violations()
    stale = set(ALLOWED) - seen
    assert not stale, f"fixed, now delete from ALLOWED: {sorted(stale)}"


def test_the_walk_sees_function_level_imports(tmp_path):
    """The rule cannot pass by not looking: an import inside a function is found."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from tlssniff.output import formats\n")
    assert ("tlssniff.output", ["formats"], 2) in _imports("tlssniff.capture.m", src)
