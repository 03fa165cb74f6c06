#!/usr/bin/env python3
"""Re-create tlssniff's shipped captures and their truth files, on loopback only.

    python scripts/make_captures.py            # all captures into captures/
    python scripts/make_captures.py --only openssl-tls13 --out /tmp/caps

Needs root (tcpdump), openssl, tshark (mergecap, editcap), nginx and iproute2 (``ss``);
``scripts/install-system-deps.sh`` installs them.

Every capture is real traffic: real servers (``openssl s_server``, nginx, Python ``ssl``) and real
clients (``openssl s_client``, Python ``ssl``), recorded with ``tcpdump -i lo -U``. The truth of a
connection comes from the client's own report (s_client's ``New,``/``Reused,`` line and protocol,
``SSLSocket.session_reused`` and ``version()``) and from what the client was told to present
(``-sess_in`` with a ticket, ``-no_ticket``, ``session=``). Before a truth file is written, every
connection is checked against tshark's dissection of the hello messages; any disagreement aborts.

The loopback machinery (servers, clients, tcpdump, reading client ports back from a capture) is
also used by ``tests/test_e2e_loopback.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.testing.nginx import http_head, nginx_binary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SNI = "tlssniff.test"
HTTP_GET = b"GET / HTTP/1.0\r\nHost: " + SNI.encode() + b"\r\n\r\n"
TIMEOUT = 10.0  # seconds; every wait in this file is bounded by it

# RFC 8446 §4.1.3: the ServerHello.random of a HelloRetryRequest.
HRR_RANDOM = "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
EXT_SESSION_TICKET, EXT_PSK, EXT_EARLY_DATA = 35, 41, 42


class CaptureFailed(RuntimeError):
    """A tool failed, or a connection's truth disagrees with the wire."""


# --------------------------------------------------------------------------------------------
# Keys, ports, processes


