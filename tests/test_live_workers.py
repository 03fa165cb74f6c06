"""tlssniff live lo --workers 2: the kernel's PACKET_FANOUT_HASH splits the connections between two
analysis processes; one stream, one summary, every verdict as its client reported it."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.conftest import assert_verdicts
from tests.test_e2e_loopback import _load_loopback
from tests.test_live import Live, needs_root

# This suite's ports (26520-26529).
P12, P12_SID, P13 = 26520, 26521, 26522
METRICS = 26529


@pytest.fixture(scope="module")
def lo():
    return _load_loopback()


@pytest.fixture
def cert(lo, tmp_path):
    return lo.make_cert(tmp_path)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@needs_root
def test_two_workers_classify_every_connection_as_its_client(lo, cert, tmp_path):
    if not all(_free(p) for p in (P12, P12_SID, P13)):
        pytest.skip("ports in use")
    crt, key = cert
    log = tmp_path / "s_server.log"
    t12 = ssl.TLSVersion.TLSv1_2
    runs = []
    out = tmp_path / "live.jsonl"
    with lo.OpenSSLServer(P12, crt, key, "-tls1_2", log=log), \
            lo.OpenSSLServer(P12_SID, crt, key, "-tls1_2", "-no_ticket", log=log), \
            lo.OpenSSLServer(P13, crt, key, log=log):
        with Live(tmp_path, [P12, P12_SID, P13], "-f", "jsonl", "-o", str(out),
                  "--workers", "2", "--metrics", f"127.0.0.1:{METRICS}",
                  "--fail-under", "60%", "--min-handshakes", "4") as live:
            for _ in range(6):
                for port, version, offered in ((P12, t12, "ticket"),
                                               (P12_SID, t12, "session_id"),
                                               (P13, ssl.TLSVersion.MAXIMUM_SUPPORTED, "psk")):
                    first, session = lo.py_client(port, max_version=version)
                    again, _ = lo.py_client(port, max_version=version, session=session,
                                            offered=offered)
                    runs += [first, again]
            # Verdicts reach the parent in batches, the health once a second.
            exposition = _scrape_when(lambda text: _value(text, "tlssniff_verdicts_total") == 36
                                      and _value(text, "tlssniff_frames_total") > 36 * 8)
            # Every server resumed one connection in two: under 60%, exit 3 (as one process).
            assert live.stop() == 3, live.stderr.read_text()
    assert [r.reused for r in runs] == [False, True] * 18
    records = live.records()
    assert len(records) == 36
    assert_verdicts(records, [r.truth() for r in runs])
    summary = live.stdout.read_text()
    assert "stopped by SIGTERM" in summary and ", 0 dropped" in summary, summary
    assert "2 workers (PACKET_FANOUT_HASH)" in summary, summary
    # Both workers had connections, and together every one.
    split = summary.split("PACKET_FANOUT_HASH): ")[1].split(" TLS")[0]
    a, b = (int(x) for x in split.split(" + "))
    assert a + b == 36 and a > 0 and b > 0, split
    err = live.stderr.read_text()
    assert "running as nobody" in err
    # One metrics endpoint for both workers: every verdict, the health summed.
    resumed = sum(_value(exposition, "tlssniff_handshakes_total", f'handshake="{h}"')
                  for h in ("ticket", "session_id", "psk"))
    assert resumed == 18, exposition
    assert _value(exposition, "tlssniff_handshakes_total", 'handshake="full"') == 18
    from tlssniff.flow.table import Limits

    assert _value(exposition, "tlssniff_pending_memory_limit_bytes") == \
        2 * Limits().max_pending_memory  # each worker has the whole bound
    under = [line for line in err.splitlines() if "resumption rate" in line and "under" in line]
    assert len(under) == 3, err


def _scrape_when(ready, timeout: float = 15.0) -> str:
    """GET /metrics until ``ready(text)`` (the parent receives verdicts in batches)."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=5) as r:
            text = r.read().decode()
        if ready(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"metrics never ready:\n{text}")


def _value(text: str, name: str, having: str = "") -> float:
    """The sum of ``name``'s samples whose labels contain ``having``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name):len(name) + 1] in (" ", "{")) \
                and having in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@needs_root
def test_workers_need_the_ring():
    from tests.conftest import run_tlssniff

    proc = run_tlssniff("live", "lo", "--workers", "2", "--backend", "pcap", "--duration", "1",
                        check=False)
    assert proc.returncode == 2
    assert "--workers" in proc.stderr and proc.stderr.count("\n") == 1
