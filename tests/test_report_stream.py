"""``report`` keeps its verdicts on disk (output/report/spool.py), not in memory: the bundle
written from either spool (whole verdicts; or handshakes.jsonl written during the analysis
plus rows) is the bundle written from a list of the same verdicts, byte for byte
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
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Note, Offered
from tlssniff.output.files import OutputDir
from tlssniff.output.report import write_bundle
from tlssniff.output.report.spool import BATCH, LineSpool, VerdictSpool, verdict_of_line

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
    for how in ("list", "spool", "lines"):
        agg, diag = Aggregator(), Diagnostics()
        for v in verdicts:
            agg.add(v)
            diag.add(v)
        out = dirs[how] = tmp_path / how
        args = (agg, diag, {}, [str(path)], ["tlssniff", "report"])
        if how == "lines":  # as ``tlssniff report`` runs: the lines written as they come
            with OutputDir(out) as odir:
                with odir.open("handshakes.jsonl", "wb") as f:
                    lines = LineSpool(f)
                    for v in verdicts:
                        lines.append(v)
                    lines.close_lines()
                lines.reopen(odir.read_back("handshakes.jsonl"))
                with lines:
                    write_bundle(odir, lines, *args, cross_check=False, started=1.0)
            continue
        source = verdicts
        if how == "spool":
            source = VerdictSpool()
            for v in verdicts:
                source.append(v)
        write_bundle(out, source, *args, cross_check=False, started=1.0)
    a = dirs["list"]
    svg = re.compile(r"<svg.*?</svg>", re.S)
    sa = json.loads((a / "summary.json").read_text())
    for b in (dirs["spool"], dirs["lines"]):
        for f in ("handshakes.jsonl", "evidence.pcapng"):
            assert (a / f).read_bytes() == (b / f).read_bytes(), (b, f)
        sb = json.loads((b / "summary.json").read_text())
        prov = [json.loads((d / "provenance.json").read_text())["files"] for d in (a, b)]
        assert sa == sb
        assert prov[0] == prov[1]
        ha, hb = ((d / "report.html").read_text() for d in (a, b))
        assert svg.findall(ha) == svg.findall(hb)
    assert sa["counts"]["evidence"]["cited"] + sa["counts"]["evidence"]["sampled"] > 0


def test_a_verdict_read_back_from_its_line_is_the_verdict():
    """LineSpool fetches the evidence's verdicts from handshakes.jsonl: every field comes back,
    hostile text included (an SNI longer than a verdict file may hold, controls, quotes, lone
    surrogates), the timestamps to the microsecond the line holds."""
    hostile = "\x1b]8;;x\x07\"\\\u202e\udcff" + "a" * 5000
    v = ConnectionVerdict(ts=1700000000.1234567, client="10.0.0.1:5", server="[::1]:443",
                          sni=hostile, alpn="h2\n", alpn_offered=["h2", "\x00"],
                          offered=Offered.TICKET, handshake=Handshake.TICKET, note=Note.GAP,
                          frames=[1, 2, 3], capture="x\ny.pcap", ticket_lifetime=7200,
                          client_hello_ts=1700000000.0000004)
    w = verdict_of_line(v.to_json_line().encode())
    assert w.to_json_line() == v.to_json_line()
    assert w.sni == hostile and w.frames == [1, 2, 3] and w.note is Note.GAP
    d = v.to_dict()
    assert w.ts == d["ts"] == 1700000000.123457 and w.client_hello_ts == d["client_hello_ts"]


@pytest.mark.parametrize("name", CASES + ["partitions/sid-refused-tls13-client.pcap", "python-ssl.pcapng"])
@pytest.mark.parametrize("first", [1, 3, None])
def test_evidence_stops_reading_once_every_chosen_connection_is_complete(name, first,
                                                                         monkeypatch):
    """collect() stops walking the capture when no later frame can be taken: the frames it
    attaches are those of a walk over the whole capture (the first connections of the capture
    chosen, or all of them)."""
    from tlssniff.output.report import evidence

    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"{name} is not in captures/")
    verdicts = _verdicts(path)[:first]

    def chosen():
        return [evidence.Chosen(v, "", False) for v in verdicts]

    stopped = []

    class Recorded(Exception):
        def __init__(self) -> None:
            stopped.append(True)

    monkeypatch.setattr(evidence, "_AllFound", Recorded)
    fast = chosen()
    evidence.collect([str(path)], fast)
    monkeypatch.setattr(evidence, "_complete", lambda c: False)  # never stops
    full = chosen()
    evidence.collect([str(path)], full)
    assert [c.frames for c in fast] == [c.frames for c in full]
    assert sum(len(c.frames) for c in fast) > 0
    if first == 1 and len(_verdicts(path)) > 3:
        assert stopped  # the rest of the capture was not read


@pytest.mark.parametrize("name", ["demo.pcapng", "diagnostics/concurrent-nginx.pcap"])
def test_charts_drawn_in_the_background_are_the_charts_drawn_here(name, tmp_path):
    """The bundle draws its charts in a forked child (html.ChartsInBackground) while it writes
    the rest: report.html is the one drawing them in this process gives, byte for byte."""
    from tlssniff.output.report import html

    path = CAPTURES / name
    verdicts = _verdicts(path)
    agg, diag = Aggregator(), Diagnostics()
    for v in verdicts:
        agg.add(v)
        diag.add(v)
    write_bundle(tmp_path / "b", verdicts, agg, diag, {}, [str(path)], ["tlssniff", "report"],
                 cross_check=False, started=1.0)
    inputs = html.chart_inputs(verdicts_store(verdicts), agg.sorted_servers(), None, diag)
    here = html.draw_charts(inputs)
    with html.ChartsInBackground() as background:
        background.draw(inputs)
        assert background.drawn_by_child()
        assert background.result() == here
    assert sum(svg is not None for svg, _ in here) >= 2
    page = (tmp_path / "b" / "report.html").read_text()
    for svg, _notes in here:
        if svg is not None:
            assert svg in page


def verdicts_store(verdicts):
    from tlssniff.output.report.spool import open_store

    return open_store(verdicts)
