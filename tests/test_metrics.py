"""Prometheus metrics of ``tlssniff live --metrics`` and the monitoring files in contrib/.

The sink (tlssniff/output/metrics.py) is fed the verdicts of real captures and its exposition
is read back with prometheus_client's own parser: exact counts, a bounded number of series
whatever the number of servers, hostile SNIs kept inert, findings that leave with the window.
The contrib files are checked with the tools that use them: ``promtool test rules`` (and a
broken copy of the rules must fail it), the dashboard's and rules' expressions against the
metric names the sink exposes, ``systemd-analyze verify`` on the unit.

As root (CI): ``openssl s_server`` on loopback, ``tlssniff live lo --metrics``, real clients
making full handshakes and every kind of resumption, and a real Prometheus server scraping
tlssniff every second: its PromQL answers must equal the clients' own reports. And the
unit's capabilities are enough: ``tlssniff live`` run as ``nobody`` with exactly the unit's
ambient capabilities captures and serves the same counts (and fails without them).

Every port is in 23000-23999.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, REPO
from tests.test_e2e_loopback import _load_loopback

PORTS = range(23000, 24000)
TIMEOUT = 30.0
CONTRIB = REPO / "contrib"
RULES = CONTRIB / "prometheus" / "tlssniff-rules.yml"
RULE_TESTS = CONTRIB / "prometheus" / "tlssniff-rules.test.yml"
DASHBOARD = CONTRIB / "grafana" / "tlssniff-dashboard.json"
UNIT = CONTRIB / "systemd" / "tlssniff.service"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian prometheus) is not installed "
                                           "(scripts/install-system-deps.sh)")


# -- helpers ----------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _sink(**kw):
    from tlssniff.output.metrics import MetricsSink

    return MetricsSink(process=False, **kw)


def _verdicts(path: Path) -> list:
    """The verdicts of a capture, in the order the pipeline decides them (as live gets them)."""
    from tlssniff.engine.pipeline import Analyzer
    from tlssniff.capture.files import open_capture

    out: list = []
    analyzer = Analyzer(out.append)
    with open_capture(path) as cap:
        for n, (ts, lt, frame) in enumerate(cap.frames(), 1):
            analyzer.feed_frame(ts, lt, frame, n)
    analyzer.finish()
    return out


def _samples(text: str | bytes) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, parsed by prometheus_client: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    if isinstance(text, bytes):
        text = text.decode("utf-8")
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, key
            out[key] = s.value
    return out


def _of(samples: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def _lab(**kw: str) -> frozenset:
    return frozenset(kw.items())


def _promtool_check_metrics(text: bytes) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          timeout=TIMEOUT)


def _free_port(exclude: set[int] | None = None) -> int:
    """A TCP port of 23000-23999 nobody listens on (starting at a place that depends on the
    pid, so parallel runs rarely try the same ones)."""
    import socket

    exclude = set() if exclude is None else exclude
    start = os.getpid() % len(PORTS)
    for i in range(len(PORTS)):
        port = PORTS[(start + i * 7) % len(PORTS)]
        if port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        exclude.add(port)
        return port
    raise RuntimeError("no free port in 23000-23999")


# -- the sink --------------------------------------------------------------------------------


def test_exposition_counts_equal_the_per_server_table():
    """demo.pcapng: every (server, SNI) row of the aggregator, counted exactly, zeros included."""
    from tlssniff.analysis.aggregate import Aggregator

    verdicts = _verdicts(CAPTURES / "demo.pcapng")
    agg = Aggregator()
    sink = _sink()
    for v in verdicts:
        agg.add(v)
        sink.add(v)
    samples = _samples(sink.exposition())
    hs = _of(samples, "tlssniff_handshakes_total")
    offers = _of(samples, "tlssniff_resumption_offers_total")
    rows = agg.sorted_servers()
    assert len(rows) == 13
    assert len(hs) == (len(rows) + 1) * 5 and len(offers) == (len(rows) + 1) * 6
    for s in rows:
        for name in ("full", "session_id", "ticket", "psk", "unknown"):
            assert hs[_lab(server=s.server, sni=s.sni or "", handshake=name)] == \
                s.by_handshake.get(name, 0), (s.server, s.sni, name)
        got = {(o, r): offers[_lab(server=s.server, sni=s.sni or "", offered=o, outcome=r)]
               for o in ("session_id", "ticket", "psk") for r in ("accepted", "refused")}
        assert sum(v for (o, r), v in got.items() if r == "accepted") == s.accepted
        assert sum(v for (o, r), v in got.items() if r == "refused") == s.refused
        for o in ("session_id", "ticket", "psk"):
            assert got[(o, "accepted")] + got[(o, "refused")] == s.by_offered.get(o, 0) - sum(
                1 for v in verdicts if (v.server, v.sni) == (s.server, s.sni)
                and v.offered.value == o and v.handshake.value == "unknown")
    assert all(v == 0 for k, v in hs.items() if ("server", "other") in k)
    assert sum(hs.values()) == len(verdicts) == 40
    assert samples[("tlssniff_verdicts_total", frozenset())] == 40
    # The README's example: 127.0.0.1:44331 refuses three of four session-id offers.
    row = _lab(server="127.0.0.1:44331", sni="", offered="session_id", outcome="refused")
    assert offers[row] == 3


@needs_promtool
def test_promtool_accepts_the_exposition():
    sink = _sink(top=3)
    for v in _verdicts(CAPTURES / "demo.pcapng"):
        sink.add(v)
    sink.evaluate(force=True)
    text = sink.exposition()
    proc = _promtool_check_metrics(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr
    # and promtool does reject a bad exposition (the check can fail)
    bad = _promtool_check_metrics(text.replace(b"# TYPE tlssniff_verdicts_total counter",
                                               b"# TYPE tlssniff_verdicts_total gauge"))
    assert bad.returncode != 0 or bad.stdout.strip(), bad


def test_series_stay_bounded_with_thousands_of_servers():
    """An egress capture: 5,000 distinct servers, each with its own SNI. --metrics-top 10 gives
    11 pairs of series (10 + other), and the candidates remembered are bounded too; the busy
    servers that came after the slots were full take them at the next reselection."""
    from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered
    from tlssniff.output import metrics as m

    clock = _Clock()
    sink = _sink(top=10, clock=clock)
    n = 0
    for i in range(5000):
        sink.add(ConnectionVerdict(ts=float(i), client=f"10.1.{i % 250}.1:{1024 + i}",
                                   server=f"198.51.{i // 250}.{i % 250}:443",
                                   sni=f"host{i}.example", handshake=Handshake.FULL))
        n += 1
    for k in range(50):  # three busy servers, resuming
        for j in range(3):
            sink.add(ConnectionVerdict(ts=6000.0 + k, client=f"10.2.0.{j}:{2000 + k}",
                                       server=f"203.0.113.{j}:443", sni=f"busy{j}.example",
                                       offered=Offered.TICKET, handshake=Handshake.TICKET))
            n += 1
    samples = _samples(sink.exposition())
    hs = _of(samples, "tlssniff_handshakes_total")
    assert len(hs) == 11 * 5
    assert len(_of(samples, "tlssniff_resumption_offers_total")) == 11 * 6
    assert sum(hs.values()) == n
    assert len(sink._candidates) <= 2 * m.TRACK_FACTOR * 10
    assert samples[("tlssniff_metrics_top_pairs", frozenset())] == 10
    # the first 10 servers hold the slots; the busy ones count under other
    assert hs[_lab(server="other", sni="other", handshake="ticket")] == 150
    clock.t += m.RESELECT_SECONDS
    sink.tick(_Counters(), _Kernel())
    samples = _samples(sink.exposition())
    hs = _of(samples, "tlssniff_handshakes_total")
    assert len(hs) == 11 * 5
    labelled = {dict(k)["server"] for k in hs} - {"other"}
    busy = {f"203.0.113.{j}:443" for j in range(3)}
    assert len(labelled) == 10 and busy <= labelled
    # promoted pairs start at 0: their earlier handshakes stay in other
    assert all(v == 0 for k, v in hs.items() if dict(k)["server"] in busy)
    sink.add(ConnectionVerdict(ts=7000.0, client="10.2.0.0:3000", server="203.0.113.0:443",
                               sni="busy0.example", offered=Offered.TICKET,
                               handshake=Handshake.TICKET))
    hs = _of(_samples(sink.exposition()), "tlssniff_handshakes_total")
    assert hs[_lab(server="203.0.113.0:443", sni="busy0.example", handshake="ticket")] == 1
    # many more servers do not grow the exposition
    for i in range(20000):
        sink.add(ConnectionVerdict(ts=8000.0, client="10.3.0.1:1", server=f"10.9.{i // 250}."
                                   f"{i % 250}:8443", sni=None, handshake=Handshake.FULL))
    assert len(_of(_samples(sink.exposition()), "tlssniff_handshakes_total")) == 11 * 5
    assert len(sink._candidates) <= 2 * m.TRACK_FACTOR * 10


class _Counters:
    def __getattr__(self, name):
        return 0


class _Kernel:
    received = dropped = if_dropped = 0


HOSTILE_SNIS = [
    "\x1b[31mred\x1b[0m.example",  # terminal escape
    "line\nbreak.example",
    'quote".example',
    "back\\slash.example",
    "\u202egnp.exe",  # right-to-left override
    "tab\there.example",
    "x" * 300,
    "x" * 300 + "y",  # differs only beyond the cut
    "other",
    "[link](http://evil)",
    "=HYPERLINK(\"x\")",
    "\x00nul",
]


@needs_promtool
def test_hostile_sni_labels_are_inert_and_bounded():
    from tlssniff.analysis.verdict import ConnectionVerdict, Handshake
    from tlssniff.output.metrics import HELP_TEXTS, LABEL_MAX, label_value

    sink = _sink(top=50)
    for i, sni in enumerate(HOSTILE_SNIS):
        sink.add(ConnectionVerdict(ts=1.0, client=f"10.0.0.1:{1000 + i}", server="10.0.0.2:443",
                                   sni=sni, handshake=Handshake.FULL))
    text = sink.exposition()
    # no control byte but the line ends; every HELP and TYPE line is one of the module's own
    assert not re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", text)
    assert "\u202e".encode() not in text
    for line in text.decode().splitlines():
        if line.startswith("# HELP "):
            name, _, doc = line[7:].partition(" ")
            assert HELP_TEXTS[name.removesuffix("_total")] == doc, line
        elif line.startswith("#"):
            assert re.fullmatch(r"# TYPE [a-z_]+ (counter|gauge)", line), line
    hs = _of(_samples(text), "tlssniff_handshakes_total")
    snis = {dict(k)["sni"] for k in hs if dict(k)["server"] == "10.0.0.2:443"}
    assert snis == {label_value(s) for s in HOSTILE_SNIS}
    assert len(snis) == len(HOSTILE_SNIS)  # distinct stay distinct, the long ones included
    assert all(len(s) <= LABEL_MAX for s in snis)
    assert label_value("\x1b[31mred\x1b[0m.example") == "\\x1b[31mred\\x1b[0m.example"
    assert label_value("back\\slash.example") == "back\\\\slash.example"
    assert label_value("\u202egnp.exe") == "\\u202egnp.exe"
    # "other" as an SNI is a real pair, not the other bucket
    assert hs[_lab(server="10.0.0.2:443", sni="other", handshake="full")] == 1
    assert hs[_lab(server="other", sni="other", handshake="full")] == 0
    proc = _promtool_check_metrics(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _expected_findings(name: str) -> dict[frozenset, float]:
    """tlssniff_findings as the capture's expected findings say: per (code, server address),
    the number of findings naming that address."""
    doc = json.loads((CAPTURES / "diagnostics" / f"{name}.expected.json").read_text())
    want: dict[frozenset, float] = {}
    for f in doc["findings"]:
        for address in {s.split(" ", 1)[0] for s in f["servers"]}:
            key = _lab(code=f["code"], server=address)
            want[key] = want.get(key, 0) + 1
    return want


def _findings(samples: dict) -> dict[frozenset, float]:
    """tlssniff_findings per (code, server); the severity is checked to be one of the three."""
    out: dict[frozenset, float] = {}
    for labels, v in _of(samples, "tlssniff_findings").items():
        d = dict(labels)
        assert d.pop("severity") in ("info", "warning", "error"), labels
        out[frozenset(d.items())] = v
    return out


@pytest.mark.parametrize("name", ["cluster-separate-keys", "resumption-disabled", "key-rotation"])
def test_findings_hold_over_the_window_then_leave(name: str):
    """The findings gauge is the diagnostics of the window's verdicts; once the window has
    moved past them, the gauge is empty."""
    from tlssniff.output import metrics as m

    clock = _Clock()
    sink = _sink(window=120.0, clock=clock)
    for v in _verdicts(CAPTURES / "diagnostics" / f"{name}.pcap"):
        sink.add(v)
    clock.t += m.EVAL_SECONDS
    sink.tick(_Counters(), _Kernel())
    samples = _samples(sink.exposition())
    want = _expected_findings(name)
    assert want, name
    if name == "cluster-separate-keys":
        assert want[_lab(code="cross_server_refused", server="127.0.0.2:44362")] == 2
        assert _of(samples, "tlssniff_findings")[_lab(
            code="cross_server_refused", severity="warning", server="127.0.0.3:44362")] == 2
    assert _findings(samples) == want
    assert samples[("tlssniff_findings_window_seconds", frozenset())] == 120.0
    clock.t += 60  # still in the window
    sink.tick(_Counters(), _Kernel())
    assert _findings(_samples(sink.exposition())) == want
    clock.t += 61  # past it
    sink.tick(_Counters(), _Kernel())
    samples = _samples(sink.exposition())
    assert _of(samples, "tlssniff_findings") == {}
    assert samples[("tlssniff_findings_window_verdicts", frozenset())] == 0
    # the counters are cumulative: they do not leave with the window
    assert samples[("tlssniff_verdicts_total", frozenset())] > 0


def test_window_bound_in_verdicts():
    """Panes start every max_window_verdicts / 2 verdicts: the findings are computed over
    between half and all of max_window_verdicts."""
    from tlssniff.analysis.verdict import ConnectionVerdict

    sink = _sink(max_window_verdicts=10)

    def add(n: int) -> None:
        for _ in range(n):
            sink.add(ConnectionVerdict(ts=1.0, client="10.0.0.1:1", server="10.0.0.2:443"))

    def window() -> float:
        sink.evaluate(force=True)
        return _samples(sink.exposition())[("tlssniff_findings_window_verdicts", frozenset())]

    add(4)
    assert window() == 4
    add(1)  # the second pane starts
    assert window() == 5
    add(3)
    assert window() == 8
    add(92)
    assert window() == 5
    assert _samples(sink.exposition())[("tlssniff_verdicts_total", frozenset())] == 100
    assert len(sink._panes) == 2


def test_memory_is_bounded_by_the_window_not_the_traffic():
    """Memory held by the sink (pairs, candidates, both panes) after 4,000 and after 12,000
    verdicts of ever new servers and sessions: the same, give or take 10 %."""
    import gc
    import tracemalloc

    from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered

    def verdict(i: int) -> ConnectionVerdict:
        client = f"10.{i % 200}.{i // 200 % 200}.1:{i % 60000 + 1}"
        return ConnectionVerdict(ts=float(i), client=client,
                                 server=f"192.0.{i // 250 % 250}.{i % 250}:443",
                                 sni=f"s{i}.example", version="TLSv1.2",
                                 offered=Offered.SESSION_ID if i % 2 else Offered.NONE,
                                 handshake=Handshake.SESSION_ID if i % 4 == 1 else Handshake.FULL,
                                 session_id=f"{i:064x}", issued_session_id=f"{i + 1:064x}")

    clock = _Clock()
    sink = _sink(top=20, max_window_verdicts=1000, clock=clock)
    tracemalloc.start()
    try:
        sizes = []
        for i in range(12000):
            sink.add(verdict(i))
            if i % 100 == 0:
                clock.t += 1
                sink.tick(_Counters(), _Kernel())
            if i + 1 in (4000, 12000):
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert sizes[0] > 0
    assert abs(sizes[1] - sizes[0]) < 0.1 * sizes[0], sizes
    assert len(_of(_samples(sink.exposition()), "tlssniff_handshakes_total")) == 21 * 5


def test_a_diagnostics_failure_is_counted_not_fatal(monkeypatch):
    from tlssniff.analysis.diagnostics import Diagnostics
    from tlssniff.analysis.verdict import ConnectionVerdict

    sink = _sink()
    verdicts = _verdicts(CAPTURES / "diagnostics" / "cluster-separate-keys.pcap")

    def boom(self, v):
        raise RuntimeError("a bug")

    with monkeypatch.context() as m:
        m.setattr(Diagnostics, "add", boom)
        sink.add(ConnectionVerdict(ts=1.0, client="10.0.0.1:1", server="10.0.0.2:443"))
    for v in verdicts:
        sink.add(v)
    sink.evaluate(force=True)
    s = _samples(sink.exposition())
    assert s[("tlssniff_findings_errors_total", frozenset())] == 1
    assert s[("tlssniff_verdicts_total", frozenset())] == len(verdicts) + 1
    assert _findings(s) == _expected_findings("cluster-separate-keys")


def test_health_metrics():
    from tlssniff.engine.pipeline import Counters
    from tlssniff.capture.live import KernelStats

    sink = _sink()
    c = Counters(frames=1234, tcp_connections=50, tls_connections=40, not_tls_connections=9,
                 midstream_tls=1, evicted=7, evicted_memory=2, gaps=3)
    sink.tick(c, KernelStats(5000, 17, 4), active=12, pending_bytes=4096,
              pending_limit=96 << 20)
    s = _samples(sink.exposition())
    want = {
        "tlssniff_frames_total": 1234, "tlssniff_kernel_received_frames_total": 5000,
        "tlssniff_kernel_dropped_frames_total": 17, "tlssniff_interface_dropped_frames_total": 4,
        "tlssniff_connections_in_handshake": 12, "tlssniff_pending_memory_bytes": 4096,
        "tlssniff_pending_memory_limit_bytes": 96 << 20, "tlssniff_gaps_total": 3,
    }
    for name, value in want.items():
        assert s[(name, frozenset())] == value, name
    assert _of(s, "tlssniff_evicted_connections_total") == {
        _lab(reason="max_flows"): 5, _lab(reason="pending_memory"): 2}
    assert _of(s, "tlssniff_connections_total") == {
        _lab(kind="tcp"): 50, _lab(kind="tls"): 40, _lab(kind="not_tls"): 9,
        _lab(kind="midstream"): 1}


def test_openmetrics_exposition():
    """Prometheus asks for OpenMetrics: the same samples, ending with # EOF."""
    sink = _sink()
    for v in _verdicts(CAPTURES / "demo.pcapng"):
        sink.add(v)
    sink.warm_up()
    text = sink.exposition("application/openmetrics-text; version=1.0.0").decode()
    assert text.endswith("# EOF\n")
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    got = {(s.name, frozenset(s.labels.items())): s.value
           for fam in text_string_to_metric_families(text) for s in fam.samples}
    plain = _samples(sink.exposition())
    for key in ("tlssniff_handshakes_total", "tlssniff_resumption_offers_total"):
        assert _of(got, key) == _of(plain, key)


