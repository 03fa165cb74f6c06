"""No module-level mutable state, except the bounded caches and import-time registries listed
here (with why).

A module-level container that code changes is state shared by every Analyzer, every test and
every --jobs worker of a process: results would depend on what ran before. The hot path keeps a
few caches of pure functions (the same input always gives the same text), each bounded, and the
verdict-file readers register themselves at import: those are listed in ``CACHES``, which can
only shrink (an entry no longer found fails the test).
Found from the source: a module-level name bound to a container (or an object) that some
function of the module changes (item or attribute assignment, a mutating method, ``global``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "tlssniff"

# (module, name): why it may be changed at run time.
CACHES: dict[tuple[str, str], str] = {
    ("tlssniff.capture.decode", "_IP_TEXT"): "address text per packed address, cleared at "
    "65,536 entries",
    ("tlssniff.tls.ja4", "_CACHE"): "JA4 per hello's wire lists, cleared at _CACHE_MAX",
    ("tlssniff.tls.ja4", "_PAIRS"): "JA4 pair per hello's wire lists, cleared at _CACHE_MAX",
    ("tlssniff.analysis.classify", "_SHORT_HASHES"): "short SHA-256 text per ticket or PSK "
    "identity, cleared at 4,096 entries",
    ("tlssniff.analysis.verdict", "_LAST_SECOND"): "the JSONL text of the last timestamp's "
    "second (one entry)",
    ("tlssniff.analysis.verdict", "_OWN_TEXT"): "JSON text of names tlssniff makes (versions, "
    "ciphers, JA4), bounded",
    ("tlssniff.analysis.verdict", "_WIRE_TEXT"): "JSON text of SNI and ALPN values, bounded",
    ("tlssniff.analysis.verdict", "_CAPTURE_TEXT"): "JSON text of capture paths, bounded",
    ("tlssniff.analysis.verdict", "_OUTCOME_TEXT"): "JSONL text of each combination of the "
    "verdict's enums and flags (at most 240)",
    ("tlssniff.probe.selfcheck", "_unavailable"): "why the probe's self-check cannot run, "
    "found once per process",
    ("tlssniff.testing.handshakes", "_CLIENT_CONTEXTS"): "test-capture generator: one "
    "ssl.SSLContext per client profile",
    ("tlssniff.sources", "MAGIC"): "the verdict file formats' first bytes, registered at import",
    ("tlssniff.sources", "READERS"): "the verdict file formats' readers, registered at import",
}

_MUTATING = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem",
             "clear", "remove", "discard", "move_to_end", "appendleft", "__setitem__"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _mutated_params(tree: ast.Module) -> dict[str, set[int]]:
    """Module-level function -> the positions of the parameters it changes (a cache table
    handed to a helper, ``_encoded_once(_TABLE, s)``, is still the module's state)."""
    out = {}
    for fn in tree.body:
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = [a.arg for a in fn.args.args]
            hit = _changed_in(fn, set(params))
            out[fn.name] = {i for i, name in enumerate(params) if name in hit}
    return out


def _changed_names(tree: ast.Module) -> set[str]:
    """Module-level names some function of the module changes."""
    top = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        top |= {t.id for t in targets if isinstance(t, ast.Name)}
    helpers = _mutated_params(tree)
    changed = set()
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
        changed |= _changed_in(fn, top - local)
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                for i in helpers.get(node.func.id, ()):
                    if i < len(node.args) and isinstance(node.args[i], ast.Name) and \
                            node.args[i].id in top - local:
                        changed.add(node.args[i].id)
    return changed


def _changed_in(fn: ast.FunctionDef | ast.AsyncFunctionDef, names: set[str]) -> set[str]:
    """Which of ``names`` the body of ``fn`` changes (directly, or through a local alias)."""
    alias = {}  # local name -> the name it was given (``last = _LAST_SECOND``)
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and \
                node.value.id in names:
            alias.update({t.id: node.value.id for t in node.targets if isinstance(t, ast.Name)})

    def named(expr: ast.expr) -> str | None:
        if isinstance(expr, ast.Name):
            return alias.get(expr.id, expr.id if expr.id in names else None)
        return None

    changed: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Global):
            changed |= set(node.names) & names
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) \
                else [node.target]
            changed |= {n for t in targets if isinstance(t, (ast.Subscript, ast.Attribute))
                        for n in [named(t.value)] if n is not None}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in _MUTATING:
            n = named(node.func.value)
            if n is not None:
                changed.add(n)
    return changed


def _found() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found |= {(_module_name(path), name) for name in _changed_names(tree)}
    return found


def test_no_module_level_state_but_the_listed_caches():
    found = _found()
    extra = sorted(found - set(CACHES))
    assert not extra, (f"module-level state changed at run time: {extra}; keep it in an "
                       "object, or list a bounded cache in CACHES with why")
    gone = sorted(set(CACHES) - found)
    assert not gone, f"no longer module state, remove from CACHES: {gone}"


def test_the_rule_finds_what_it_is_meant_to():
    tree = ast.parse(
        "SEEN = {}\nLIMIT = 3\nNAMES = []\nclass C:\n    pass\nSTATE = C()\n"
        "def f(k):\n    SEEN[k] = 1\n"
        "def g():\n    NAMES.append(1)\n"
        "def h():\n    global LIMIT\n    LIMIT = 4\n"
        "def i():\n    STATE.x = 1\n"
        "def j(NAMES):\n    NAMES.append(2)\n"  # a parameter, not the module's name
        "def k():\n    return SEEN.get(1)\n"
        "ALIASED = C()\ndef m():\n    last = ALIASED\n    last.y = 2\n"
        "HANDED = {}\ndef put(table, k):\n    table[k] = 1\ndef n():\n    put(HANDED, 1)\n")
    assert _changed_names(tree) == {"SEEN", "NAMES", "LIMIT", "STATE", "ALIASED", "HANDED"}
