#!/usr/bin/env python3
"""Re-create captures/preamble/*.pcap and their truth files: TLS after a preamble, real tools.

    sudo python scripts/make_preamble_captures.py [--out captures/preamble]

Needs root (a network namespace, tcpdump), haproxy, nginx, tinyproxy, danted, curl and openssl
(``scripts/install-system-deps.sh``). Everything runs inside a network namespace made for the
run (``tlssniff-preamble``: its own loopback, ``net.ipv4.tcp_fastopen=3`` without touching the
machine's setting, ``/etc/netns/tlssniff-preamble/hosts`` naming ``tlssniff.test``), deleted
afterwards. Ports 24000-24999.

| capture | what | clients |
|---|---|---|
| proxy-protocol | haproxy ``send-proxy`` / ``send-proxy-v2`` in front of nginx ``listen ... ssl proxy_protocol`` (IPv4 and IPv6 clients) | Python ``ssl``, full then resumed |
| http-connect | curl through tinyproxy (HTTP CONNECT) to nginx; a CONNECT tinyproxy refuses (403: no TLS follows) | curl |
| socks | curl through danted: ``--socks5``, ``--socks5-hostname``, ``--socks4``; ``--socks4a``, which danted refuses (reply 91: no TLS follows) | curl |
| tfo | curl ``--tcp-fastopen`` to nginx ``listen ... fastopen=16`` (cookie request, then data on the SYN, accepted) and to an nginx port without fastopen (data on the SYN refused, sent again) | curl |
| banner | a server that sends a plaintext banner first, then TLS (an SMTP-like ``220`` greeting, and another line) | Python ``ssl``, full then resumed |
| prefix | a client that sends a few bytes before its ClientHello | Python ``ssl``, full then resumed |

Truth: the client's own report (Python's ``SSLSocket.version()`` and ``session_reused``; curl's
``SSL connection using TLSv1.x``, one connection per run: nothing offered, a full handshake).
A proxy in TCP mode relays the one TLS session: its connection to the server carries the same
handshake as the client's, so it gets the same truth; ``proxied_client`` is the client's
address as the PROXY header must carry it (the front connection's client, read from the
capture). ``tfo`` in the truth records what the capture shows of TCP Fast Open (read back with
tshark): ``cookie`` (a cookie request, no data), ``accepted`` (SYN data acknowledged by the
SYN-ACK), ``refused`` (not acknowledged: the client sent it again).
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from make_captures import (  # noqa: E402
    SNI, TIMEOUT, CaptureFailed, Run, Tcpdump, make_cert, py_client, stop, wait_listening,
)
from make_captures import connections_in as _all_connections  # noqa: E402
from tlssniff.testing.nginx import http_head, nginx_binary  # noqa: E402

NETNS = "tlssniff-preamble"
HAPROXY_V1, HAPROXY_V2 = 24001, 24002
HAPROXY_V1_6, HAPROXY_V2_6 = 24003, 24004  # on [::1]: the header carries TCP6 / AF_INET6
NGINX_PP_V1, NGINX_PP_V2 = 24011, 24012
TINYPROXY, DANTE = 24020, 24030
NGINX_TLS = 24040
NGINX_TFO, NGINX_NO_TFO = 24050, 24051
BANNER_SMTP, BANNER_TEXT = 24060, 24061
PREFIX = 24070

NGINX_SERVERS = """\
    ssl_session_cache shared:SSL:1m;
    server {{ listen 127.0.0.1:{v1} ssl proxy_protocol; server_name {sni};
             location / {{ return 200 "proxied $proxy_protocol_addr:$proxy_protocol_port\\n"; }} }}
    server {{ listen 127.0.0.1:{v2} ssl proxy_protocol; server_name {sni};
             location / {{ return 200 "proxied $proxy_protocol_addr:$proxy_protocol_port\\n"; }} }}
    server {{ listen 127.0.0.1:{tls} ssl; server_name {sni}; location / {{ return 200 "ok\\n"; }} }}
    server {{ listen 127.0.0.1:{tfo} ssl fastopen=16; server_name {sni};
             location / {{ return 200 "tfo\\n"; }} }}
    server {{ listen 127.0.0.1:{no_tfo} ssl; server_name {sni}; location / {{ return 200 "no tfo\\n"; }} }}
}}
"""

HAPROXY_CFG = """\
global
    maxconn 64
defaults
    mode tcp
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend v1
    bind 127.0.0.1:{fe1}
    default_backend v1
backend v1
    server nginx 127.0.0.1:{be1} send-proxy
frontend v2
    bind 127.0.0.1:{fe2}
    default_backend v2