def test_process_memory_is_exposed():
    from tlssniff.output.metrics import MetricsSink

    s = _samples(MetricsSink().exposition())
    assert s[("process_resident_memory_bytes", frozenset())] > 1e6


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1")),
])
def test_serves_over_http(host: str):
    sink = _sink()
    port = _free_port()
    sink.serve(host, port)
    url_host = f"[{host}]" if ":" in host else host
    try:
        with urllib.request.urlopen(f"http://{url_host}:{port}/metrics", timeout=TIMEOUT) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            assert ("tlssniff_verdicts_total", frozenset()) in _samples(r.read())
        from tlssniff.output.metrics import MetricsSink

        with pytest.raises(OSError):  # the address is taken
            MetricsSink(process=False).serve(host, port)
    finally:
        sink.close()


@pytest.mark.parametrize("spec,want", [
    ("127.0.0.1:9815", ("127.0.0.1", 9815)), ("[::1]:9815", ("::1", 9815)),
    ("0.0.0.0:1", ("0.0.0.0", 1)), ("localhost:65535", ("localhost", 65535)),
])
def test_parse_listen(spec: str, want: tuple):
    from tlssniff.output.metrics import parse_listen

    assert parse_listen(spec) == want


@pytest.mark.parametrize("spec", ["9815", ":9815", "host:", "host:x", "::1:9815", "h:0",
                                  "h:70000"])
