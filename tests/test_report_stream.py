"""``report`` keeps its verdicts on disk (output/report/spool.py), not in memory: the bundle
written from the spool is the bundle written from a list of the same verdicts, byte for byte
(handshakes.jsonl, evidence.pcapng, the charts, summary.json)."""

from __future__ import annotations

import json
import pickle
import re

import pytest

from tests.conftest import CAPTURES
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.analysis.diagnostics import Diagnostics
from tlssniff.engine.parallel import analyze_captures
from tlssniff.output.report import write_bundle
from tlssniff.output.report.spool import BATCH, VerdictSpool

CASES = ["demo.pcapng", "diagnostics/key-rotation.pcap", "diagnostics/clients.pcap",
         "diagnostics/concurrent-nginx.pcap"]


def _verdicts(path) -> list:
    out: list = []
    analyze_captures([str(path)], out.append)
    return out


def test_spool_replays_every_verdict_in_order_as_often_as_asked():
    verdicts = _verdicts(CAPTURES / "demo.pcapng")
    many = verdicts * (2 * BATCH // len(verdicts) + 3)  # several batches and a partial one
    with VerdictSpool() as spool:
        for v in many[:BATCH + 5]:
            spool.append(v)
        first = [pickle.dumps(v) for v in spool]
        for v in many[BATCH + 5:]:  # appending after a replay goes on where it stopped
            spool.append(v)
        assert len(spool) == len(many)
        for _ in range(2):
            assert [pickle.dumps(v) for v in spool] == [pickle.dumps(v) for v in many]
        assert first == [pickle.dumps(v) for v in many[:BATCH + 5]]


@pytest.mark.parametrize("name", CASES)
def test_bundle_from_the_spool_equals_the_bundle_from_a_list(name, tmp_path):
    path = CAPTURES / name
    verdicts = _verdicts(path)
    assert verdicts
    dirs = {}
    for how in ("list", "spool"):
        agg, diag = Aggregator(), Diagnostics()
        for v in verdicts:
            agg.add(v)
            diag.add(v)
        source = verdicts
        if how == "spool":
            source = VerdictSpool()
            for v in verdicts:
                source.append(v)
        out = dirs[how] = tmp_path / how
        write_bundle(out, source, agg, diag, {}, [str(path)], ["tlssniff", "report"],
                     cross_check=False, started=1.0)
    a, b = dirs["list"], dirs["spool"]
    for f in ("handshakes.jsonl", "evidence.pcapng"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa == sb
    svg = re.compile(r"<svg.*?</svg>", re.S)
    ha, hb = ((d / "report.html").read_text() for d in (a, b))
    assert svg.findall(ha) == svg.findall(hb)
    assert sa["counts"]["evidence"]["cited"] + sa["counts"]["evidence"]["sampled"] > 0