backend v2
    server nginx 127.0.0.1:{be2} send-proxy-v2
frontend v1_6
    bind [::1]:{fe1_6}
    default_backend v1
frontend v2_6
    bind [::1]:{fe2_6}
    default_backend v2
"""

TINYPROXY_CFG = """\
User nobody
Group nogroup
Port {port}
Listen 127.0.0.1
Timeout 30
MaxClients 8
Allow 127.0.0.1
ConnectPort {target}
LogLevel Error
PidFile "{dir}/tinyproxy.pid"
"""

DANTE_CFG = """\
logoutput: stderr
internal: 127.0.0.1 port = {port}
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}
socks pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 protocol: tcp }}
"""


# --------------------------------------------------------------------------------------------
# The namespace


def in_netns(argv: list[str]) -> int:
    """Run this script again inside a network namespace made for it; delete it afterwards."""
    etc = Path("/etc/netns") / NETNS
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "netns", "add", NETNS], check=True)
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost {SNI}\n")
        ns = ["ip", "netns", "exec", NETNS]
        subprocess.run(ns + ["ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(ns + ["sysctl", "-q", "-w", "net.ipv4.tcp_fastopen=3"], check=True)
        return subprocess.run(ns + [sys.executable, __file__, "--inside", *argv]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Servers


class Daemon:
    """One server process in the foreground, stopped at exit."""

    def __init__(self, cmd: list[str], ports: list[int], sig: int = signal.SIGTERM):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.sig = sig
        try:
            for p in ports:
                wait_listening(p, self.proc)
        except CaptureFailed:
            stop(self.proc, signal.SIGKILL)
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise CaptureFailed(f"{cmd[0]} did not start: {err[-2000:]}") from None

    def close(self) -> None:
        stop(self.proc, self.sig)


def start_servers(work: Path, cert: Path, key: Path) -> list[Daemon]:
    binary = nginx_binary()
    if binary is None:
        raise CaptureFailed("nginx is not installed")
    conf = work / "nginx.conf"
    conf.write_text(http_head(work, cert, key, 64) + NGINX_SERVERS.format(
        sni=SNI, v1=NGINX_PP_V1, v2=NGINX_PP_V2, tls=NGINX_TLS, tfo=NGINX_TFO,
        no_tfo=NGINX_NO_TFO))
    daemons = [Daemon([binary, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
                      [NGINX_PP_V1, NGINX_PP_V2, NGINX_TLS, NGINX_TFO, NGINX_NO_TFO],
                      signal.SIGQUIT)]
    try:
        (work / "haproxy.cfg").write_text(HAPROXY_CFG.format(
            fe1=HAPROXY_V1, be1=NGINX_PP_V1, fe2=HAPROXY_V2, be2=NGINX_PP_V2,
            fe1_6=HAPROXY_V1_6, fe2_6=HAPROXY_V2_6))
        daemons.append(Daemon(["haproxy", "-db", "-f", str(work / "haproxy.cfg")],
                              [HAPROXY_V1, HAPROXY_V2, HAPROXY_V1_6, HAPROXY_V2_6]))
        (work / "tinyproxy.conf").write_text(TINYPROXY_CFG.format(
            port=TINYPROXY, target=NGINX_TLS, dir=work))
        daemons.append(Daemon(["tinyproxy", "-d", "-c", str(work / "tinyproxy.conf")],
                              [TINYPROXY]))
        (work / "danted.conf").write_text(DANTE_CFG.format(port=DANTE))
        daemons.append(Daemon(["danted", "-f", str(work / "danted.conf"),
                               "-p", str(work / "danted.pid")], [DANTE]))
    except BaseException:
        for d in daemons:
            d.close()
        raise
    return daemons


class PreambleServer:
    """A Python ``ssl`` server that reads or writes a plaintext preamble before its TLS: a
    banner line it sends first, or a line the client sends first."""

    def __init__(self, port: int, cert: Path, key: Path, *, banner: bytes = b"",
                 client_line: bool = False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.banner, self.client_line = banner, client_line
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(TIMEOUT)
            try:
                if self.banner:
                    conn.sendall(self.banner)
                if self.client_line:
                    while conn.recv(1) not in (b"\n", b""):
                        pass  # one byte at a time: the ClientHello after it stays unread
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)
                    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                    tls.unwrap()
            except (ssl.SSLError, OSError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(TIMEOUT)
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Clients


_PY_CTX: dict[str, ssl.SSLContext] = {}


def py_preamble_client(port: int, *, read_banner: bool = False, send: bytes = b"",
                       session: ssl.SSLSession | None = None, story: str = ""):
    """A Python ``ssl`` client that reads a banner line or sends bytes before its TLS."""
    ctx = _PY_CTX.get("ctx")
    if ctx is None:
        ctx = _PY_CTX["ctx"] = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        client_port = raw.getsockname()[1]
        if read_banner:
            while raw.recv(1) not in (b"\n", b""):
                pass
        if send:
            raw.sendall(send)
        with ctx.wrap_socket(raw, server_hostname=SNI, session=session) as tls:
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            while tls.recv(4096):
                pass
            reused, version, sess = tls.session_reused, tls.version(), tls.session
    run = Run(server=f"127.0.0.1:{port}", sni=SNI, offered="psk" if session else "none",
              version=version, reused=reused, client_port=client_port,
              tool=f"python ssl {sys.version.split()[0]}", story=story)
    return run, sess


def curl(url_port: int, *args: str, story: str) -> Run:
    """One curl run (``-v``: its own report of the negotiated version)."""
    cmd = ["curl", "-sS", "-k", "-v", "-o", "/dev/null", "--max-time", str(int(TIMEOUT)),
           *args, f"https://{SNI}:{url_port}/"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT + 5)
    m = re.search(r"SSL connection using (TLSv1\.[0-3])", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise CaptureFailed(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return Run(server="", sni=SNI, offered="none", version=m.group(1), reused=False,
               tool="curl " + " ".join(args), story=story)


def connections_in(pcap: Path, ports: list[int]) -> list[tuple[str, str]]:
    """(client, server) of the capture's TCP connections to ``ports``, in SYN order."""
    return [(c, s) for c, s in _all_connections(pcap, ports) if int(s.rsplit(":", 1)[1]) in ports]