def test_parse_listen_rejects(spec: str):
    from tlssniff.output.metrics import parse_listen

    with pytest.raises(ValueError):
        parse_listen(spec)


@pytest.mark.parametrize("args,message", [
    (["--metrics", "9815"], "--metrics '9815': expected HOST:PORT"),
    (["--metrics", "127.0.0.1:9815", "--metrics-top", "0"], "--metrics-top must be between"),
    (["--metrics", "127.0.0.1:9815", "--metrics-window", "0"], "--metrics-window must be"),
])
def test_bad_metrics_options_are_usage_errors(args: list[str], message: str):
    proc = subprocess.run([sys.executable, "-m", "tlssniff", "live", "lo", *args],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith(f"tlssniff: error: {message}"), line


# -- contrib: rules, dashboard, unit ----------------------------------------------------------


@needs_promtool
def test_alert_rules_pass_their_promtool_tests():
    proc = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0 and "SUCCESS: 8 rules found" in proc.stdout, proc.stdout
    proc = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=RULE_TESTS.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
@pytest.mark.parametrize("broken,old,new", [
    ("threshold", "ratio5m{server!=\"other\"} < 0.5", "ratio5m{server!=\"other\"} < 0.2"),
    ("for", "for: 10m", "for: 20m"),
    ("finding code", 'code="cross_server_refused"', 'code="cross_server_refuse"'),
    ("drops", "increase(tlssniff_kernel_dropped_frames_total[2m]) > 0",
     "increase(tlssniff_kernel_dropped_frames_total[2m]) > 100"),
])
def test_alert_rule_tests_fail_on_a_broken_rule(tmp_path: Path, broken: str, old: str, new: str):
    text = RULES.read_text()
    assert text.count(old) == 1, (broken, old)
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    proc = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert proc.returncode != 0, (broken, proc.stdout)
    assert "FAILED" in proc.stdout + proc.stderr


_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                 "unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded series) names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]|e\d*", word):
            continue
        names.add(word)
    return names


