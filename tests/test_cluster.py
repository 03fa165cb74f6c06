"""Cluster diagnosis as users capture clusters (docs/diagnostics.md): the findings of every
capture in captures/diagnostics/ are the same when it is split per node and the pieces are
given in either order, and the same from each piece's JSONL verdicts, in the terminal and in
JSON. Pieces are cut at connection boundaries (connections never span files)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import CAPTURES, run_tlssniff
from tlssniff.cli import app

DIAG = CAPTURES / "diagnostics"
NAMES = sorted(p.name.removesuffix(".expected.json") for p in DIAG.glob("*.expected.json"))
_runner = CliRunner()


def tlssniff(*args: str) -> str:
    result = _runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def split_per_node(pcap: Path, out: Path) -> list[Path]:
    """One pcap per server address (the side that answered a SYN); a capture of one address
    (a VIP) is split into two by alternate connections instead."""
    with open(pcap, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        link = reader.datalink()
        packets = list(reader)
    server_of: dict[frozenset, tuple[str, int]] = {}
    conn_order: dict[frozenset, int] = {}
    rows = []
    for ts, buf in packets:
        ip = (dpkt.sll.SLL(buf) if link == dpkt.pcap.DLT_LINUX_SLL else dpkt.ethernet.Ethernet(buf)).data
        tcp = ip.data
        a, b = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        key = frozenset((a, b))
        if key not in server_of:
            syn_only = tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK
            server_of[key] = b if syn_only else a
            conn_order[key] = len(conn_order)
        rows.append((ts, buf, key))
    nodes = sorted({server_of[k][0] for k in server_of})
    if len(nodes) > 1:
        piece = {k: nodes.index(server_of[k][0]) for k in server_of}
    else:
        piece = {k: conn_order[k] % 2 for k in server_of}
    paths = [out / f"{pcap.stem}.node{i}.pcap" for i in range(max(piece.values()) + 1)]
    writers = [dpkt.pcap.Writer(open(p, "wb"), linktype=link) for p in paths]
    for ts, buf, key in rows:
        writers[piece[key]].writepkt(buf, ts)
    for w in writers:
        w.close()
    return paths


def normalized(findings: list[dict]) -> list[dict]:
    """Findings as a set in a stable order; evidence frames and capture names depend on the
    file a connection was read from, the connection itself (client, server, ts) does not."""
    out = []
    for f in findings:
        g = dict(f)
        g["evidence"] = [{k: v for k, v in e.items() if k not in ("frames", "capture")}
                         for e in f["evidence"]]
        out.append(g)
    return sorted(out, key=lambda g: json.dumps(g, sort_keys=True))


def _no_frames(table: str) -> str:
    """The terminal output without its counters line, words only (the terminal wraps), and
    without evidence frame numbers: they are per file, a piece numbers its frames from 1."""
    words = " ".join(" ".join(table.splitlines()[:-1]).split())
    return re.sub(r" frames [0-9,]+", "", words)


def terminal_findings(table: str) -> Counter:
    return Counter(re.findall(r"(?m)^(ERROR|WARNING|INFO) (\w+) (.*)$", table))


@pytest.fixture(scope="module", params=NAMES)
def pieces(request, tmp_path_factory):
    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    pcap = DIAG / f"{name}.pcap"
    parts = split_per_node(pcap, tmp)
    jsonls = []
    for p in parts:
        j = tmp / (p.stem + ".jsonl")
        tlssniff("analyze", str(p), "-f", "jsonl", "-o", str(j))
        jsonls.append(j)
    whole = json.loads(tlssniff("analyze", str(pcap), "-f", "json"))
    expected = json.loads((DIAG / f"{name}.expected.json").read_text())
    return name, pcap, parts, jsonls, whole, expected, tlssniff("analyze", str(pcap))


def test_split_per_node_in_either_order(pieces):
    name, pcap, parts, _, whole, expected, table = pieces
    assert len(parts) == 2, f"{name}: {len(parts)} pieces"
    want = normalized(whole["findings"])
    assert Counter(f["code"] for f in whole["findings"]) == \
        Counter(f["code"] for f in expected["findings"])
    for order in (parts, parts[::-1]):
        doc = json.loads(tlssniff("analyze", *map(str, order), "-f", "json"))
        assert normalized(doc["findings"]) == want, f"{name}: {[p.name for p in order]}"
        assert terminal_findings(tlssniff("analyze", *map(str, order))) == \
            terminal_findings(table), name


def test_per_node_jsonl_verdicts(pieces):
    name, _, _, jsonls, whole, _, table = pieces
    want = normalized(whole["findings"])
    for order in (jsonls, jsonls[::-1]):
        doc = json.loads(tlssniff("analyze", *map(str, order), "-f", "json"))
        assert normalized(doc["findings"]) == want, name
        assert doc["totals"] == whole["totals"], name
        assert doc["servers"] == whole["servers"], name
        shown = tlssniff("analyze", *map(str, order))
        assert terminal_findings(shown) == terminal_findings(table), name
        # The per-server table itself is the same; only the counters line says what was read.
        assert _no_frames(shown) == _no_frames(table), name
        assert shown.splitlines()[-1] == f"{whole['totals']['handshakes']} verdicts read from " \
                                         "verdict files."


def test_verdicts_in_any_order(pieces, tmp_path):
    """Every verdict of the capture, shuffled into one verdict file: the same findings."""
    import random

    name, _, _, jsonls, whole, _, _ = pieces
    lines = [line for j in jsonls for line in j.read_text().splitlines()]
    for seed in (1, 2):
        random.Random(seed).shuffle(lines)
        f = tmp_path / f"shuffled{seed}.jsonl"
        f.write_text("\n".join(lines) + "\n")
        doc = json.loads(tlssniff("analyze", str(f), "-f", "json"))
        assert normalized(doc["findings"]) == normalized(whole["findings"]), (name, seed)


def test_configured_clusters_raise_no_warning():
    """Servers behaving as configured (shared keys, working caches): nothing above info."""
    for name in ("cluster-shared-key", "cluster-shared-key-tls13", "vip-shared-key",
                 "haproxy-shared-keys",
                 "concurrent-nginx", "concurrent-apache"):
        doc = json.loads(tlssniff("analyze", str(DIAG / f"{name}.pcap"), "-f", "json"))
        assert [f["code"] for f in doc["findings"] if f["severity"] != "info"] == [], name


def test_jsonl_and_capture_mixed(tmp_path):
    """A verdict file beside a capture: the findings of both captures together."""
    a, b = split_per_node(DIAG / "cluster-separate-keys.pcap", tmp_path)
    j = tmp_path / "a.jsonl"
    tlssniff("analyze", str(a), "-f", "jsonl", "-o", str(j))
    whole = json.loads(tlssniff("analyze", str(DIAG / "cluster-separate-keys.pcap"), "-f", "json"))
    for args in ((str(j), str(b)), (str(b), str(j))):
        doc = json.loads(tlssniff("analyze", *args, "-f", "json"))
        assert normalized(doc["findings"]) == normalized(whole["findings"])


# -- hostile verdict files ----------------------------------------------------------------------


def _line(**over) -> str:
    base = {"ts": 1.5, "client": "10.0.0.1:1000", "server": "10.0.0.2:443", "sni": "a.test",
            "version": "TLSv1.2", "offered": "none", "handshake": "full"}
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize("bad, reason", [
    (_line(client='10.0.0.1:1"x'), "client: not a value tlssniff writes"),
    (_line(ts="now"), "ts: not a timestamp"),
    (_line(ts=float("inf")).replace("Infinity", "1e999"), "ts: not a timestamp"),
    (_line(server=...), "server: missing"),
    (_line(handshake="maybe"), "handshake: not one of"),
    (_line(frames=[1, True]), "frames: not a list of frame numbers"),
    (_line(ticket_key_name="ZZ"), "ticket_key_name: not a value tlssniff writes"),
    (_line(sni="x" * 100_000), "sni: not a value tlssniff writes"),
    (_line(alpn_offered="h2"), "alpn_offered: not a list of strings"),
    (_line(cipher="\x1b[31m"), "cipher: not a value tlssniff writes"),
    ("[1, 2]", "not a JSON object"),
    ('{"ts": 1, ', "not JSON"),
    ("{" * 100_000, "not JSON"),
])
def test_hostile_verdict_line_is_skipped_and_counted(tmp_path, bad, reason):
    f = tmp_path / "v.jsonl"
    f.write_text(_line() + "\n" + bad + "\n" + _line(ts=2.5) + "\n")
    result = _runner.invoke(app, ["analyze", str(f), "-f", "json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["totals"]["handshakes"] == 2
    assert f"1 lines are not tlssniff verdicts, skipped (first: line 2: {reason}" in \
        result.stderr.replace("\n", "")
    # A file of nothing but such lines is an unusable input: one line, exit 2.
    f.write_text(bad + "\n")
    proc = run_tlssniff("analyze", str(f), check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"tlssniff: error: {f}: not a ")  # verdict file / capture
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_overlong_line_is_skipped(tmp_path):
    from tlssniff.sources import MAX_LINE

    f = tmp_path / "v.jsonl"
    f.write_text(_line() + "\n" + '{"ts": "' + "9" * (MAX_LINE + 10) + '"}\n' + _line(ts=2.5) + "\n")
    result = _runner.invoke(app, ["analyze", str(f), "-f", "json"], catch_exceptions=False)
    assert json.loads(result.stdout)["totals"]["handshakes"] == 2
    assert "longer than" in result.stderr


_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=40), st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(json.loads(_line()).keys() | {
    "frames", "ja4", "ticket_key_name", "psk_key_name", "alpn_offered", "capture", "note",
    "ticket_lifetime", "issued_session_id", "alert", "cipher", "starttls", "transport",
    "client_hello_ts", "ticket_len"})), _FIELD_VALUES, max_size=8))
def test_any_mutated_verdict_is_refused_or_safe(changes):
    """A verdict line with any fields replaced: refused with a ValueError, or read into a
    verdict whose own JSON line (strings written unescaped) still parses to the same values."""
    from tlssniff.sources import verdict_from_dict

    doc = {**json.loads(_line()), **changes}
    try:
        v = verdict_from_dict(doc)
    except ValueError as err:
        assert "\n" not in str(err) and len(str(err)) < 200
        return
    assert json.loads(v.to_json_line()) == json.loads(json.dumps(v.to_dict()))


# -- one sensor per node, one central command ------------------------------------------------


def _diag_script():
    import importlib.util
    import sys

    name = "tlssniff_make_diagnostic_captures"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "scripts" / "make_diagnostic_captures.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _live_missing() -> str | None:
    import os
    import shutil

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: live capture on the loopback interface"
    if shutil.which("nginx") is None and not os.access("/usr/sbin/nginx", os.X_OK):
        return "nginx is not installed (scripts/install-system-deps.sh)"
    from tlssniff.capture.live import LiveCaptureError, _find_libpcap

    try:
        _find_libpcap()  # live capture's one system requirement
    except LiveCaptureError as err:
        return str(err)
    return None


@pytest.mark.skipif(_live_missing() is not None, reason=_live_missing() or "")
def test_live_sensor_per_node_then_one_central_analysis(tmp_path):
    """Two nginx nodes with their own ticket keys, one ``tlssniff live lo -f jsonl`` sensor
    filtered on each node's address (as on each node's eth0); ``analyze`` of the two verdict
    files gives the cross-node findings the clients' own reports prove."""
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    mdc = _diag_script()
    mc = mdc.mc
    cert, key = mc.make_cert(tmp_path)
    port, a, b = 25050, "127.0.0.2", "127.0.0.3"
    directives = ["ssl_session_cache shared:SSL:1m", "ssl_session_tickets on"]
    sensors = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(mdc.nginx(tmp_path / "a", cert, key, [(f"{a}:{port}", directives)]))
        stack.enter_context(mdc.nginx(tmp_path / "b", cert, key, [(f"{b}:{port}", directives)]))
        for host in (a, b):
            mdc.wait_listening_on(host, port)
            out = tmp_path / f"{host}.jsonl"
            err = open(tmp_path / f"{host}.err", "wb")
            stack.callback(err.close)
            proc = subprocess.Popen(
                [sys.executable, "-m", "tlssniff", "live", "lo", "--filter",
                 f"tcp port {port} and host {host}", "-f", "jsonl", "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=err)
            stack.callback(lambda p=proc: p.poll() is None and (p.kill(), p.wait(10)))
            deadline = time.monotonic() + 20
            while b"listening on" not in (tmp_path / f"{host}.err").read_bytes():
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / f"{host}.err").read_text()
                time.sleep(0.05)
            sensors.append((proc, out))
        reports = []
        for first, other in ((a, b), (b, a)):
            run, s = mc.py_client(port, host=first, max_version=mdc.TLS12)
            reports.append(run.reused)
            reports.append(mc.py_client(port, host=first, session=s, offered="ticket",
                                        max_version=mdc.TLS12)[0].reused)
            reports.append(mc.py_client(port, host=other, session=s, offered="ticket",
                                        max_version=mdc.TLS12)[0].reused)
        assert reports == [False, True, False, False, True, False]  # the clients' own view
        time.sleep(0.5)
        for proc, _ in sensors:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    doc = json.loads(tlssniff("analyze", *(str(out) for _, out in sensors), "-f", "json"))
    sa, sb = f"{a}:{port} tlssniff.test", f"{b}:{port} tlssniff.test"
    assert sorted((f["code"], tuple(f["servers"])) for f in doc["findings"]) == [
        ("cross_server_refused", (sa, sb)), ("cross_server_refused", (sb, sa)),
        ("ticket_keys_differ", (sa, sb))]
    assert doc["totals"]["handshakes"] == 6 and doc["totals"]["resumed"] == 2