def truth(run: Run, client: str, server: str, **extra) -> dict:
    t = run.truth()
    t["client"], t["server"] = client, server
    t["transport"] = "tcp"
    t["preamble"] = None
    t["proxied_client"] = None
    t.update(extra)
    return t


def relayed(pcap: Path, runs: list[Run], front: int, back: int, kind: str | None,
            proxy: bool = False, fronts: list[tuple[str, str]] | None = None) -> list[dict]:
    """The truth of runs through a TCP relay: the client's connection to ``front`` (with its
    preamble ``kind``) and the relay's to ``back``, the n-th of each for the n-th run."""
    if fronts is None:
        fronts = connections_in(pcap, [front])
    backs = connections_in(pcap, [back])
    if len(fronts) != len(runs) or len(backs) != len(runs):
        raise CaptureFailed(f"{pcap.name}: {len(fronts)}/{len(backs)} connections for "
                            f"{len(runs)} runs on {front}/{back}")
    out = []
    for run, (fc, fs), (bc, bs) in zip(runs, fronts, backs):
        if run.client_port is not None and fc != run.client():
            raise CaptureFailed(f"{pcap.name}: client {fc}, python said {run.client_port}")
        if proxy:  # haproxy: TLS straight to it; its own connection carries the PROXY header
            out.append(truth(run, fc, fs))
            out.append(truth(run, bc, bs, preamble=kind, proxied_client=fc))
        else:  # an explicit proxy: the preamble is the client's; the proxy's side is plain TLS
            out.append(truth(run, fc, fs, preamble=kind))
            out.append(truth(run, bc, bs))
    return out