def _rule_docs() -> list[dict]:
    import yaml

    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def _known_names() -> set[str]:
    """Series a scrape of tlssniff gives (the sink fed a real capture, so every family has
    samples), the recording rules' series, and Prometheus' own ``up``."""
    from tlssniff.output.metrics import MetricsSink

    sink = MetricsSink()
    for v in _verdicts(CAPTURES / "diagnostics" / "cluster-separate-keys.pcap"):
        sink.add(v)
    sink.evaluate(force=True)
    names = {name for name, _ in _samples(sink.exposition())}
    return names | {r["record"] for r in _rule_docs() if "record" in r} | {"up"}


def _dashboard_exprs(doc: dict) -> list[str]:
    out = []
    for panel in doc["panels"]:
        out += [t["expr"] for t in panel.get("targets", [])]
    for var in doc.get("templating", {}).get("list", []):
        q = var.get("query")
        if isinstance(q, str) and q.startswith("label_values("):
            out.append(q[len("label_values("):].rsplit(",", 1)[0])
    return out


def _unknown_names(exprs: list[str], known: set[str]) -> list[tuple[str, str]]:
    return [(name, e) for e in exprs for name in sorted(metric_names(e)) if name not in known]


def test_metric_names_of_an_expression():
    assert metric_names('sum by (server) (rate(a_total{x="y", z=~"1|2"}[5m])) / b:c') == \
        {"a_total", "b:c"}
    assert metric_names('time() - max(t_seconds{job="$job"})') == {"t_seconds"}
    assert metric_names("x > 0 and on (job) y >= 0.05") == {"x", "y"}


