"""Self-check: capture the probe's own traffic and classify it with the passive analyzer.

The client's view (``SSLObject.session_reused``) and the wire's view (tlssniff's verdict of the
same connection, matched by client and server ``ip:port`` and, where a port was reused, by
time: :func:`match_connections`) are two independent witnesses: the
first is OpenSSL's own state machine, the second is tlssniff's reading of the bytes. They must
agree on every connection; a disagreement is shown, never averaged away.

Capture is ``tcpdump`` in a subprocess (it needs root or CAP_NET_RAW), with a BPF filter that
names exactly the targets' addresses and ports, on the interface the kernel routes to the first
target (``ip route get``), or on ``any`` when targets go out through different interfaces.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tlssniff.errors import UsageError
from tlssniff.probe.client import MECHANISMS
from tlssniff.probe.target import Target

START_TIMEOUT = 5.0  # seconds for tcpdump to say "listening on"
SETTLE = 0.25  # seconds the capture file must stay the same size before tcpdump is stopped
SETTLE_MAX = 5.0  # ... waiting at most this long for it (tcpdump writes each packet, -U)


PHASES = ("issue", "sequential", "concurrent", "matrix", "age")


class Capture:
    """A running tcpdump writing a classic pcap into a private temporary directory."""

    def __init__(self, iface: str, bpf: str):
        self.iface, self.bpf = iface, bpf
        self.dir = Path(tempfile.mkdtemp(prefix="tlssniff-probe-"))
        self.path = self.dir / "probe.pcap"
        self.proc: subprocess.Popen | None = None
        self.log = ""
        self.dropped: int | None = None

    def start(self) -> None:
        # -B 16 MiB: with the default buffer, bursts of loopback handshakes lost packets.
        cmd = ["tcpdump", "-i", self.iface, "-n", "-U", "--immediate-mode", "-B", "16384",
               "-w", str(self.path)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd[1:1] = ["-Z", "root"]  # keep writing into our directory after dropping privileges
        cmd.append(self.bpf)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + START_TIMEOUT
        seen = b""
        while b"listening on" not in seen:
            line = self.proc.stderr.readline()
            seen += line
            if not line or time.monotonic() > deadline:
                self._kill()
                raise CaptureUnavailable(
                    f"tcpdump did not start: {seen.decode(errors='replace').strip()[-300:]}")

    def stop(self) -> Path:
        # tcpdump may still be behind the last connection on a busy machine, and what it has
        # not read from the kernel when it stops is lost: wait until the file stops growing.
        deadline = time.monotonic() + SETTLE_MAX
        size = -1
        while time.monotonic() < deadline:
            now = self.path.stat().st_size if self.path.exists() else 0
            if now == size:
                break
            size = now
            time.sleep(SETTLE)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        if self.proc is not None and self.proc.stderr is not None:
            self.log = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()
        m = re.search(r"(?m)^(\d+) packets? dropped by kernel", self.log)
        self.dropped = int(m.group(1)) if m else None
        return self.path

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=START_TIMEOUT)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class CaptureUnavailable(Exception):
    pass


def bpf_for(targets: list[Target]) -> str:
    terms = [f"(host {t.ip.split('%')[0]} and port {t.port})" for t in targets]
    return "tcp and (" + " or ".join(terms) + ")"


def route_iface(ip: str) -> str | None:
    """The interface the kernel would use towards ``ip`` (Linux ``ip route get``)."""
    if shutil.which("ip") is None:
        return None
    try:
        out = subprocess.run(["ip", "route", "get", ip], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\bdev (\S+)", out)
    return m.group(1) if m else None


def start_capture(config, targets: list[Target]) -> Capture | None:
    """Start capturing when asked or when able; None when the self-check is off or impossible
    (the reason is kept for the report in ``_unavailable``)."""
    global _unavailable
    _unavailable = None
    wanted = config.self_check == "on" or config.capture_iface or config.write
    if config.self_check == "off":
        if config.write:
            raise UsageError("--write keeps the self-check capture: it needs the self-check")
        _unavailable = "switched off (--no-self-check)"
        return None
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not root and not config.capture_iface:
        if config.write or config.self_check == "on":
            raise UsageError("capturing needs root (or --capture IFACE with CAP_NET_RAW)")
        _unavailable = "not root: run as root, or give --capture IFACE with CAP_NET_RAW"
        return None
    if shutil.which("tcpdump") is None:
        if wanted:
            raise UsageError("the self-check needs tcpdump, which is not installed")
        _unavailable = "tcpdump is not installed"
        return None
    iface = config.capture_iface
    if not iface:
        ifaces = {route_iface(t.ip) for t in targets}
        iface = ifaces.pop() if len(ifaces) == 1 and None not in ifaces else "any"
    cap = Capture(iface, bpf_for(targets))
    try:
        cap.start()
    except CaptureUnavailable as err:
        cap.cleanup()
        if wanted:
            raise UsageError(f"cannot capture on {iface}: {err}") from None
        _unavailable = str(err)
        return None
    return cap


_unavailable: str | None = None


@dataclass
class Group:
    """Client view against wire view for one (target, mechanism, phase)."""

    target: str
    mechanism: str
    phase: str
    client: Counter = field(default_factory=Counter)  # handshake as the client saw it
    wire: Counter = field(default_factory=Counter)  # handshake as the wire shows it
    disagree: int = 0

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "mechanism": self.mechanism,
            "phase": self.phase,
            "client": dict(sorted(self.client.items())),
            "wire": dict(sorted(self.wire.items())),
            "disagree": self.disagree,
        }


@dataclass
class SelfCheck:
    ran: bool
    reason: str | None = None  # why it did not run
    interface: str | None = None
    bpf: str | None = None
    capture: str | None = None  # the kept file (--write)
    dropped: int | None = None
    connections: int = 0  # attempts compared
    agree: int = 0
    disagreements: list[dict] = field(default_factory=list)
    unseen: int = 0  # attempts the analyzer reported no verdict for
    unseen_reason: str | None = None
    groups: list[Group] = field(default_factory=list)
    counters: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.ran and not self.disagreements

    def to_dict(self) -> dict:
        return {
            "ran": self.ran,
            "reason": self.reason,
            "interface": self.interface,
            "bpf": self.bpf,
            "capture": self.capture,
            "dropped": self.dropped,
            "connections": self.connections,
            "agree": self.agree,
            "unseen": self.unseen,
            "unseen_reason": self.unseen_reason,
            "disagreements": self.disagreements,
            "groups": [g.to_dict() for g in self.groups],
        }


def check(result, capture: Capture | None, pcap: Path | None) -> SelfCheck:
    """Run the passive analyzer over the capture; put each verdict beside its attempt."""
    if capture is None or pcap is None:
        return SelfCheck(ran=False, reason=_unavailable)
    from tlssniff.engine.pipeline import analyze_paths

    verdicts: dict[tuple[str, str], list] = {}

    def on_verdict(v) -> None:
        verdicts.setdefault((v.client, v.server), []).append(v)

    sc = SelfCheck(ran=True, interface=capture.iface, bpf=capture.bpf, dropped=capture.dropped)
    try:
        if pcap.exists() and pcap.stat().st_size > 0:
            analyzer = analyze_paths([str(pcap)], on_verdict)
            sc.counters = analyzer.counters.to_dict()
        if result.config.write:
            sc.capture = keep(pcap, Path(result.config.write))
    finally:
        capture.cleanup()

    groups: dict[tuple, Group] = {}
    starttls = result.config.starttls
    attempts = [a for a in result.attempts() if a.outcome.client is not None]
    wire_of = match_connections(attempts, verdicts)
    for a in attempts:  # (an attempt without a client address made no TCP connection)
        g = groups.get((a.target, a.mechanism, a.phase))
        if g is None:
            g = groups[(a.target, a.mechanism, a.phase)] = Group(a.target, a.mechanism, a.phase)
        g.client[a.handshake] += 1
        v = wire_of.get(id(a))
        if v is None:
            a.wire = None
            g.wire["unseen"] += 1
            sc.unseen += 1
            if not starttls:
                sc.disagreements.append(_disagreement(a, None, "no verdict on the wire"))
                g.disagree += 1
            continue
        a.wire = {
            "offered": v.offered.value,
            "handshake": v.handshake.value,
            "version": v.version,
            "note": v.note.value if v.note else None,
            "frames": list(v.frames),
        }
        g.wire[v.handshake.value] += 1
        if not a.ok:
            continue  # the client has no view of a failed handshake; the wire's is reported
        sc.connections += 1
        why = []
        if v.handshake.value != a.handshake:
            why.append(f"client {a.handshake}, wire {v.handshake.value}")
        if v.offered.value != a.offered:
            why.append(f"client offered {a.offered}, wire shows {v.offered.value}")
        if why:
            sc.disagreements.append(_disagreement(a, v, "; ".join(why)))
            g.disagree += 1
        else:
            sc.agree += 1
    if starttls and sc.unseen:
        sc.unseen_reason = ("the passive analyzer does not follow STARTTLS upgrades yet: "
                            "those connections are not classified")
    order = {p: i for i, p in enumerate(PHASES)}
    mechs = {m: i for i, m in enumerate(MECHANISMS)}
    sc.groups = sorted(groups.values(),
                       key=lambda g: (order.get(g.phase, 9), mechs[g.mechanism], g.target))
    return sc


CLOCK_SLACK = 0.001  # seconds: a packet's capture time is never before the connect() it follows,
# but pcap keeps microseconds and the client's clock is read a little before connect()


def match_connections(attempts: list, verdicts: dict[tuple[str, str], list]) -> dict[int, object]:
    """Each attempt's verdict (by ``id(attempt)``); attempts without one are left out.

    Linux reuses a loopback client port still in TIME_WAIT (``net.ipv4.tcp_tw_reuse=2``, the
    default), so two connections of one probe can share client and server ``ip:port``. The
    connection of an attempt is then the first one on that pair that starts after the attempt
    did and before the next attempt on the pair did: the later connection's verdict is not the
    earlier attempt's."""
    by_pair: dict[tuple[str, str], list] = {}
    for a in attempts:
        by_pair.setdefault((a.outcome.client, a.server), []).append(a)
    out: dict[int, object] = {}
    for pair, tried in by_pair.items():
        seen = sorted(verdicts.get(pair, ()), key=lambda v: v.ts)
        if not seen:
            continue
        if len(seen) == 1 and len(tried) == 1:
            out[id(tried[0])] = seen[0]  # one each: no clock to trust (a capture card's, say)
            continue
        tried.sort(key=lambda a: a.outcome.started)
        for i, a in enumerate(tried):
            lo = a.outcome.started - CLOCK_SLACK
            hi = tried[i + 1].outcome.started - CLOCK_SLACK if i + 1 < len(tried) else float("inf")
            v = next((v for v in seen if lo <= v.ts < hi), None)
            if v is not None:
                out[id(a)] = v
    return out


