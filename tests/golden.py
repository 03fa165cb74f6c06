"""Golden outputs: ``analyze -f json`` of every capture in captures/, stripped of what varies.

``tests/test_golden.py`` compares today's output with the files in ``tests/data/golden/``;
``python scripts/make_golden.py`` rewrites them (only when a change of findings or figures is
intended: the diff of the golden files is then the review of that change).
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"
GOLDEN = REPO / "tests" / "data" / "golden"
SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")


def shipped_captures() -> list[Path]:
    """Every capture file in captures/, in a stable order."""
    return sorted(p for p in CAPTURES.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def golden_path(capture: Path) -> Path:
    rel = capture.relative_to(CAPTURES).as_posix()
    return GOLDEN / (rel.replace("/", "__") + ".json")


def strip(doc: dict, capture: str) -> dict:
    """The document without what depends on the installation or the path of the clone: the
    version, and the capture's path wherever it appears (connections, findings' evidence)."""
    doc = dict(doc)
    doc.pop("tlssniff", None)
    doc.pop("captures", None)

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str) and capture in x:
            return x.replace(capture, "CAPTURE")
        return x

    return walk(doc)


def analyze_json(capture: Path, tmp: Path) -> dict:
    """``tlssniff analyze CAPTURE -f json`` run in this process: its stripped document and the
    exit code (a damaged capture still writes what came before the damage)."""
    from typer.testing import CliRunner

    from tlssniff.cli import app

    out = tmp / "out.json"
    result = CliRunner().invoke(app, ["analyze", str(capture), "-f", "json", "-q",
                                      "--no-progress", "-o", str(out)])
    doc = json.loads(out.read_text()) if out.exists() and out.stat().st_size else {}
    exit_code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exit_code = getattr(result.exception, "exit_code", "exception: "
                            + type(result.exception).__name__)
    return {"exit_code": exit_code, "document": strip(doc, str(capture))}


def dumps(obj: dict) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"