def test_dashboard_queries_reference_existing_metrics():
    doc = json.loads(DASHBOARD.read_text())
    exprs = _dashboard_exprs(doc)
    assert len(exprs) >= 15
    known = _known_names()
    assert _unknown_names(exprs, known) == []
    used = set().union(*(metric_names(e) for e in exprs))
    for name in ("tlssniff_handshakes_total", "tlssniff_resumption_offers_total",
                 "tlssniff_findings", "tlssniff_kernel_dropped_frames_total",
                 "process_resident_memory_bytes", "tlssniff_pending_memory_bytes",
                 "tlssniff_evicted_connections_total", "tlssniff_frames_total"):
        assert name in used, name
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    # the check does catch a wrong name
    broken = json.loads(DASHBOARD.read_text().replace("tlssniff_kernel_dropped_frames_total",
                                                      "tlssniff_kernel_drops_total"))
    assert [n for n, _ in _unknown_names(_dashboard_exprs(broken), known)] == \
        ["tlssniff_kernel_drops_total"]


def test_rule_expressions_reference_existing_metrics():
    exprs = [r["expr"] for r in _rule_docs()]
    assert _unknown_names(exprs, _known_names()) == []


def _unit() -> dict[str, list[str]]:
    """The unit file's [Service] settings: key -> values (in order)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            out.setdefault(key, []).append(value)
    return out


def test_unit_runs_unprivileged_with_two_capabilities():
    unit = _unit()
    assert unit["DynamicUser"] == ["yes"] and "User" not in unit
    assert unit["AmbientCapabilities"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert unit["NoNewPrivileges"] == ["yes"]
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[1:3] == ["live", "${TLSSNIFF_IFACE}"]
    assert "--metrics" in exec_start and "--no-drop-privileges" in exec_start
    # every option of the command line exists
    from typer.main import get_command

    from tlssniff.cli import app

    live = get_command(app).commands["live"]  # type: ignore[attr-defined]
    opts = {o for p in live.params for o in (*p.opts, *p.secondary_opts)}
    assert {a for a in exec_start if a.startswith("--")} <= opts


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path):
    """``systemd-analyze verify`` checks the executable exists: the copy runs this
    interpreter instead of /opt/tlssniff/bin/tlssniff."""
    text = UNIT.read_text()
    assert text.count("ExecStart=/opt/tlssniff/bin/tlssniff ") == 1
    unit = tmp_path / "tlssniff.service"
    unit.write_text(text.replace("/opt/tlssniff/bin/tlssniff", f"{sys.executable} -m tlssniff"))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    # and a broken unit is reported
    unit.write_text(text.replace("AmbientCapabilities=", "AmbientCapabilitie="))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert "Unknown key" in proc.stderr, proc.stderr


# -- live, as root: a real Prometheus, real clients --------------------------------------------


def _missing_requirement() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: live capture on the loopback interface"
    for tool in ("openssl", "prometheus", "promtool", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps.sh)"
    return None


_REASON = _missing_requirement()
needs_root = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def lo():
    return _load_loopback()


@pytest.fixture
def cert(lo, tmp_path: Path) -> tuple[Path, Path]:
    return lo.make_cert(tmp_path)


class Prometheus:
    """Debian's ``prometheus`` on 127.0.0.1:PORT scraping tlssniff every second, with the
    project's rules loaded; storage in a temporary folder."""

    def __init__(self, tmp: Path, port: int, target: str, rules: str | None = None):
        self.port = port
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        (self.dir / RULES.name).write_text(RULES.read_text() if rules is None else rules)
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: [{RULES.name}]\n"
            "scrape_configs:\n  - job_name: tlssniff\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n")
        self.log = tmp / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Prometheus:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"prometheus did not start:\n{self.log.read_text()}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)

    def query(self, promql: str) -> list[dict]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": promql}))
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def wait_until_present(self, promql: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not self.query(promql):
            if time.monotonic() > deadline:
                raise AssertionError(f"{promql}: no result within {TIMEOUT} s")
            time.sleep(0.5)

    def wait_for(self, promql: str, value: float) -> None:
        deadline = time.monotonic() + TIMEOUT
        got = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            got = [float(r["value"][1]) for r in result]
            if got == [value]:
                return
            time.sleep(0.5)
        raise AssertionError(f"{promql}: {got}, want [{value}]")


def _expected_counts(runs) -> tuple[dict, dict]:
    """tlssniff_handshakes_total and tlssniff_resumption_offers_total as the clients' own
    reports make them, zeros included."""
    hs: dict[tuple, int] = {}
    offers: dict[tuple, int] = {}
    for server in {r.server for r in runs}:
        for h in ("full", "session_id", "ticket", "psk", "unknown"):
            hs[(server, h)] = 0
        for o in ("session_id", "ticket", "psk"):
            for outcome in ("accepted", "refused"):
                offers[(server, o, outcome)] = 0
    for r in runs:
        hs[(r.server, r.handshake)] += 1
        if r.offered != "none":
            offers[(r.server, r.offered, "accepted" if r.reused else "refused")] += 1
    return hs, offers


def _run_clients(lo, tmp_path: Path, tickets, p12: int, p12_sid: int, p13: int) -> list:
    s_tkt, s_sid, s_13 = (tmp_path / f"{n}.pem" for n in ("tkt", "sid", "psk"))
    t12 = ssl.TLSVersion.TLSv1_2
    runs = [
        lo.s_client(p12, "-tls1_2", sess_out=s_tkt),
        lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"),
        lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_out=s_sid),
        lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_in=s_sid, offered="session_id"),
        lo.s_client(p13, sess_out=s_13),
        lo.s_client(p13, sess_in=s_13, offered="psk"),
    ]
    first, session = lo.py_client(p13)
    again, _ = lo.py_client(p13, session=session, offered="psk")
    runs += [first, again]
    first, session = lo.py_client(p12_sid, max_version=t12)
    again, _ = lo.py_client(p12_sid, max_version=t12, session=session, offered="session_id")
    runs += [first, again]
    tickets.restart()  # a new ticket key: the old ticket is refused
    runs.append(lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"))
    return runs


class _LiveMetrics:
    """``tlssniff live lo --metrics 127.0.0.1:PORT`` with a filter on the servers' ports."""

    def __init__(self, tmp: Path, ports: list[int], metrics_port: int, *args: str,
                 prefix: list[str] | None = None, env: dict | None = None,
                 python: list[str] | None = None):
        bpf = "tcp and (" + " or ".join(f"port {p}" for p in sorted(ports)) + ")"
        self.url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.cmd = [*(prefix or []), *(python or [sys.executable]), "-m", "tlssniff", "live",
                    "lo", "--filter", bpf, "--metrics", f"127.0.0.1:{metrics_port}", *args]
        self.out, self.err = tmp / "live.out", tmp / "live.err"
        self.env = env
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> _LiveMetrics:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=out, stderr=err,
                                         env=self.env)
        deadline = time.monotonic() + TIMEOUT
        while b"listening on" not in self.err.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise AssertionError(f"tlssniff live did not start:\n{self.err.read_text()}")
            time.sleep(0.05)
        return self

    def scrape(self) -> bytes:
        with urllib.request.urlopen(self.url, timeout=TIMEOUT) as r:
            return r.read()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)


