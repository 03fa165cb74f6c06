"""``tlssniff live`` on loopback: real servers and clients while the capture runs.

``tlssniff live lo -f jsonl --write FILE.pcapng`` runs as a subprocess (as a user would run it,
privileges dropped to ``nobody``) while ``openssl s_server`` (TLS 1.2 with and without tickets,
TLS 1.3) is used by ``openssl s_client -sess_out/-sess_in`` and Python ``ssl`` with
``session=``. The live verdicts must equal the clients' own reports (``Reused,``/``New,``,
``session_reused``), the ``--write`` file re-analyzed must give the same verdicts, SIGTERM and
SIGINT must still produce the summary (connections open at the stop included), and bad
interfaces and filters must give one-line errors.

The loopback machinery (servers, clients, ports) is ``scripts/make_captures.py``'s, as in
``tests/test_e2e_loopback.py``. Tests that capture need root (CI runs as root) and skip with the
reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, VERDICT_FIELDS, analyze_jsonl, assert_verdicts, by_endpoints
from tests.test_e2e_loopback import _load_loopback

TIMEOUT = 20.0


def _missing_requirement() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: live capture on the loopback interface"
    for tool in ("openssl", "tshark", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps.sh)"
    from tlssniff.capture.live import LiveCaptureError, _find_libpcap

    try:
        _find_libpcap()
    except LiveCaptureError as err:
        return str(err)
    return None


_REASON = _missing_requirement()
needs_root = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@pytest.fixture(scope="module")
def lo():
    return _load_loopback()


@pytest.fixture
def cert(lo, tmp_path: Path) -> tuple[Path, Path]:
    return lo.make_cert(tmp_path)


class Live:
    """``python -m tlssniff live lo ...`` in the background; stopped by a signal."""

    def __init__(self, tmp: Path, ports: list[int], *args: str, name: str = "live"):
        self.jsonl = tmp / f"{name}.jsonl"
        self.pcapng = tmp / f"{name}.pcapng"
        self.stdout = tmp / f"{name}.out"
        self.stderr = tmp / f"{name}.err"
        bpf = "tcp and (" + " or ".join(f"port {p}" for p in sorted(set(ports))) + ")"
        self.cmd = [sys.executable, "-m", "tlssniff", "live", "lo", "--filter", bpf, *args]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Live:
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, stdout=out, stderr=err)
        deadline = time.monotonic() + TIMEOUT
        while b"listening on" not in self.stderr.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"tlssniff live did not start:\n{self.stderr.read_text()}")
            time.sleep(0.05)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> int:
        time.sleep(0.3)  # the last ACKs and FINs reach the capture
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)

    def __exit__(self, *exc) -> None:
        self.kill()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]


def _same_verdicts(a: list[dict], b: list[dict]) -> None:
    ga, gb = by_endpoints(a), by_endpoints(b)
    assert set(ga) == set(gb)
    for key in ga:
        for name in VERDICT_FIELDS + ("established", "cipher", "session_id"):
            assert ga[key][name] == gb[key][name], (key, name, ga[key][name], gb[key][name])
        assert abs(ga[key]["ts"] - gb[key]["ts"]) < 2e-6, (key, ga[key]["ts"], gb[key]["ts"])


@needs_root
def test_live_verdicts_equal_the_clients(lo, cert, tmp_path: Path):
    """TLS 1.2 tickets on/off and TLS 1.3; s_client and Python; full, resumed and refused."""
    crt, key = cert
    p12, p12_sid, p13 = (lo.free_port() for _ in range(3))
    ports = [p12, p12_sid, p13]
    s_tkt, s_sid, s_13 = (tmp_path / f"{n}.pem" for n in ("tkt", "sid", "psk"))
    t12 = ssl.TLSVersion.TLSv1_2
    log = tmp_path / "s_server.log"
    runs = []
    with lo.OpenSSLServer(p12, crt, key, "-tls1_2", log=log) as tickets, \
            lo.OpenSSLServer(p12_sid, crt, key, "-tls1_2", "-no_ticket", log=log), \
            lo.OpenSSLServer(p13, crt, key, log=log):
        with Live(tmp_path, ports, "-f", "jsonl", "-o", str(tmp_path / "live.jsonl"),
                  "--write", str(tmp_path / "live.pcapng")) as live:
            runs.append(lo.s_client(p12, "-tls1_2", sess_out=s_tkt))
            runs.append(lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"))
            runs.append(lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_out=s_sid))
            runs.append(lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_in=s_sid,
                                    offered="session_id"))
            runs.append(lo.s_client(p13, sess_out=s_13))
            runs.append(lo.s_client(p13, sess_in=s_13, offered="psk"))
            first, session = lo.py_client(p13)
            again, _ = lo.py_client(p13, session=session, offered="psk")
            runs += [first, again]
            first, session = lo.py_client(p12, max_version=t12)
            again, _ = lo.py_client(p12, max_version=t12, session=session, offered="ticket")
            runs += [first, again]
            tickets.restart()  # a new ticket key: the old ticket is refused
            runs.append(lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"))
            assert live.stop() == 0, live.stderr.read_text()
    assert [r.reused for r in runs] == [False, True] * 5 + [False], \
        [(r.server, r.offered, r.reused) for r in runs]
    # s_client's ports come from the SYNs in the --write file (clients ran one at a time)
    lo.assign_client_ports(runs, live.pcapng, ports)
    truth = [run.truth() for run in runs]
    records = live.records()
    assert_verdicts(records, truth)
    # The evidence file holds only handshake frames, and gives the same verdicts.
    assert_verdicts(analyze_jsonl(live.pcapng), truth)
    _same_verdicts(records, analyze_jsonl(live.pcapng))
    summary = live.stdout.read_text()  # jsonl went to -o FILE: the summary to stdout
    assert "stopped by SIGTERM" in summary and "0 dropped" in summary, summary
    assert "running as nobody" in live.stderr.read_text()


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_writes_the_summary(lo, cert, tmp_path: Path, sig: int):
    """A stop while a handshake is unanswered: exit 0, the summary, and that connection too."""
    crt, key = cert
    port, silent_port = lo.free_port(), lo.free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", silent_port))
    silent.listen(4)  # accepts (in the kernel) and never answers
    pending = socket.socket()
    try:
        with lo.OpenSSLServer(port, crt, key, log=tmp_path / "s.log"):
            with Live(tmp_path, [port, silent_port], "-o", str(tmp_path / "summary.txt"),
                      "--write", str(tmp_path / "live.pcapng")) as live:
                run = lo.s_client(port)
                pending.settimeout(TIMEOUT)
                pending.connect(("127.0.0.1", silent_port))
                pending_client = f"127.0.0.1:{pending.getsockname()[1]}"
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                hello = ssl.MemoryBIO(), ssl.MemoryBIO()
                obj = ctx.wrap_bio(*hello, server_hostname="pending.test")
                with pytest.raises(ssl.SSLWantReadError):
                    obj.do_handshake()
                pending.sendall(hello[1].read())  # a ClientHello, never answered
                rc = live.stop(sig)
    finally:
        pending.close()
        silent.close()
    assert rc == 0, live.stderr.read_text()
    summary = (tmp_path / "summary.txt").read_text()
    assert "TLS resumption per server" in summary, summary
    assert f"stopped by {signal.Signals(sig).name}" in summary, summary
    assert "0 dropped" in summary
    assert "? 1" in summary  # the unanswered ClientHello is in the table, as unknown
    # The connection still open at the stop is decided with what was seen.
    recs = by_endpoints(analyze_jsonl(live.pcapng))
    assert recs[(pending_client, f"127.0.0.1:{silent_port}")]["note"] == "no_server_hello"
    assert not run.reused


@needs_root
def test_jsonl_streams_before_the_stop_and_count(lo, cert, tmp_path: Path):
    """A verdict is on the output (flushed) while the capture still runs; --count stops it."""
    crt, key = cert
    port = lo.free_port()
    out = tmp_path / "stream.jsonl"
    with lo.OpenSSLServer(port, crt, key, log=tmp_path / "s.log"):
        with Live(tmp_path, [port], "-f", "jsonl", "-o", str(out), "--count", "1000") as live:
            run = lo.s_client(port)
            deadline = time.monotonic() + TIMEOUT
            while not out.read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            line = out.read_text().splitlines()[0]
            assert live.proc.poll() is None  # still capturing
            assert json.loads(line)["handshake"] == "full" and not run.reused
            assert live.stop() == 0


@needs_root
@pytest.mark.parametrize("iface,backend", [("lo", "pcap"), ("any", "auto")])
def test_libpcap_backend(lo, cert, tmp_path: Path, iface: str, backend: str):
    """The libpcap reader (used for ``any``, tunnels, vlan filters) gives the same verdicts."""
    crt, key = cert
    port = lo.free_port()
    sess = tmp_path / "s.pem"
    with lo.OpenSSLServer(port, crt, key, "-tls1_2", log=tmp_path / "s.log"):
        live = Live(tmp_path, [port], "-f", "jsonl", "-o", str(tmp_path / "live.jsonl"),
                    "--write", str(tmp_path / "live.pcapng"), "--backend", backend)
        live.cmd[4] = iface
        with live:
            runs = [lo.s_client(port, "-tls1_2", sess_out=sess),
                    lo.s_client(port, "-tls1_2", sess_in=sess, offered="ticket")]
            assert live.stop() == 0, live.stderr.read_text()
    assert "(pcap)" in live.stderr.read_text()
    assert [r.reused for r in runs] == [False, True]
    lo.assign_client_ports(runs, live.pcapng, [port])
    assert_verdicts(live.records(), [r.truth() for r in runs])
    _same_verdicts(live.records(), analyze_jsonl(live.pcapng))


def _tlssniff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlssniff", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=REPO)


def test_unknown_interface_lists_the_existing_ones():
    proc = _tlssniff("live", "nosuch0", "--count", "1")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("tlssniff: error: no such interface: 'nosuch0'"), line
    assert "\n" not in line and "lo" in line.split("interfaces:")[1]


@needs_root
def test_invalid_filter():
    proc = _tlssniff("live", "lo", "--filter", "tcp port", "--count", "1")
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("tlssniff: error: invalid filter 'tcp port': "), line
    assert "\n" not in line


@needs_root
@pytest.mark.skipif(shutil.which("capsh") is None, reason="capsh (libcap2-bin) is not installed")
def test_no_permission_says_what_to_do():
    """Root without CAP_NET_RAW (capsh drops it from the bounding set) cannot capture."""
    cmd = f"cd {REPO} && exec {sys.executable} -m tlssniff live lo --count 1"
    proc = subprocess.run(["capsh", "--drop=cap_net_raw", "--", "-c", cmd], capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("tlssniff: error: no permission to capture on lo"), line
    assert "run as root" in line and "setcap cap_net_raw,cap_net_admin=eip" in line


def test_bad_options():
    assert _tlssniff("live", "lo", "--format", "json").returncode == 2
    assert _tlssniff("live", "lo", "--duration", "0").returncode == 2


# -- pieces that need no capture -----------------------------------------------------------


def test_pcapng_writer_round_trip(tmp_path: Path):
    """Frames written by the evidence writer read back identically (and analyze the same)."""
    from tlssniff.capture.files import open_capture
    from tlssniff.capture.pcapng import PcapngWriter

    src = REPO / "captures" / "demo.pcapng"
    with open_capture(src) as cap:
        frames = list(cap.frames())
    out = tmp_path / "copy.pcapng"
    with open(out, "wb") as f:
        w = PcapngWriter(f, frames[0][1], if_name="lo", if_filter="tcp")
        for ts, _, frame in frames:
            w.write(ts, frame)
        w.close(received=len(frames), dropped=0)
    with open_capture(out) as cap:
        back = list(cap.frames())
    assert [(round(t, 6), lt, fr) for t, lt, fr in back] == \
        [(round(t, 6), lt, fr) for t, lt, fr in frames]
    _same_verdicts(analyze_jsonl(out), analyze_jsonl(src))


def test_dashboard_renders(tmp_path: Path):
    from rich.console import Console

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.engine.pipeline import Counters
    from tlssniff.analysis.verdict import ConnectionVerdict
    from tlssniff.capture.live import KernelStats
    from tlssniff.output.dashboard import Dashboard

    agg = Aggregator()
    for i in range(30):
        agg.add(ConnectionVerdict(ts=1.0, client=f"10.0.0.1:{1000 + i}",
                                  server=f"10.0.0.{i % 25}:443", capture=None))
    console = Console(file=open(tmp_path / "d.txt", "w"), width=100)
    d = Dashboard(console, "eth0", "tcp", agg, max_rows=5)
    console.print(d.render(1234, Counters(tls_connections=30), KernelStats(5000, 7, 0)))
    console.file.close()
    text = (tmp_path / "d.txt").read_text()
    assert "dropped 7" in text and "all servers" in text and "20 other servers" in text


def test_reused_client_port_is_a_new_connection():
    """A busy client reuses a 4-tuple within seconds: the bare SYN on the 4-tuple of a finished
    connection starts a new one (live path), and FIN marks the finished one closed so the table
    forgets it after CLOSED_GRACE instead of the idle timeout."""
    from tlssniff.engine.pipeline import Analyzer
    from tlssniff.capture.decode import decode_frame
    from tlssniff.capture.files import open_capture

    with open_capture(REPO / "captures" / "demo.pcapng") as cap:
        frames = list(cap.frames())
    first = decode_frame(frames[0][1], frames[0][2])
    conn = {(first[1], first[3]), (first[2], first[4])}
    mine = []
    for ts, lt, fr in frames:
        d = decode_frame(lt, fr)
        if d and {(d[1], d[3]), (d[2], d[4])} == conn:
            mine.append((ts, lt, fr))
    verdicts = []
    analyzer = Analyzer(verdicts.append)
    n = 0
    for shift in (0.0, 5.0):  # the same connection again, 5 s later, same ports
        for ts, lt, fr in mine:
            n += 1
            analyzer.feed_frame(ts + shift, lt, fr, n)
        assert len(verdicts) == (1 if shift == 0.0 else 2)
        flows = {id(f): f for f in analyzer.table.flows.values()}
        assert len(flows) == 1 and next(iter(flows.values())).closed
    analyzer.finish()
    assert len(verdicts) == 2
    assert verdicts[0].handshake == verdicts[1].handshake


def _my_port(lo) -> int:
    """A free port of the range this suite's own live servers use (21000-21999)."""
    for port in range(21400, 21999):
        if lo.port_is_free(port):
            return port
    raise AssertionError("no free port in 21400-21999")


@needs_root
def test_live_fail_under_exits_3_at_the_end(lo, cert, tmp_path: Path):
    """``live --fail-under`` holds a live run to the rate as ``analyze`` holds a file: two full
    handshakes and no resumption are 0%, under 80%: status 3, the server named on stderr, the
    summary still written; the limit options of analyze are taken (--max-pending-memory 64M)."""
    crt, key = cert
    port = _my_port(lo)
    with lo.OpenSSLServer(port, crt, key, "-tls1_2", log=tmp_path / "s.log"):
        live = Live(tmp_path, [port], "-f", "jsonl", "-o", str(tmp_path / "live.jsonl"),
                    "--fail-under", "80%", "--min-handshakes", "2",
                    "--max-pending-memory", "64M", "--idle-timeout", "5m")
        with live:
            runs = [lo.s_client(port, "-tls1_2"), lo.s_client(port, "-tls1_2")]
            status = live.stop()
    err = live.stderr.read_text()
    assert [r.reused for r in runs] == [False, False]
    assert status == 3, err
    assert f"127.0.0.1:{port}" in err and "80%" in err, err
    assert [r["handshake"] for r in live.records()] == ["full", "full"]
