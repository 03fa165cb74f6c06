"""Findings and figures of every shipped capture stay what they are (tests/data/golden/).

Each capture in captures/ is analyzed with ``-f json``; the document (version and paths
stripped: tests/golden.py) must equal its golden file exactly: verdicts, per-server figures,
totals, counters, findings and diagnostics. A refactoring that changes one of them fails here;
an intended change rewrites the files with ``python scripts/make_golden.py``.
"""

from __future__ import annotations

import json

import pytest

from tests.golden import GOLDEN, analyze_json, golden_path, shipped_captures

CAPTURES = shipped_captures()


def test_every_capture_has_a_golden_file():
    assert len(CAPTURES) > 100
    want = {golden_path(c).name for c in CAPTURES}
    have = {p.name for p in GOLDEN.glob("*.json")}
    assert want == have, (sorted(want - have)[:5], sorted(have - want)[:5])


def test_golden_files_are_not_empty():
    """A golden file of no connections everywhere would pin nothing."""
    docs = [json.loads(golden_path(c).read_text()) for c in CAPTURES]
    assert sum(len(d["document"].get("connections", [])) for d in docs) > 250
    assert sum(len(d["document"].get("findings", [])) for d in docs) > 10


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: golden_path(p).stem)
def test_analyze_json_equals_golden(capture, tmp_path):
    want = json.loads(golden_path(capture).read_text())
    got = json.loads(json.dumps(analyze_json(capture, tmp_path)))
    assert got["exit_code"] == want["exit_code"]
    for key in sorted(set(got["document"]) | set(want["document"])):
        assert got["document"].get(key) == want["document"].get(key), key