@needs_root
def test_prometheus_scrapes_the_exact_counts(lo, cert, tmp_path: Path):
    """Full handshakes, session-id, ticket and TLS 1.3 PSK resumptions and a refused ticket,
    from s_client and Python ssl; Prometheus' PromQL answers equal the clients' reports."""
    crt, key = cert
    used: set[int] = set()
    p12, p12_sid, p13, pm, pp = (_free_port(used) for _ in range(5))
    log = tmp_path / "s_server.log"
    with lo.OpenSSLServer(p12, crt, key, "-tls1_2", log=log) as tickets, \
            lo.OpenSSLServer(p12_sid, crt, key, "-tls1_2", "-no_ticket", log=log), \
            lo.OpenSSLServer(p13, crt, key, log=log), \
            _LiveMetrics(tmp_path, [p12, p12_sid, p13], pm, "-f", "jsonl", "-o",
                         str(tmp_path / "live.jsonl")) as live, \
            Prometheus(tmp_path, pp, f"127.0.0.1:{pm}") as prom:
        prom.wait_for('up{job="tlssniff"}', 1)
        runs = _run_clients(lo, tmp_path, tickets, p12, p12_sid, p13)
        assert [r.reused for r in runs] == [False, True] * 5 + [False], \
            [(r.server, r.offered, r.reused) for r in runs]
        assert {r.handshake for r in runs} == {"full", "session_id", "ticket", "psk"}
        prom.wait_for("sum(tlssniff_verdicts_total)", len(runs))
        want_hs, want_offers = _expected_counts(runs)
        got_hs = {(r["metric"]["server"], r["metric"]["handshake"]): float(r["value"][1])
                  for r in prom.query('tlssniff_handshakes_total{server!="other"}')}
        assert got_hs == want_hs
        assert all(r["metric"]["sni"] == lo.SNI
                   for r in prom.query('tlssniff_handshakes_total{server!="other"}'))
        got_offers = {(r["metric"]["server"], r["metric"]["offered"], r["metric"]["outcome"]):
                      float(r["value"][1])
                      for r in prom.query('tlssniff_resumption_offers_total{server!="other"}')}
        assert got_offers == want_offers
        assert got_offers[(f"127.0.0.1:{p12}", "ticket", "refused")] == 1
        # PromQL over the counters: the resumption rate of the TLS 1.3 server, 2 of 4
        rate = prom.query(f'sum(tlssniff_handshakes_total{{server="127.0.0.1:{p13}",'
                          f'handshake=~"session_id|ticket|psk"}}) / sum(tlssniff_handshakes_'
                          f'total{{server="127.0.0.1:{p13}",handshake!="unknown"}})')
        assert [float(r["value"][1]) for r in rate] == [0.5]
        assert float(prom.query('tlssniff_kernel_dropped_frames_total')[0]["value"][1]) == 0
        # after the privileges dropped to nobody, the process collector still reports memory
        rss = prom.query("process_resident_memory_bytes")
        assert len(rss) == 1 and float(rss[0]["value"][1]) > 1e6
        # the rules loaded into this Prometheus evaluate (a rate needs two scrapes in the
        # rule's window: on a loaded machine the first evaluations may come before them)
        prom.wait_until_present("tlssniff:handshakes:rate5m")
        text = live.scrape()
        check = _promtool_check_metrics(text)
        assert check.returncode == 0, check.stdout + check.stderr
        assert live.stop() == 0, live.err.read_text()
    assert "running as nobody" in live.err.read_text()
    records = [json.loads(x) for x in (tmp_path / "live.jsonl").read_text().splitlines()]
    assert len(records) == len(runs)


