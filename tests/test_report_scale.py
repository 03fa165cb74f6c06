"""The report of a fleet is a document to read: bounded server rows, headline bullets and
findings, each remainder counted and pointing at summary.json, which keeps everything."""

from __future__ import annotations

import io
import json
import random

from tests.test_diagnostics_scale import fleet
from tlssniff.output.report import bundle
from tlssniff.output.report import write_bundle
from tlssniff.output.report.markdown import HEADLINE_SERVERS


def test_a_fleet_report_bounds_what_it_lists_and_counts_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "REPORT_FINDINGS_PER_CODE", 4)  # the fleet has 11 findings
    verdicts = fleet(bundle.REPORT_SERVERS + 150, 60)
    b = write_bundle(tmp_path / "r", verdicts, counters={}, inputs=[], argv=["tlssniff"],
                     cross_check=False)
    md = (tmp_path / "r" / "summary.md").read_text()
    html = (tmp_path / "r" / "report.html").read_text()
    doc = json.loads((tmp_path / "r" / "summary.json").read_text())
    servers = len(doc["servers"])
    assert servers == bundle.REPORT_SERVERS + 150 + 60  # summary.json: every server
    rows = [line for line in md.splitlines() if line.startswith("| 192.0.")]
    problems = len(b.problem_servers)
    assert problems > HEADLINE_SERVERS
    listed = bundle.REPORT_SERVERS + min(bundle.REPORT_SERVERS, sum(
        1 for s in sorted(doc["servers"], key=lambda s: (-s["handshakes"], s["server"]))
        [bundle.REPORT_SERVERS:] if f"{s['server']} {s['sni']}" in b.problem_servers))
    assert len(rows) == listed
    assert f"| *{servers - listed} other servers* (every server is in summary.json)" in md
    assert f"{servers - listed} other servers are not listed here" in html
    bullets = [line for line in md.split("## Findings")[0].splitlines()
               if line.startswith("- **")]
    assert len(bullets) <= 3 * HEADLINE_SERVERS + 1
    assert "more servers with a problem" in md
    # Findings: all in summary.json, a bounded number in full in the documents.
    assert len(doc["findings"]) == len(b.findings)
    assert [f.code for f in b.findings] == ["cross_server_refused"] * 11
    assert md.count("\n### ") == 4 and html.count("<div class='finding") == 4
    assert "Not shown here: 7 more `cross_server_refused` (summary.json has every" in md
    assert "Not shown here: 7 more cross_server_refused (summary.json has every" in html
    # evidence.pcapng: the connections the four findings shown cite, not all eleven's.
    cited = {(e.client, e.server, e.ts) for f in b.findings[:4] for e in f.evidence}
    every = {(e.client, e.server, e.ts) for f in b.findings for e in f.evidence}
    assert len(cited) < len(every)
    assert doc["counts"]["evidence"]["cited"] == len(cited)


def test_write_json_document_is_json_dump():
    rnd = random.Random(3)

    def value(depth: int):
        kind = rnd.randrange(7 if depth < 3 else 4)
        return [lambda: rnd.random(), lambda: rnd.randrange(-9, 10 ** 6),
                lambda: "".join(chr(rnd.randrange(0, 0x3000)) for _ in range(rnd.randrange(8))),
                lambda: rnd.choice([None, True, False]),
                lambda: [value(depth + 1) for _ in range(rnd.randrange(4))],
                lambda: {str(i): value(depth + 1) for i in range(rnd.randrange(4))},
                lambda: {}][kind]()

    for _ in range(200):
        doc = {f"k{i}\u2028\x1b": value(0) for i in range(rnd.randrange(6))}
        f = io.StringIO()
        bundle.write_json_document(f, doc)
        text = f.getvalue()
        assert json.loads(text) == json.loads(json.dumps(doc))
        assert text.endswith("}\n") and "\x1b" not in text  # ASCII escapes, as json.dump
