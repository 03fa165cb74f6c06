"""Outputs on an egress-shaped capture (many servers, most seen once): the table's top rows
and the exact remainder, the bounded per-server rows of -f json, and every format agreeing.

The capture is made by tlssniff.testing.egress from real handshakes (Python ssl), re-addressed
per connection; its truth is the number of connections per verdict.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter

import pytest

from tests.conftest import run_tlssniff
from tlssniff.testing import egress

FIGURES = ("handshakes", "classified", "resumed", "offered", "accepted", "refused", "hrr",
           "early_data_offered")


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("egress") / "egress.pcap"
    summary = egress.generate(path, 1500, 1200, seed=7, rate=2000.0)
    assert summary.connections == 1500 and summary.servers > 1000
    return path, json.loads(path.with_name("egress.truth.json").read_text())


def _truth_counts(truth: dict) -> Counter:
    return Counter({(t["version"], t["offered"], t["handshake"], t["hrr"], t["early_data"]):
                    t["connections"] for t in truth["verdicts"]})


def _counts(records) -> Counter:
    return Counter((r["version"], r["offered"], r["handshake"], r["hrr"], r["early_data"])
                   for r in records)


def test_json_rows_are_bounded_and_add_up_to_the_totals(capture, tmp_path):
    path, truth = capture
    out = tmp_path / "a.json"
    run_tlssniff("analyze", str(path), "-f", "json", "--max-servers", "100", "-o", str(out))
    doc = json.loads(out.read_text())
    assert _counts(doc["connections"]) == _truth_counts(truth)
    assert len(doc["servers"]) == 100
    other = doc["other_servers"]
    for name in FIGURES:
        assert sum(s[name] for s in doc["servers"]) + other[name] == doc["totals"][name], name
    distinct = len({(c["server"], c["sni"]) for c in doc["connections"]})
    assert abs(other["servers_estimate"] + 100 - distinct) <= 0.03 * distinct
    # every server with more than 1500 / 100 connections has its own row
    per = Counter((c["server"], c["sni"]) for c in doc["connections"])
    rows = {(s["server"], s["sni"]): s for s in doc["servers"]}
    for key, n in per.items():
        if n > 15:
            assert key in rows, key
    for key, s in rows.items():
        assert s["handshakes"] <= per[key] <= s["handshakes"] + s.get("untracked", 0)


def test_json_without_a_bound_has_every_server(capture, tmp_path):
    path, _ = capture
    out = tmp_path / "b.json"
    run_tlssniff("analyze", str(path), "-f", "json", "--max-servers", "0", "-o", str(out))
    doc = json.loads(out.read_text())
    per = Counter((c["server"], c["sni"]) for c in doc["connections"])
    assert "other_servers" not in doc
    assert {(s["server"], s["sni"]): s["handshakes"] for s in doc["servers"]} == dict(per)


def test_table_shows_the_top_servers_and_the_rest_in_one_row(capture, tmp_path):
    path, _ = capture
    out = tmp_path / "t.txt"
    run_tlssniff("analyze", str(path), "--top", "5", "-o", str(out))
    text = out.read_text()
    ref = tmp_path / "all.json"
    run_tlssniff("analyze", str(path), "-f", "json", "-o", str(ref))
    doc = json.loads(ref.read_text())
    top = doc["servers"][:5]
    first_cells = [line.split("│")[1].strip() for line in text.splitlines()
                   if line.startswith("│") and line.split("│")[2].strip()]
    assert first_cells[:5] == [s["server"] for s in top]
    rest = re.search(r"│ ([\d,]+) other servers +│ +(\d+) │", text)
    assert rest, text
    n_rest = int(rest.group(1).replace(",", ""))
    assert n_rest == len(doc["servers"]) - 5
    assert int(rest.group(2)) == doc["totals"]["handshakes"] - sum(s["handshakes"] for s in top)
    assert "the 5 busiest of" in text and "--top 0" in text


def test_every_format_reports_the_same_connections(capture, tmp_path):
    path, truth = capture
    want = _truth_counts(truth)
    lines = run_tlssniff("analyze", str(path), "-f", "jsonl", "--max-servers", "50").stdout
    assert _counts(json.loads(line) for line in lines.splitlines()) == want
    rows = list(csv.DictReader(io.StringIO(
        run_tlssniff("analyze", str(path), "-f", "csv", "--max-servers", "50").stdout)))
    for r in rows:
        r["hrr"] = r["hrr"] == "True"
    assert _counts(rows) == want
    ecs = [json.loads(line) for line in run_tlssniff(
        "analyze", str(path), "-f", "ecs", "--max-servers", "50").stdout.splitlines()]
    assert len(ecs) == sum(want.values())