def make_cert(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed ECDSA P-256 certificate for SNI (small, so the captures stay small)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
         "-subj", f"/CN={SNI}", "-addext", f"subjectAltName=DNS:{SNI}"],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    return cert, key


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    for host, family in (("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)):
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def wait_listening(port: int, proc: subprocess.Popen | None = None) -> None:
    """Wait until something listens on TCP ``port``; ask ``ss`` so no probe connection is made
    (a probe would be an extra, non-TLS connection in the capture)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=TIMEOUT).stdout
        if out.strip():
            return
        if proc is not None and proc.poll() is not None:
            raise CaptureFailed(f"server for port {port} exited with {proc.returncode}")
        time.sleep(0.02)
    raise CaptureFailed(f"nothing listens on port {port} after {TIMEOUT}s")


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Stop one process this module started, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=TIMEOUT)


class Tcpdump:
    """``tcpdump -i lo -U -w FILE`` on the given ports; stopped with SIGINT so it flushes."""

    def __init__(self, path: Path, ports: list[int]):
        self.path = path
        self.filter = "tcp and (" + " or ".join(f"port {p}" for p in sorted(set(ports))) + ")"
        self.proc: subprocess.Popen | None = None
        self.log = b""

    def __enter__(self) -> Tcpdump:
        # --immediate-mode: without it libpcap (TPACKET_V3) may hold a short capture's packets
        # in a ring block that SIGINT then discards ("0 packets captured").
        # -Z root: the file stays owned by the user running this script.
        # -B 32768: a 32 MB ring. Loopback segments are up to 64 KB, so the default 2 MB holds
        # about thirty of them: on a busy machine tcpdump fell behind and the kernel dropped
        # two of 280 packets.
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-B", "32768", "-Z", "root",
             "-w", str(self.path), self.filter],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        line = b""
        deadline = time.monotonic() + TIMEOUT
        while b"listening on" not in line:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                stop(self.proc, signal.SIGKILL)
                raise CaptureFailed(f"tcpdump did not start: {line.decode(errors='replace')}")
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.3)  # the last FIN/ACKs
        stop(self.proc, signal.SIGINT)
        if self.proc is not None and self.proc.stderr is not None:
            self.log = self.proc.stderr.read()
            self.proc.stderr.close()
        if exc[0] is None and not re.search(rb"(?m)^0 packets dropped by kernel", self.log):
            raise CaptureFailed(f"tcpdump dropped packets: {self.log.decode(errors='replace')}")


# --------------------------------------------------------------------------------------------
# Servers


class OpenSSLServer:
    """``openssl s_server`` on 127.0.0.1:PORT. ``restart()`` gives it a new process: an empty
    session cache and a new ticket key, so every earlier session is refused.

    With ``www`` it answers one HTTP GET per connection and closes; without it (needed for
    ``-early_data``, which s_server refuses to combine with ``-www``) it keeps the connection
    open until the client closes."""

    def __init__(self, port: int, cert: Path, key: Path, *args: str, www: bool = True,
                 log: Path | None = None):
        self.port, self.cert, self.key, self.args, self.www = port, cert, key, args, www
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> OpenSSLServer:
        cmd = ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}",
               "-cert", str(self.cert), "-key", str(self.key), *self.args]
        if self.www:
            cmd.append("-www")
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        # stdin stays an open pipe: s_server quits when its stdin reaches EOF.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out,
                                     stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc)
        return self

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        stop(self.proc)
        self.proc = None

    def __enter__(self) -> OpenSSLServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


NGINX_SERVERS = """\
    ssl_session_cache shared:SSL:1m;
    ssl_session_timeout 10m;
    server {{
        listen 127.0.0.1:{tickets_on} ssl;
        listen [::1]:{tickets_on} ssl;
        server_name {sni};
        ssl_session_tickets on;
        location / {{ return 200 "tickets on\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{tickets_off} ssl;
        server_name {sni};
        ssl_session_tickets off;
        location / {{ return 200 "tickets off\\n"; }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(directory: Path, cert: Path, key: Path, tickets_on: int, tickets_off: int):
    """A real nginx: one server with tickets on (IPv4 and [::1]), one with tickets off; both
    share the session cache ``shared:SSL:1m``."""
    binary = nginx_binary()
    if binary is None:
        raise CaptureFailed("nginx is not installed")
    conf = directory / "nginx.conf"
    conf.write_text(http_head(directory, cert, key, 64) + NGINX_SERVERS.format(
        sni=SNI, tickets_on=tickets_on, tickets_off=tickets_off))
    proc = subprocess.Popen([binary, "-p", str(directory), "-c", str(conf),
                             "-e", str(directory / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(tickets_on, proc)
        wait_listening(tickets_off, proc)
        yield proc
    finally:
        stop(proc, signal.SIGQUIT)  # graceful shutdown: master and worker exit


class PythonServer:
    """A Python ``ssl`` server thread: answers one request per connection, then closes.
    Records the SNI each connection sent (``sni_seen``)."""

    def __init__(self, host: str, port: int, cert: Path, key: Path, *, tickets: bool = True,
                 max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.maximum_version = max_version
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        if not tickets:
            self.ctx.options |= ssl.OP_NO_TICKET
        self.sni_seen: list[str | None] = []
        self.ctx.sni_callback = lambda sock, name, ctx: self.sni_seen.append(name)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(TIMEOUT)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                    # close_notify: OpenSSL drops the session of a connection closed without it
                    tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def __enter__(self) -> PythonServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Clients and the truth they report


@dataclass
class Run:
    """One client connection and what the client itself reported about it."""

    server: str  # "ip:port" as tlssniff prints it
    sni: str | None
    offered: str  # what the client was told to present: none/session_id/ticket/psk
    version: str  # negotiated, as the client reports it
    reused: bool  # the client's own report (s_client "Reused," / session_reused)
    hrr: bool = False  # the server was set up to force a HelloRetryRequest
    early_data: str = "none"  # s_client "Early data was accepted/rejected"
    client_port: int | None = None  # known up front for Python clients; else from the capture
    tool: str = ""
    story: str = ""  # one line for the truth file's reader
    extra: dict = field(default_factory=dict)

    @property
    def handshake(self) -> str:
        return self.offered if self.reused else "full"

    def client(self) -> str:
        host = self.server.rsplit(":", 1)[0]
        return f"{host}:{self.client_port}"

    def truth(self) -> dict:
        return {
            "client": self.client(),
            "server": self.server,
            "sni": self.sni,
            "version": self.version,
            "offered": self.offered,
            "handshake": self.handshake,
            "resumed": self.reused,
            "hrr": self.hrr,
            "early_data": self.early_data,
            "note": None,
            "tool": self.tool,
            "story": self.story,
        }


def _parse_s_client(out: str) -> tuple[str, bool, str]:
    """(version, reused, early data) from s_client's own report."""
    for line in out.splitlines():
        if line.startswith(("New, ", "Reused, ")):
            word, version = line.split(",")[:2]
            break
    else:
        raise CaptureFailed(f"s_client printed no New/Reused line:\n{out[-2000:]}")
    if "Early data was accepted" in out:
        early = "offered"  # accepted; on the wire only the offer is visible
    elif "Early data was rejected" in out:
        early = "rejected"
    else:
        early = "none"
    return version.strip(), word == "Reused", early


def s_client(port: int, *args: str, host: str = "127.0.0.1", sni: str | None = SNI,
             sess_in: Path | None = None, sess_out: Path | None = None,
             early_data: Path | None = None, www: bool = True, offered: str | None = None,
             hrr: bool = False, story: str = "") -> Run:
    """Run ``openssl s_client`` once and return its report.

    ``offered`` is what the session in ``sess_in`` makes the client present (the caller knows
    which server issued it); without ``sess_in`` it is ``none``. Against a ``-www`` server the
    client sends a GET and waits for the server to close (TLS 1.3 tickets arrive first); against
    a plain one it waits until its ``sess_out`` file is written (the ticket arrived), then closes.
    """
    if (sess_in is None) != (offered is None):
        raise ValueError("sess_in and offered go together: say what the session presents")
    addr = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    cmd = ["openssl", "s_client", "-connect", addr, *args]
    cmd += ["-servername", sni] if sni else ["-noservername"]
    if sess_in:
        cmd += ["-sess_in", str(sess_in)]
    if early_data:
        cmd += ["-early_data", str(early_data)]
    final_out = sess_out
    if sess_out:  # written beside, then moved: sess_in and sess_out may be the same file
        sess_out = sess_out.with_name(sess_out.name + ".new")
        sess_out.unlink(missing_ok=True)
        cmd += ["-sess_out", str(sess_out)]
    if www:
        proc = subprocess.run(cmd + ["-ign_eof"], input=HTTP_GET, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              timeout=TIMEOUT)
        out = proc.stdout.decode(errors="replace")
    else:
        if sess_out is None:
            raise ValueError("a non-www server needs sess_out to know when the handshake is over")
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while not (sess_out.exists() and sess_out.stat().st_size > 0):
            if time.monotonic() > deadline or p.poll() is not None:
                break
            time.sleep(0.02)
        time.sleep(0.1)  # a second ticket may follow the first
        out = p.communicate(b"", timeout=TIMEOUT)[0].decode(errors="replace")  # EOF: close
    version, reused, early = _parse_s_client(out)
    if sess_out is not None and not (sess_out.exists() and sess_out.stat().st_size > 0):
        raise CaptureFailed(f"s_client wrote no session to {sess_out}:\n{out[-2000:]}")
    if sess_out is not None and final_out is not None:
        sess_out.replace(final_out)
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Run(server=server, sni=sni, offered=offered or "none",
               version=version, reused=reused, hrr=hrr, early_data=early,
               tool="openssl s_client " + " ".join(a for a in args), story=story)


_CLIENT_CONTEXTS: dict[tuple, ssl.SSLContext] = {}


def _client_context(max_version: ssl.TLSVersion, alpn: tuple[str, ...]) -> ssl.SSLContext:
    """One context per setting: Python resumes a session only on the context that made it."""
    key = (max_version, alpn)
    if key not in _CLIENT_CONTEXTS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # self-signed test certificate
        ctx.maximum_version = max_version
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        _CLIENT_CONTEXTS[key] = ctx
    return _CLIENT_CONTEXTS[key]


def py_client(port: int, *, host: str = "127.0.0.1", sni: str | None = SNI,
              session: ssl.SSLSession | None = None, offered: str = "none",
              max_version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
              alpn: list[str] | None = None, story: str = "") -> tuple[Run, ssl.SSLSession]:
    """One Python ``ssl`` connection: handshake, GET, read to EOF (TLS 1.3 tickets arrive after
    the handshake). Returns the report and the session to resume with."""
    ctx = _client_context(max_version, tuple(alpn or ()))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as raw:
        raw.settimeout(TIMEOUT)
        raw.connect((host, port))
        client_port = raw.getsockname()[1]
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
            tls.sendall(HTTP_GET)
            while tls.recv(4096):
                pass
            reused, version, sess = tls.session_reused, tls.version(), tls.session
            chosen = tls.selected_alpn_protocol()
    server = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if session is None:
        offered = "none"
    run = Run(server=server, sni=sni, offered=offered, version=version, reused=reused,
              client_port=client_port, tool=f"python ssl {sys.version.split()[0]}",
              story=story, extra={"alpn": chosen})
    return run, sess


# --------------------------------------------------------------------------------------------
# Reading a capture back


def _tshark_fields(pcap: Path, ports: list[int], fields: list[str],
                   display: str) -> list[list[str]]:
    decode = [a for p in sorted(set(ports)) for a in ("-d", f"tcp.port=={p},tls")]
    cmd = ["tshark", "-r", str(pcap), "-n", *decode, "-Y", display, "-T", "fields",
           "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _endpoint(ip4: str, ip6: str, port: str) -> str:
    return f"[{ip6}]:{port}" if ip6 else f"{ip4}:{port}"


def connections_in(pcap: Path, ports: list[int]) -> list[tuple[str, str]]:
    """(client, server) of every TCP connection in the capture, in the order of their SYNs."""
    rows = _tshark_fields(pcap, ports, ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport",
                                        "ip.dst", "ipv6.dst", "tcp.dstport"],
                          "tcp.flags.syn == 1 && tcp.flags.ack == 0")
    seen: dict[str, tuple[str, str]] = {}
    for stream, s4, s6, sp, d4, d6, dp in rows:
        seen.setdefault(stream, (_endpoint(s4, s6, sp), _endpoint(d4, d6, dp)))
    return [seen[k] for k in sorted(seen, key=int)]


def assign_client_ports(runs: list[Run], pcap: Path, ports: list[int]) -> None:
    """Give every run its client port: the n-th connection in the capture is the n-th run
    (clients ran one after another). Python clients' known ports must agree."""
    conns = connections_in(pcap, ports)
    if len(conns) != len(runs):
        raise CaptureFailed(f"{pcap.name}: {len(conns)} TCP connections, {len(runs)} client runs")
    for run, (client, server) in zip(runs, conns):
        if server != run.server:
            raise CaptureFailed(f"{pcap.name}: connection {client}->{server}, run was {run.server}")
        port = int(client.rsplit(":", 1)[1])
        if run.client_port is not None and run.client_port != port:
            raise CaptureFailed(f"{pcap.name}: python client port {run.client_port} != {port}")
        run.client_port = port


def wire_facts(pcap: Path, ports: list[int]) -> dict[tuple[str, str], dict]:
    """What tshark's dissection of the hellos says about each connection, independently of the
    clients' reports: sni, version, offered, handshake, hrr, early_data (offered at all)."""
    fields = ["tcp.stream", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
              "tcp.dstport", "tls.record.content_type", "tls.handshake.type",
              "tls.handshake.random", "tls.handshake.extension.type",
              "tls.handshake.extension.len", "tls.handshake.session_id_length",
              "tls.handshake.extensions.supported_version", "tls.handshake.extensions_server_name",
              "tls.handshake.version"]
    streams: dict[str, dict] = {}
    for row in _tshark_fields(pcap, ports, fields, "tls"):
        row += [""] * (len(fields) - len(row))
        (stream, s4, s6, sp, d4, d6, dp, ctypes, htypes, randoms, ext_types, ext_lens, sid_len,
         versions, sni, hello_version) = row
        src, dst = _endpoint(s4, s6, sp), _endpoint(d4, d6, dp)
        from_server = int(sp) in ports
        st = streams.setdefault(stream, {"client": dst if from_server else src,
                                         "server": src if from_server else dst,
                                         "ch": [], "sh": [], "server_htypes": [],
                                         "server_ctypes": []})
        htypes_l = [int(x) for x in htypes.split(",") if x]
        exts = list(zip([int(x) for x in ext_types.split(",") if x],
                        [int(x) for x in ext_lens.split(",") if x]))
        hello = {"random": randoms.split(",")[0], "exts": exts,
                 "sid_len": int(sid_len.split(",")[0] or 0),
                 "versions": [x for x in versions.split(",") if x], "sni": sni or None,
                 "legacy_version": hello_version.split(",")[0]}
        if from_server:
            st["server_htypes"] += htypes_l
            st["server_ctypes"] += [int(x) for x in ctypes.split(",") if x]
            if 2 in htypes_l:
                st["sh"].append(hello)
        elif 1 in htypes_l:
            st["ch"].append(hello)
    names = {"0x0304": "TLSv1.3", "0x0303": "TLSv1.2", "0x0302": "TLSv1.1", "0x0301": "TLSv1.0"}
    facts = {}
    for st in streams.values():
        if not st["ch"] or not st["sh"]:
            continue
        final = st["sh"][-1]
        version = names[final["versions"][0] if final["versions"] else final["legacy_version"]]
        hrr = any(sh["random"] == HRR_RANDOM for sh in st["sh"])
        ch_ext = {t for ch in st["ch"] for t, _ in ch["exts"]}
        offered_13 = any("0x0304" in ch["versions"] for ch in st["ch"])
        if version == "TLSv1.3":
            resumed = EXT_PSK in {t for t, _ in final["exts"]}
        else:
            # The server's next message after ServerHello (RFC 5246 §7.3, RFC 5077 §3.1).
            after = st["server_htypes"][st["server_htypes"].index(2) + 1:]
            if after[:1] in ([11], [12], [13], [14]):  # Certificate .. ServerHelloDone
                resumed = False
            elif after[:1] == [4] or (not after and st["server_ctypes"][:2] == [22, 20]):
                resumed = True  # NewSessionTicket, or ChangeCipherSpec right after ServerHello
            else:
                raise CaptureFailed(f"{st['client']}: nothing proves the handshake type")
        if EXT_PSK in ch_ext:
            offered = "psk"
        elif any(t == EXT_SESSION_TICKET and n > 0 for ch in st["ch"] for t, n in ch["exts"]):
            offered = "ticket"
        elif st["ch"][0]["sid_len"] and version != "TLSv1.3" and (resumed or not offered_13):
            offered = "session_id"
        else:
            offered = "none"
        facts[(st["client"], st["server"])] = {
            "sni": st["ch"][0]["sni"], "version": version, "offered": offered,
            "handshake": offered if resumed else "full", "hrr": hrr,
            "early_data_ext": EXT_EARLY_DATA in {t for t, _ in st["ch"][0]["exts"]},
        }
    return facts


def check_against_wire(runs: list[Run], pcap: Path, ports: list[int]) -> None:
    """Every run's truth must agree with the wire; raise on the first disagreement."""
    facts = wire_facts(pcap, ports)
    problems = []
    for run in runs:
        key = (run.client(), run.server)
        wire = facts.get(key)
        if wire is None:
            problems.append(f"{key}: no ClientHello+ServerHello in the capture")
            continue
        for name in ("sni", "version", "offered", "handshake", "hrr"):
            mine = getattr(run, name)
            if wire[name] != mine:
                problems.append(f"{key} {name}: client says {mine!r}, wire says {wire[name]!r}")
        if wire["early_data_ext"] != (run.early_data != "none"):
            problems.append(f"{key}: early_data {run.early_data!r} but the ClientHello "
                            f"{'has' if wire['early_data_ext'] else 'lacks'} early_data")
        # What a passive observer can prove about 0-RTT (docs/verdicts.md).
        provably_rejected = wire["hrr"] or wire["handshake"] == "full"
        if run.early_data == "offered" and provably_rejected:
            problems.append(f"{key}: client says 0-RTT accepted, the wire says rejected")
        if run.early_data == "rejected" and not provably_rejected:
            problems.append(f"{key}: 0-RTT rejected inside the encrypted part; truth would "
                            "claim what the wire cannot show")
    if problems:
        raise CaptureFailed(f"{pcap.name}:\n" + "\n".join(problems))


def expect(run: Run, *, reused: bool, early_data: str | None = None) -> Run:
    """The scenario's intent: a run that did not do what it was for makes the capture lie."""
    if run.reused != reused:
        raise CaptureFailed(f"{run.story}: client reports reused={run.reused}, wanted {reused}")
    if early_data is not None and run.early_data != early_data:
        raise CaptureFailed(f"{run.story}: early data {run.early_data!r}, wanted {early_data!r}")
    return run


# --------------------------------------------------------------------------------------------
# The shipped captures


@dataclass
class Ports:
    tls12_tickets: int = 44330
    tls12_no_ticket: int = 44331
    tls13: int = 44332
    tls13_hrr: int = 44333
    tls13_early: int = 44334
    tls13_early_hrr: int = 44335
    tls13_pq: int = 44336  # used only when OpenSSL offers X25519MLKEM768 (3.5 and later)
    nginx_tickets: int = 44340
    nginx_no_tickets: int = 44341
    py_tickets: int = 44350
    py_no_ticket: int = 44351


def scenario_tls12(work: Path, cert: Path, key: Path, P: Ports) -> tuple[list[Run], list[int]]:
    """s_server -tls1_2: full, ticket and session-id resumption, both refused after restarts."""
    a = OpenSSLServer(P.tls12_tickets, cert, key, "-tls1_2", log=work / "s_server.log")
    b = OpenSSLServer(P.tls12_no_ticket, cert, key, "-tls1_2", "-no_ticket",
                      log=work / "s_server.log")
    ta, tb = work / "tls12-ticket.pem", work / "tls12-sid.pem"
    runs = []
    with a, b:
        # The ticket server's client also offers TLS 1.3 (default s_client): its random
        # compatibility session id is not an offer.
        runs.append(expect(s_client(a.port, sess_out=ta, story="full handshake, ticket issued"),
                           reused=False))
        runs.append(expect(s_client(a.port, sess_in=ta, offered="ticket",
                                    story="ticket resumption"), reused=True))
        runs.append(expect(s_client(b.port, "-tls1_2", "-no_ticket", sni=None, sess_out=tb,
                                    story="full handshake, session id issued"), reused=False))
        runs.append(expect(s_client(b.port, "-tls1_2", "-no_ticket", sni=None, sess_in=tb,
                                    offered="session_id", story="session-id resumption"),
                           reused=True))
        # The -no_ticket server keeps restarting: every session id it issued is lost.
        for i in range(3):
            b.restart()
            runs.append(expect(s_client(b.port, "-tls1_2", "-no_ticket", sni=None, sess_in=tb,
                                        sess_out=tb, offered="session_id",
                                        story=f"session id refused: server restarted ({i + 1})"),
                               reused=False))
        a.restart()
        runs.append(expect(s_client(a.port, sess_in=ta, offered="ticket",
                                    story="ticket refused: server restarted, new ticket key"),
                           reused=False))
    return runs, [P.tls12_tickets, P.tls12_no_ticket]


PQ_GROUP = "X25519MLKEM768"


def openssl_supports_group(group: str) -> bool:
    """Whether the openssl CLI accepts a TLS group (3.0 rejects ``X25519MLKEM768`` when it
    parses ``-groups``, before any handshake; the connect goes to a closed loopback port)."""
    proc = subprocess.run(["openssl", "s_client", "-groups", group, "-connect", "127.0.0.1:9"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=TIMEOUT)
    return "cannot be set" not in proc.stderr and "SSL_CONF_cmd" not in proc.stderr


def scenario_tls13(work: Path, cert: Path, key: Path, P: Ports) -> tuple[list[Run], list[int]]:
    """s_server -tls1_3: full, PSK, PSK refused, HRR (+PSK), 0-RTT accepted/rejected."""
    log = work / "s_server.log"
    c = OpenSSLServer(P.tls13, cert, key, "-tls1_3", log=log)
    d = OpenSSLServer(P.tls13_hrr, cert, key, "-tls1_3", "-groups", "P-384", log=log)
    e = OpenSSLServer(P.tls13_early, cert, key, "-tls1_3", "-early_data", www=False, log=log)
    # -no_anti_replay: with anti-replay on, OpenSSL 3.0 spends the single-use ticket on the
    # first ClientHello, so after the HelloRetryRequest the PSK would be refused.
    f = OpenSSLServer(P.tls13_early_hrr, cert, key, "-tls1_3", "-early_data", "-no_anti_replay",
                      "-groups", "P-384", www=False, log=log)
    early = work / "early.txt"
    early.write_bytes(HTTP_GET)
    sc, sd, se, sf = (work / f"tls13-{n}.pem" for n in "cdef")
    two_groups = ("-groups", "X25519:P-384")
    runs = []
    with c, d, e, f:
        runs.append(expect(s_client(c.port, sess_out=sc, story="full handshake"), reused=False))
        runs.append(expect(s_client(c.port, sess_in=sc, offered="psk", story="PSK resumption"),
                           reused=True))
        c.restart()
        runs.append(expect(s_client(c.port, sess_in=sc, offered="psk",
                                    story="PSK refused: server restarted"), reused=False))
        runs.append(expect(s_client(d.port, *two_groups, sess_out=sd, hrr=True,
                                    story="HelloRetryRequest: server wants P-384"),
                           reused=False))
        runs.append(expect(s_client(d.port, *two_groups, sess_in=sd, offered="psk", hrr=True,
                                    story="HelloRetryRequest, then PSK resumption"),
                           reused=True))
        runs.append(expect(s_client(e.port, sess_out=se, www=False,
                                    story="full handshake, ticket allows early data"),
                           reused=False, early_data="none"))
        runs.append(expect(s_client(e.port, sess_in=se, sess_out=work / "x.pem",
                                    early_data=early, www=False, offered="psk",
                                    story="0-RTT offered with PSK; server accepted it"),
                           reused=True, early_data="offered"))
        e.restart()
        runs.append(expect(s_client(e.port, sess_in=se, sess_out=work / "x.pem",
                                    early_data=early, www=False, offered="psk",
                                    story="0-RTT offered, PSK refused (server restarted)"),
                           reused=False, early_data="rejected"))
        runs.append(expect(s_client(f.port, *two_groups, sess_out=sf, www=False, hrr=True,
                                    story="HelloRetryRequest; ticket allows early data"),
                           reused=False, early_data="none"))
        runs.append(expect(s_client(f.port, *two_groups, sess_in=sf, sess_out=work / "x.pem",
                                    early_data=early, www=False, offered="psk", hrr=True,
                                    story="0-RTT offered, HelloRetryRequest rejects it; "
                                          "PSK accepted"),
                           reused=True, early_data="rejected"))
    ports = [P.tls13, P.tls13_hrr, P.tls13_early, P.tls13_early_hrr]
    if openssl_supports_group(PQ_GROUP):  # a post-quantum hybrid key share (large ClientHello)
        with OpenSSLServer(P.tls13_pq, cert, key, "-tls1_3", "-groups", PQ_GROUP, log=log):
            runs.append(expect(s_client(P.tls13_pq, "-groups", f"{PQ_GROUP}:X25519",
                                        story=f"full handshake, {PQ_GROUP} key share"),
                               reused=False))
        ports.append(P.tls13_pq)
    return runs, ports


def scenario_nginx(work: Path, cert: Path, key: Path, P: Ports) -> tuple[list[Run], list[int]]:
    """nginx with a shared session cache, tickets on and off, s_client and Python clients."""
    runs = []
    n12, n13 = work / "nginx-12.pem", work / "nginx-13.pem"
    on, off = P.nginx_tickets, P.nginx_no_tickets
    ndir = work / "nginx"
    ndir.mkdir()
    with nginx(ndir, cert, key, on, off):
        runs.append(expect(s_client(on, "-tls1_2", sess_out=n12, story="TLS 1.2 full"),
                           reused=False))
        runs.append(expect(s_client(on, "-tls1_2", sess_in=n12, offered="ticket",
                                    story="TLS 1.2 ticket resumption"), reused=True))
        runs.append(expect(s_client(on, sess_out=n13, story="TLS 1.3 full"), reused=False))
        runs.append(expect(s_client(on, sess_in=n13, offered="psk",
                                    story="TLS 1.3 PSK resumption"), reused=True))
        for host in ("127.0.0.1", "::1"):
            run, sess = py_client(on, host=host, story=f"python TLS 1.3 full via {host}")
            runs.append(expect(run, reused=False))
            run, _ = py_client(on, host=host, session=sess, offered="psk",
                               story=f"python TLS 1.3 resumption (session=) via {host}")
            runs.append(expect(run, reused=True))
        run, sess = py_client(on, host="::1", max_version=ssl.TLSVersion.TLSv1_2,
                              story="python TLS 1.2 full via ::1")
        runs.append(expect(run, reused=False))
        run, _ = py_client(on, host="::1", max_version=ssl.TLSVersion.TLSv1_2, session=sess,
                           offered="ticket", story="python TLS 1.2 ticket resumption via ::1")
        runs.append(expect(run, reused=True))
        run, sess = py_client(off, max_version=ssl.TLSVersion.TLSv1_2,
                              story="python TLS 1.2 full, tickets off")
        runs.append(expect(run, reused=False))
        run, _ = py_client(off, max_version=ssl.TLSVersion.TLSv1_2, session=sess,
                           offered="session_id",
                           story="python TLS 1.2 session-id resumption (shared cache)")
        runs.append(expect(run, reused=True))
        run, sess = py_client(off, story="python TLS 1.3 full, tickets off")
        runs.append(expect(run, reused=False))
        run, _ = py_client(off, session=sess, offered="psk",
                           story="python TLS 1.3 PSK resumption, tickets off "
                                 "(stateful ticket from the cache)")
        runs.append(expect(run, reused=True))
        runs.append(expect(s_client(off, "-tls1_2", "-no_ticket", sni=None,
                                    story="TLS 1.2 full, no SNI"), reused=False))
    return runs, [on, off]


def scenario_python(work: Path, cert: Path, key: Path, P: Ports) -> tuple[list[Run], list[int]]:
    """Python ssl client and server: SNI, ALPN, TLS 1.3 and 1.2, tickets on and off."""
    runs = []
    alpn = ["h2", "http/1.1"]
    t12 = ssl.TLSVersion.TLSv1_2
    with PythonServer("127.0.0.1", P.py_tickets, cert, key) as a, \
            PythonServer("127.0.0.1", P.py_no_ticket, cert, key, tickets=False,
                         max_version=t12) as b:
        run, sess = py_client(a.port, alpn=alpn, story="TLS 1.3 full, ALPN")
        runs.append(expect(run, reused=False))
        run, _ = py_client(a.port, alpn=alpn, session=sess, offered="psk",
                           story="TLS 1.3 PSK resumption, ALPN")
        runs.append(expect(run, reused=True))
        run, sess = py_client(a.port, max_version=t12, alpn=["http/1.1"], story="TLS 1.2 full")
        runs.append(expect(run, reused=False))
        run, _ = py_client(a.port, max_version=t12, alpn=["http/1.1"], session=sess,
                           offered="ticket", story="TLS 1.2 ticket resumption")
        runs.append(expect(run, reused=True))
        run, sess = py_client(b.port, story="TLS 1.2 full (server: no tickets, max TLS 1.2)")
        runs.append(expect(run, reused=False))
        # This client offers TLS 1.3; the server echoes the id, which proves the offer.
        run, _ = py_client(b.port, session=sess, offered="session_id",
                           story="TLS 1.2 session-id resumption from a TLS 1.3-capable client")
        runs.append(expect(run, reused=True))
        run, _ = py_client(a.port, sni=None, alpn=alpn, story="TLS 1.3 full, no SNI")
        runs.append(expect(run, reused=False))
        seen = a.sni_seen + b.sni_seen
    if seen.count(None) != 1:
        raise CaptureFailed(f"python server saw SNI {seen}")
    return runs, [P.py_tickets, P.py_no_ticket]


SCENARIOS = {
    "openssl-tls12": ("pcap", scenario_tls12),
    "openssl-tls13": ("pcap", scenario_tls13),
    "nginx": ("pcap", scenario_nginx),
    "python-ssl": ("pcapng", scenario_python),
}
DEMO_PARTS = list(SCENARIOS)


def write_truth(path: Path, runs: list[Run]) -> None:
    with open(path, "w") as fh:
        for run in runs:
            fh.write(json.dumps(run.truth()) + "\n")


def make_one(name: str, out: Path, P: Ports) -> Path:
    fmt, scenario = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix=f"tlssniff-{name}-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx's workers run as nobody and use temp paths in here
        cert, key = make_cert(work)
        ports = [p for p in vars(P).values()]
        for p in ports:
            if not port_is_free(p):
                raise CaptureFailed(f"port {p} is in use")
        raw = work / "raw.pcap"
        with Tcpdump(raw, ports):
            runs, used = scenario(work, cert, key, P)
        assign_client_ports(runs, raw, used)
        check_against_wire(runs, raw, used)
        dest = out / f"{name}.{fmt}"
        if fmt == "pcapng":
            subprocess.run(["editcap", "-F", "pcapng", str(raw), str(dest)], check=True,
                           timeout=TIMEOUT)
        else:
            shutil.copyfile(raw, dest)
        write_truth(out / f"{name}.truth.jsonl", runs)
        print(f"{dest.name}: {len(runs)} connections, {dest.stat().st_size} bytes")
        return dest


def make_demo(out: Path) -> None:
    parts = [out / f"{n}.{SCENARIOS[n][0]}" for n in DEMO_PARTS]
    dest = out / "demo.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(dest), *map(str, parts)], check=True,
                   timeout=60)
    with open(out / "demo.truth.jsonl", "w") as fh:
        for n in DEMO_PARTS:
            fh.write((out / f"{n}.truth.jsonl").read_text())
    print(f"{dest.name}: merge of {', '.join(p.name for p in parts)}, {dest.stat().st_size} bytes")


def tool_versions() -> dict[str, str]:
    def first(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        except OSError:
            return "missing"
        return next((ln for ln in (r.stdout + r.stderr).splitlines()
                     if ln and not ln.startswith("Running as user")), "").strip()
    return {
        "openssl": first(["openssl", "version"]),
        "python": f"{sys.version.split()[0]} ({ssl.OPENSSL_VERSION})",
        "nginx": first([nginx_binary() or "nginx", "-v"]),
        "tcpdump": first(["tcpdump", "--version"]),
        "tshark": first(["tshark", "--version"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "captures")
    ap.add_argument("--only", choices=[*SCENARIOS, "demo"], action="append")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("make_captures: tcpdump needs root", file=sys.stderr)
        return 2
    missing = [t for t in ("openssl", "tcpdump", "tshark", "mergecap", "editcap", "ss")
               if shutil.which(t) is None]
    if missing or nginx_binary() is None:
        print(f"make_captures: missing {missing or ['nginx']}; run "
              "scripts/install-system-deps.sh", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = args.only or [*SCENARIOS, "demo"]
    try:
        for name in wanted:
            if name != "demo":
                make_one(name, args.out, Ports())
        if "demo" in wanted:
            make_demo(args.out)
    except (CaptureFailed, subprocess.SubprocessError) as err:
        print(f"make_captures: {err}", file=sys.stderr)
        return 1
    for tool, version in tool_versions().items():
        print(f"  {tool}: {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
