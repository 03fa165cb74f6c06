"""The report tells the truth at a glance: servers with refused offers or a low hit rate are
named in the headline even when no finding fires and marked in the tables; charts that hold up
(no rate over time on thin bins, servers left out named, refused offers counted, cross-node
offers marked); progress on a terminal only; the cross-check's cost; long or NUL-carrying
names fit the pcapng comment."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundles import client_hello, make_bundle, pcapng_packets
from tests.conftest import CAPTURES, REPO

DEMO = str(CAPTURES / "demo.pcapng")
DIAG = CAPTURES / "diagnostics"


def _short(md: str) -> str:
    return md.split("## In short", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "b"
    make_bundle(out, DEMO)
    return out


def test_headline_names_the_server_refusing_offers_without_a_finding(demo):
    md = (demo / "summary.md").read_text()
    summary = json.loads((demo / "summary.json").read_text())
    short = _short(md)
    assert "No server shows a resumption problem" not in short
    # 127.0.0.1:44331 refuses 3 of 4 offers and no finding of severity error/warning says so
    assert all(f["severity"] == "info" for f in summary["findings"])
    assert "- **127.0.0.1:44331** refuses 3 of 4 resumption offers (hit rate 25%" in short
    # the servers refusing one offer in two are named too, with their figures
    for s in ("127.0.0.1:44330 tlssniff.test", "127.0.0.1:44332 tlssniff.test",
              "127.0.0.1:44334 tlssniff.test"):
        assert f"**{s}** (1 of 2)" in short
    assert summary["low_hit_rate_servers"] == ["127.0.0.1:44331"]
    assert {r["server"]: (r["refused"], r["offered"]) for r in summary["refusing_servers"]} == {
        "127.0.0.1:44331": (3, 4), "127.0.0.1:44330 tlssniff.test": (1, 2),
        "127.0.0.1:44332 tlssniff.test": (1, 2), "127.0.0.1:44334 tlssniff.test": (1, 2)}
    table = md.split("## Resumption per server", 1)[1]
    assert re.search(r"^\| 127\.0\.0\.1:44331 \*\*\(low hit rate\)\*\* \|", table, re.M)
    assert table.count("(low hit rate)") == 1


def test_html_marks_the_server_as_the_terminal_does(demo):
    page = (demo / "report.html").read_text()
    rows = re.findall(r"<tr class=low><td>([^<]*)</td>", page)
    assert rows == ["127.0.0.1:44331 (low hit rate)"]
    assert "<b>127.0.0.1:44331</b> refuses 3 of 4" in page
    # the terminal's rule: yellow where the hit rate is under 50%
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "analyze", DEMO],
                          capture_output=True, text=True, env=dict(os.environ, FORCE_COLOR="1",
                                                                   COLUMNS="120"))
    yellow = [line for line in proc.stdout.splitlines() if "\x1b[33m" in line]
    assert len(yellow) == 1 and "127.0.0.1:44331" in yellow[0]


def test_no_rate_over_time_on_a_short_capture(demo):
    page = (demo / "report.html").read_text()
    assert "Resumption over time: not drawn, too few handshakes (the busiest server has 6 " \
           "classified handshakes" in page
    assert "Resumption rate over time" not in page  # no chart title: no chart
    assert page.count("<svg") == 2  # mechanism mix and session ages


def test_cross_check_cost_is_said(demo):
    summary = json.loads((demo / "summary.json").read_text())
    check = summary["cross_check"]
    if not check["ran"]:
        pytest.skip("tshark not installed")
    assert isinstance(check["seconds"], float) and check["seconds"] > 0
    assert f"(took {check['seconds']:.1f} s)" in (demo / "summary.md").read_text()


def _series(n: int, t0: float, span: float, rate: float) -> list[tuple[float, bool]]:
    return [(t0 + span * i / n, (i % 100) < rate * 100) for i in range(n)]


def test_rate_over_time_chart_rules():
    pytest.importorskip("matplotlib")
    from tlssniff.output.report import charts

    t0 = 1_700_000_000.0
    svg, notes = charts.rate_over_time({"a": _series(14, t0, 60, 1)}, t0)
    assert svg is None and "not drawn, too few handshakes" in notes[0] and "14" in notes[0]
    series = {f"10.0.0.{i}:443": _series(200, t0, 600, 0.5) for i in range(10)}
    series["10.0.1.1:443 thin"] = _series(12, t0, 600, 1)
    svg, notes = charts.rate_over_time(series, t0)
    assert svg and svg.startswith("<svg")
    text = " ".join(notes)
    assert "only the 8 busiest" in text and "10.0.0.8:443" in text and "10.0.0.9:443" in text
    assert "fewer than 5 handshakes in two bins" in text and "10.0.1.1:443 thin (12)" in text
    assert "at least 5 classified handshakes" in text
    # a bin with fewer than 5 handshakes is a gap, not a point at 0% or 100%
    lone = {"s": _series(100, t0, 100, 1) + [(t0 + 500, False)]}
    svg, notes = charts.rate_over_time(lone, t0)
    assert svg is not None and "each point is a bin" in notes[0].lower()


def test_mix_and_ages_name_what_they_leave_out():
    pytest.importorskip("matplotlib")
    from tlssniff.output.report import charts

    rows = [(f"s{i}", [1, 0, 0, 1, 1, 0]) for i in range(20)]
    svg, notes = charts.mechanism_mix(rows)
    assert svg and "s16" in notes[0] and "s19" in notes[0] and "s15" not in notes[0]
    ages = {"n1": {"accepted": [1.0], "refused": [], "cross_accepted": [], "cross_refused": [2.0]},
            "n2": {"accepted": [1.0], "refused": [5.0], "refused_explained": [3.0]}}
    svg, notes = charts.session_ages(ages, {"n1": 3, "n2": 2, "n3": 2})
    assert svg and "#9467bd" in svg  # the cross-node refusal's colour
    assert "#ff7f0e" in svg  # the refusal another finding explains
    text = " ".join(notes)
    assert "n1 (2)" in text and "n3 (2)" in text and "n2 (" not in text
    assert "another node" in text and "another finding explains" in text


def test_cluster_report_plots_the_cross_node_refusals(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "b"
    make_bundle(out, str(DIAG / "cluster-separate-keys.pcap"), "--no-verify")
    page = (out / "report.html").read_text()
    charts_part = page.split("<h2>Charts</h2>", 1)[1].split("<h2>Findings</h2>", 1)[0]
    assert "Session age of offers" in charts_part
    assert "#9467bd" in charts_part  # both nodes refuse the other's sessions: marked apart
    assert "issued by another node" in charts_part
    from tlssniff.analysis.diagnostics import Diagnostics
    from tlssniff.engine.parallel import analyze_captures

    verdicts: list = []
    analyze_captures([str(DIAG / "cluster-separate-keys.pcap")], verdicts.append)
    d = Diagnostics()
    for v in verdicts:
        d.add(v)
    ages = d.session_ages()
    assert sum(len(a["cross_refused"]) for a in ages.values()) == 2
    assert sum(len(a["refused"]) + len(a["refused_explained"]) for a in ages.values()) == 0


def test_demo_plots_the_refusal_a_key_change_explains(demo):
    """127.0.0.1:44330 refuses one ticket after changing its key (ticket_key_rotation): that
    refusal has an age and is on the chart, marked as explained, not counted as ageless."""
    page = (demo / "report.html").read_text()
    assert "Hollow crosses: refused offers another finding explains" in page
    ageless = re.search(r"Refused offers without an age[^<]*", page).group(0)
    assert "127.0.0.1:44330" not in ageless and "127.0.0.1:44332 tlssniff.test (1)" in ageless


def test_progress_on_a_terminal_only(tmp_path):
    out = tmp_path / "plain"
    proc = make_bundle(out, DEMO, verify=False)
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    if "seconds" in json.loads((out / "summary.json").read_text())["cross_check"]:
        assert re.search(r"^tlssniff: cross-check: \d+\.\d s of \d+\.\d s; --no-verify skips "
                         r"it$", proc.stderr, re.M)
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    p = subprocess.Popen([sys.executable, "-m", "tlssniff", "report", DEMO, "-o",
                          str(tmp_path / "tty")], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    p.wait(timeout=300)
    os.close(master)
    seen = b"".join(chunks).decode("utf-8", "replace")
    assert p.returncode == 0
    for step in ("tlssniff report: analyzing", "tlssniff report: summary.json, summary.md"):
        assert step in seen, seen[-2000:]
    assert "tlssniff: bundle written to" in seen


def _hostile_capture(path: Path, snis: list[bytes]) -> None:
    from tlssniff.testing.pcapwriter import Endpoint, tcp_frames, write_pcap

    write_pcap(path, [tcp_frames([("c", client_hello(sni))], Endpoint("10.9.0.1", 40000 + i),
                                 Endpoint("10.9.0.2", 443), start=1.7e9 + i)
                      for i, sni in enumerate(snis)])


def test_long_names_and_nul_fit_the_packet_comment(tmp_path):
    cap = tmp_path / "long.pcap"
    _hostile_capture(cap, [b"a" * 65000, "\u00e9".encode() * 21000, b"evil\x00name",
                           b"\xff" * 22000])
    out = tmp_path / "b"
    proc = make_bundle(out, str(cap), "--no-verify", verify=False)
    assert "Traceback" not in proc.stderr
    packets = pcapng_packets(out / "evidence.pcapng")
    comments = {c for _, cs in packets for c in cs}
    assert len(comments) == 4 and all(len(packets_c) for _, packets_c in packets)
    for c in comments:
        assert len(c) <= 8192 and b"\0" not in c
        c.decode("utf-8")  # valid UTF-8, cut on a character boundary
    # the 65,000-byte name is shortened, saying its length (the display rule's clip)
    assert any(b"aaaa" in c and b"(65000 characters)" in c for c in comments)
    assert any(b"name" in c and b"evil" in c for c in comments)  # not cut at the NUL
    jsonl = [json.loads(line) for line in (out / "handshakes.jsonl").read_text().splitlines()]
    assert sorted(len(r["sni"] or "") for r in jsonl)[-1] == 65000  # full value stays in JSONL
