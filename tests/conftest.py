"""Shared test helpers: run the real CLI and read its JSONL output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"
PUBLIC = CAPTURES / "public"  # copied from the project's shared corpus; sources in its README.md

VERDICT_FIELDS = ("sni", "version", "offered", "handshake", "resumed", "hrr", "early_data", "note",
                  "preamble", "proxied_client")


def run_tlssniff(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m tlssniff ARGS`` as a user would; return the completed process."""
    proc = subprocess.run(
        [sys.executable, "-m", "tlssniff", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"tlssniff {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
            f"stderr:\n{proc.stderr}"
        )
    return proc


def analyze_jsonl(*paths: str | Path, extra: tuple[str, ...] = ()) -> list[dict]:
    """Every TLS connection tlssniff reports for the given captures, as JSONL objects."""
    proc = run_tlssniff("analyze", *map(str, paths), "--format", "jsonl", *extra)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def by_endpoints(records: list[dict]) -> dict[tuple[str, str], dict]:
    """Index JSONL records by (client, server); duplicates are a test failure."""
    out: dict[tuple[str, str], dict] = {}
    for rec in records:
        key = (rec["client"], rec["server"])
        assert key not in out, f"two records for {key}"
        out[key] = rec
    return out


def assert_verdicts(records: list[dict], truth: list[dict]) -> None:
    """Every truth entry matches a record on each field it names, and no record is extra."""
    got = by_endpoints(records)
    want = {(t["client"], t["server"]): t for t in truth}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing, f"connections not reported: {missing[:10]}"
    assert not extra, f"connections reported that the truth does not list: {extra[:10]}"
    wrong = []
    for key, t in want.items():
        for name in VERDICT_FIELDS:
            if name in t and got[key].get(name) != t[name]:
                wrong.append(f"{key} {name}: got {got[key].get(name)!r}, want {t[name]!r}")
    assert not wrong, "\n".join(wrong[:30])


@pytest.fixture
def tmp_capture_dir(tmp_path: Path) -> Path:
    return tmp_path