def tfo_shapes(pcap: Path, port: int) -> list[str]:
    """What each connection to ``port`` shows of TCP Fast Open, in SYN order (tshark)."""
    rows = subprocess.run(
        ["tshark", "-r", str(pcap), "-n", "-Y", f"tcp.port=={port} && tcp.flags.syn==1",
         "-T", "fields", "-e", "tcp.stream", "-e", "tcp.flags.ack", "-e", "tcp.len",
         "-e", "tcp.ack_raw", "-e", "tcp.seq_raw"],
        capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    syn: dict[str, tuple[int, int]] = {}
    synack: dict[str, int] = {}
    for row in rows:
        if not row.strip():
            continue
        stream, ack, length, ack_raw, seq_raw = row.split("\t")
        if ack == "0" or ack == "False":
            syn.setdefault(stream, (int(seq_raw), int(length)))
        else:
            synack.setdefault(stream, int(ack_raw))
    shapes = []
    for stream in sorted(syn, key=int):
        seq, length = syn[stream]
        if not length:
            shapes.append("cookie")
        elif synack.get(stream) == (seq + 1 + length) & 0xFFFFFFFF:
            shapes.append("accepted")
        else:
            shapes.append("refused")
    return shapes


# --------------------------------------------------------------------------------------------
# Scenarios


def capture(out: Path, name: str, ports: list[int], body) -> None:
    pcap = out / f"{name}.pcap"
    with Tcpdump(pcap, ports):
        result = body()
    rows = result(pcap)
    with open(out / f"{name}.truth.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(f"{pcap}: {len(rows)} TLS connections")


def scenario_proxy_protocol():
    runs: dict[int, list[Run]] = {HAPROXY_V1: [], HAPROXY_V2: [], HAPROXY_V1_6: [], HAPROXY_V2_6: []}
    for port in (HAPROXY_V1, HAPROXY_V2):
        for label, maxv in (("TLS 1.3", ssl.TLSVersion.TLSv1_3), ("TLS 1.2", ssl.TLSVersion.TLSv1_2)):
            run, sess = py_client(port, max_version=maxv,
                                  story=f"haproxy :{port} ({label}): full handshake")
            runs[port].append(run)
            again, _ = py_client(port, max_version=maxv, session=sess,
                                 offered="psk" if maxv == ssl.TLSVersion.TLSv1_3 else "ticket",
                                 story=f"haproxy :{port} ({label}): offers the session")
            runs[port].append(again)
    for port in (HAPROXY_V1_6, HAPROXY_V2_6):  # an IPv6 client, relayed to nginx over IPv4
        run, _ = py_client(port, host="::1", story=f"haproxy [::1]:{port}: full handshake")
        runs[port].append(run)

    def result(pcap: Path) -> list[dict]:
        # The n-th backend connection belongs to the n-th front connection of either family.
        fronts = {p: connections_in(pcap, [p]) for p in runs}
        out = []
        for kind, be, v4, v6 in (("proxy-v1", NGINX_PP_V1, HAPROXY_V1, HAPROXY_V1_6),
                                 ("proxy-v2", NGINX_PP_V2, HAPROXY_V2, HAPROXY_V2_6)):
            both = runs[v4] + runs[v6]
            out += relayed(pcap, both, v4, be, kind, proxy=True, fronts=fronts[v4] + fronts[v6])
        return out
    return result


def scenario_http_connect():
    runs = [curl(NGINX_TLS, "--proxy", f"http://127.0.0.1:{TINYPROXY}", *v,
                 story=f"curl through tinyproxy (CONNECT), {v[0]}")
            for v in (("--tlsv1.3",), ("--tls-max", "1.2"))]
    # A CONNECT to a port tinyproxy does not allow (ConnectPort): it answers 403, no TLS follows
    # (a connection in the capture that is not TLS: no truth row).
    refused = subprocess.run(["curl", "-sS", "-k", "-o", "/dev/null", "--max-time", "5",
                              "--proxy", f"http://127.0.0.1:{TINYPROXY}",
                              f"https://{SNI}:{NGINX_TFO}/"],
                             capture_output=True, text=True, timeout=TIMEOUT)
    if "403" not in refused.stderr:
        raise CaptureFailed(f"curl through tinyproxy to a refused port: {refused.stderr[-500:]}")

    def result(pcap: Path) -> list[dict]:
        fronts = connections_in(pcap, [TINYPROXY])
        if len(fronts) != len(runs) + 1:
            raise CaptureFailed(f"{pcap.name}: {len(fronts)} proxy connections")
        return relayed(pcap, runs, TINYPROXY, NGINX_TLS, "http-connect", fronts=fronts[:-1])
    return result


def scenario_socks():
    flags = [("--socks5", "socks5"), ("--socks5-hostname", "socks5"), ("--socks4", "socks4")]
    runs = [curl(NGINX_TLS, flag, f"127.0.0.1:{DANTE}", story=f"curl {flag} through danted")
            for flag, _ in flags]
    # danted refuses SOCKS 4A (reply 91): a SOCKS connection that never reaches TLS, in the
    # capture as a negative case (not a TLS connection: no truth row).
    refused = subprocess.run(["curl", "-sS", "-k", "-o", "/dev/null", "--max-time", "5",
                              "--socks4a", f"127.0.0.1:{DANTE}", f"https://{SNI}:{NGINX_TLS}/"],
                             capture_output=True, text=True, timeout=TIMEOUT)
    if "(91)" not in refused.stderr:
        raise CaptureFailed(f"curl --socks4a through danted: {refused.stderr[-500:]}")

    def result(pcap: Path) -> list[dict]:
        fronts = connections_in(pcap, [DANTE])
        if len(fronts) != len(runs) + 1:
            raise CaptureFailed(f"{pcap.name}: {len(fronts)} SOCKS connections")
        out = relayed(pcap, runs, DANTE, NGINX_TLS, None, fronts=fronts[:-1])
        for i, (_, kind) in enumerate(flags):
            out[2 * i]["preamble"] = kind
        return out
    return result


def scenario_tfo():
    plan = [(NGINX_TFO, "cookie", "first connection: SYN with a cookie request, no data"),
            (NGINX_TFO, "accepted", "ClientHello on the SYN, acknowledged by the SYN-ACK"),
            (NGINX_NO_TFO, "refused",
             "ClientHello on the SYN (cookie of 127.0.0.1), the server without fastopen does "
             "not acknowledge it: sent again after the handshake")]
    runs = [curl(port, "--tcp-fastopen", story=f"curl --tcp-fastopen to nginx :{port}: {why}")
            for port, _, why in plan]

    def result(pcap: Path) -> list[dict]:
        conns = connections_in(pcap, [NGINX_TFO, NGINX_NO_TFO])
        shapes = tfo_shapes(pcap, NGINX_TFO) + tfo_shapes(pcap, NGINX_NO_TFO)
        want = [shape for _, shape, _ in plan]
        if len(conns) != len(runs) or shapes != want:
            raise CaptureFailed(f"{pcap.name}: TCP Fast Open showed {shapes}, wanted {want}")
        return [truth(run, c, s, tfo=shape)
                for run, (c, s), shape in zip(runs, conns, shapes)]
    return result


def scenario_banner(cert: Path, key: Path):
    servers = [PreambleServer(BANNER_SMTP, cert, key, banner=b"220 tlssniff.test ESMTP ready\r\n"),
               PreambleServer(BANNER_TEXT, cert, key, banner=b"tlssniff banner: TLS next\r\n")]
    runs = []
    try:
        for port in (BANNER_SMTP, BANNER_TEXT):
            run, sess = py_preamble_client(port, read_banner=True,
                                           story=f"banner server :{port}: full handshake")
            runs.append(run)
            run, _ = py_preamble_client(port, read_banner=True, session=sess,
                                        story=f"banner server :{port}: offers the session")
            runs.append(run)
    finally:
        for s in servers:
            s.close()

    def result(pcap: Path) -> list[dict]:
        conns = connections_in(pcap, [BANNER_SMTP, BANNER_TEXT])
        if len(conns) != len(runs):
            raise CaptureFailed(f"{pcap.name}: {len(conns)} connections, {len(runs)} runs")
        return [truth(run, f"127.0.0.1:{run.client_port}", run.server, preamble="banner")
                for run in runs]
    return result


def scenario_prefix(cert: Path, key: Path):
    server = PreambleServer(PREFIX, cert, key, client_line=True)
    runs = []
    try:
        run, sess = py_preamble_client(PREFIX, send=b"tlssniff-hello\n",
                                       story="client sends 15 bytes, then its ClientHello: full")
        runs.append(run)
        run, _ = py_preamble_client(PREFIX, send=b"tlssniff-hello\n", session=sess,
                                    story="client sends 15 bytes, then offers the session")
        runs.append(run)
    finally:
        server.close()

    def result(pcap: Path) -> list[dict]:
        conns = connections_in(pcap, [PREFIX])
        if len(conns) != len(runs):
            raise CaptureFailed(f"{pcap.name}: {len(conns)} connections, {len(runs)} runs")
        return [truth(run, f"127.0.0.1:{run.client_port}", run.server, preamble="prefix")
                for run in runs]
    return result


def inside(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tlssniff-preamble-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # nginx workers (nobody) use temp paths in here
        cert, key = make_cert(work)
        daemons = start_servers(work, cert, key)
        try:
            capture(out, "proxy-protocol", [HAPROXY_V1, HAPROXY_V2, HAPROXY_V1_6, HAPROXY_V2_6,
                                            NGINX_PP_V1, NGINX_PP_V2],
                    scenario_proxy_protocol)
            capture(out, "http-connect", [TINYPROXY, NGINX_TLS], scenario_http_connect)
            capture(out, "socks", [DANTE, NGINX_TLS], scenario_socks)
            capture(out, "tfo", [NGINX_TFO, NGINX_NO_TFO], scenario_tfo)
        finally:
            for d in reversed(daemons):
                d.close()
        capture(out, "banner", [BANNER_SMTP, BANNER_TEXT], lambda: scenario_banner(cert, key))
        capture(out, "prefix", [PREFIX], lambda: scenario_prefix(cert, key))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "captures" / "preamble")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inside:
        return inside(args.out.resolve())
    return in_netns(["--out", str(args.out.resolve())])


if __name__ == "__main__":
    sys.exit(main())