def _disagreement(a, v, why: str) -> dict:
    return {
        "client": a.outcome.client,
        "server": a.server,
        "mechanism": a.mechanism,
        "phase": a.phase,
        "client_view": {"offered": a.offered, "handshake": a.handshake},
        "wire_view": None if v is None else {"offered": v.offered.value,
                                             "handshake": v.handshake.value,
                                             "frames": list(v.frames)},
        "why": why,
        "ts": round(a.outcome.started, 6),
    }


def keep(pcap: Path, dest: Path) -> str:
    """Keep the capture: pcapng (tlssniff's writer) when the name says so, else the pcap as is
    (never through a link, 0600: :func:`tlssniff.output.files.open_output`)."""
    from tlssniff.capture.files import open_capture
    from tlssniff.capture.pcapng import DEFAULT_SNAPLEN, PcapngWriter
    from tlssniff.output.files import open_output

    try:
        if dest.suffix.lower() == ".pcapng":
            cap = open_capture(pcap)
            with open_output(dest, "wb") as out:
                writer = PcapngWriter(out, application="probe")
                for ts, linktype, buf in cap.frames():
                    if not writer.frames and cap.snaplen:
                        writer.interface(linktype, cap.snaplen)  # the pcap's own snap length
                    writer.write(ts, buf, writer.interface_for(linktype))
                if not writer.frames:
                    writer.interface(cap.linktype or 1, cap.snaplen or DEFAULT_SNAPLEN)
        else:
            with open(pcap, "rb") as src, open_output(dest, "wb") as out:
                shutil.copyfileobj(src, out)
    except OSError as err:
        raise UsageError(f"{dest}: cannot write: {err.strerror}") from None
    return str(dest)
