"""The shipped captures: tlssniff's verdicts must equal each capture's truth file.

Each ``captures/NAME.truth.jsonl`` lists every TLS connection of ``captures/NAME.pcap`` (or
``.pcapng``) as the clients themselves reported it (``scripts/make_captures.py`` made both and
checked the truth against tshark's dissection of the hellos).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, analyze_jsonl, assert_verdicts

TRUTHS = sorted(CAPTURES.glob("*.truth.jsonl"))


def _capture_for(truth: Path) -> Path:
    stem = truth.name.removesuffix(".truth.jsonl")
    found = [p for p in (CAPTURES / f"{stem}.pcap", CAPTURES / f"{stem}.pcapng") if p.exists()]
    assert len(found) == 1, f"{truth.name}: expected exactly one capture, found {found}"
    return found[0]


def _read_truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_captures_are_shipped():
    names = {p.name.removesuffix(".truth.jsonl") for p in TRUTHS}
    assert {"openssl-tls12", "openssl-tls13", "nginx", "python-ssl", "demo"} <= names


@pytest.mark.parametrize("truth", TRUTHS, ids=lambda p: p.name.removesuffix(".truth.jsonl"))
def test_verdicts_match_truth(truth: Path):
    assert_verdicts(analyze_jsonl(_capture_for(truth)), _read_truth(truth))


def test_demo_exercises_every_verdict():
    """The README's first command runs on demo.pcapng; it must show every kind of verdict."""
    truth = _read_truth(CAPTURES / "demo.truth.jsonl")
    pairs = {(t["offered"], t["handshake"]) for t in truth}
    for pair in [
        ("none", "full"),
        ("session_id", "session_id"),
        ("ticket", "ticket"),
        ("psk", "psk"),
        ("session_id", "full"),  # refused offers
        ("ticket", "full"),
        ("psk", "full"),
    ]:
        assert pair in pairs, f"demo lacks offered={pair[0]} handshake={pair[1]}"
    assert any(t["hrr"] for t in truth)
    assert {"none", "offered", "rejected"} <= {t["early_data"] for t in truth}
    assert any(t["client"].startswith("[") for t in truth), "no IPv6 connection"
    assert any(t["sni"] is None for t in truth) and any(t["sni"] for t in truth)


def test_demo_is_the_union_of_the_others():
    """demo.pcapng is a merge; analyzing the parts together gives the same verdicts."""
    parts = [t for t in TRUTHS if t.name != "demo.truth.jsonl"]
    combined = [rec for t in parts for rec in _read_truth(t)]
    assert_verdicts(analyze_jsonl(*map(_capture_for, parts)), combined)