@needs_root
def test_metrics_port_in_use_is_a_usage_error():
    import socket

    port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        proc = subprocess.run([sys.executable, "-m", "tlssniff", "live", "lo", "--filter",
                               f"tcp port {port}", "--metrics", f"127.0.0.1:{port}",
                               "--count", "1"],
                              capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip()
    assert line.startswith(f"tlssniff: error: --metrics 127.0.0.1:{port}: cannot listen: "), line
    assert "\n" not in line


@needs_root
def test_cross_server_refused_alert_fires_in_prometheus(lo, cert, tmp_path: Path):
    """Two nodes of one name (Python ssl servers on 127.0.0.2 and 127.0.0.3, each its own
    ticket key): each refuses the other's tickets and accepts its own. tlssniff_findings shows
    cross_server_refused for both, and the project's alert fires in a real Prometheus (its
    ``for`` shortened to 0s in the copy Prometheus loads)."""
    crt, key = cert
    used: set[int] = set()
    port, pm, pp = (_free_port(used) for _ in range(3))
    rules = RULES.read_text()
    old = "(tlssniff_findings{code=\"cross_server_refused\"}) > 0\n        for: 1m"
    assert rules.count(old) == 1
    rules = rules.replace(old, old.replace("1m", "0s"))
    t12 = ssl.TLSVersion.TLSv1_2
    a, b = "127.0.0.2", "127.0.0.3"
    with lo.PythonServer(a, port, crt, key, max_version=t12), \
            lo.PythonServer(b, port, crt, key, max_version=t12), \
            _LiveMetrics(tmp_path, [port], pm) as live, \
            Prometheus(tmp_path, pp, f"127.0.0.1:{pm}", rules=rules) as prom:
        prom.wait_for('up{job="tlssniff"}', 1)
        runs = []
        for first, other in ((a, b), (b, a)):
            run, session = lo.py_client(port, host=first, max_version=t12)
            runs.append(run)
            runs.append(lo.py_client(port, host=first, max_version=t12, session=session,
                                     offered="ticket")[0])
            runs.append(lo.py_client(port, host=other, max_version=t12, session=session,
                                     offered="ticket")[0])
        assert [r.reused for r in runs] == [False, True, False] * 2
        prom.wait_for("sum(tlssniff_verdicts_total)", len(runs))
        deadline = time.monotonic() + TIMEOUT
        while True:
            firing = prom.query('ALERTS{alertname="TLSCrossServerRefused",alertstate="firing"}')
            if len(firing) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(r["metric"]["server"] for r in firing) == [f"{a}:{port}", f"{b}:{port}"]
        found = {r["metric"]["server"]: float(r["value"][1])
                 for r in prom.query('tlssniff_findings{code="cross_server_refused"}')}
        assert found == {f"{a}:{port}": 2, f"{b}:{port}": 2}
        assert live.stop() == 0, live.err.read_text()


def _unprivileged_python(env: dict) -> list[str] | None:
    """An interpreter user ``nobody`` can run with this one's packages: this one, or (when it
    lives where nobody may not look, e.g. under /root/.pyenv) the system's python of the same
    version with this one's site-packages on PYTHONPATH."""
    import site

    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    code = "import prometheus_client, typer, rich, tlssniff.cli"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for python, extra in (([sys.executable], []),
                          ([f"/usr/bin/{version}"], site.getsitepackages())):
        e = dict(env, PYTHONPATH=os.pathsep.join([str(REPO), *extra]))
        try:
            ok = subprocess.run([*probe, *python, "-c", code], env=e, cwd=REPO,
                                capture_output=True, timeout=TIMEOUT).returncode == 0
        except OSError:
            ok = False
        if ok:
            env.update(e)
            return python
    return None


@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")
def test_unit_capabilities_suffice_for_an_unprivileged_user(lo, cert, tmp_path: Path):
    """What the unit gives (AmbientCapabilities, a user that is not root) is enough to capture
    and serve metrics; without the capabilities the same user cannot capture."""
    caps = _unit()["AmbientCapabilities"][0].split()
    setcaps = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    python = _unprivileged_python(env)
    if python is None:
        pytest.skip("no python interpreter that user nobody can run with these packages")
    user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    with_caps = [*user, f"--inh-caps={setcaps}", f"--ambient-caps={setcaps}", "--"]
    crt, key = cert
    used: set[int] = set()
    port, pm = _free_port(used), _free_port(used)
    sess = tmp_path / "s.pem"
    os.chmod(tmp_path, 0o755)
    with lo.OpenSSLServer(port, crt, key, "-tls1_2", log=tmp_path / "s.log"):
        with _LiveMetrics(tmp_path, [port], pm, "--no-drop-privileges", prefix=with_caps,
                          env=env, python=python) as live:
            runs = [lo.s_client(port, "-tls1_2", sess_out=sess),
                    lo.s_client(port, "-tls1_2", sess_in=sess, offered="ticket")]
            deadline = time.monotonic() + TIMEOUT
            while _samples(live.scrape())[("tlssniff_verdicts_total", frozenset())] < 2:
                assert time.monotonic() < deadline, live.err.read_text()
                time.sleep(0.2)
            hs = _of(_samples(live.scrape()), "tlssniff_handshakes_total")
            assert live.stop() == 0, live.err.read_text()
    assert [r.reused for r in runs] == [False, True]
    server = f"127.0.0.1:{port}"
    assert {dict(k)["handshake"]: v for k, v in hs.items() if dict(k)["server"] == server} == \
        {"full": 1, "ticket": 1, "session_id": 0, "psk": 0, "unknown": 0}
    assert "running as" not in live.err.read_text()  # nothing to drop: not root
    # The same user without the capabilities: refused, with the one-line explanation.
    proc = subprocess.run([*user, "--", *python, "-m", "tlssniff", "live", "lo", "--count", "1"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("tlssniff: error: no permission to capture on lo"), proc.stderr
