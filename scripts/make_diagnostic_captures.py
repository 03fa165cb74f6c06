#!/usr/bin/env python3
"""Re-create the captures behind ``tests/test_diagnostics.py``, on loopback (127.0.0.0/8) only.

    sudo python scripts/make_diagnostic_captures.py                 # all, into captures/diagnostics/
    sudo python scripts/make_diagnostic_captures.py --only cache-timeout --out /tmp/caps

Needs root (tcpdump), nginx, haproxy (the VIP and haproxy clusters), apache2 (for
``concurrent-apache``), openssl and iproute2 (``ss``).
Real servers (nginx, haproxy, Apache httpd mod_ssl), real clients (Python ``ssl`` with ``session=``,
``openssl s_client``), recorded with ``tcpdump -i lo``. Each scenario writes ``NAME.pcap``,
``NAME.truth.jsonl`` (what each Python client itself reported: ``session_reused``, version) and
``NAME.expected.json`` (the findings tlssniff must give, and nothing else). See
``captures/diagnostics/README.md``.

The loopback machinery (certificates, tcpdump, nginx binary, Python clients) comes from
``scripts/make_captures.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import make_captures as mc  # noqa: E402
from tlssniff.testing.nginx import http_head  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "captures" / "diagnostics"
SNI = mc.SNI
TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3

NGINX_SERVER = """\
    server {{
        listen {listen} ssl;
        server_name {sni};
{directives}
        location / {{ return 200 "ok\\n"; }}
    }}
"""


@contextlib.contextmanager
def nginx(directory: Path, cert: Path, key: Path, servers: list[tuple[str, list[str]]]):
    """One nginx process; ``servers`` is [(listen address, [directive; ...])]."""
    directory.mkdir(parents=True, exist_ok=True)
    blocks = "".join(
        NGINX_SERVER.format(listen=listen, sni=SNI,
                            directives="".join(f"        {x};\n" for x in directives))
        for listen, directives in servers
    )
    conf = directory / "nginx.conf"
    conf.write_text(http_head(directory, cert, key, 256) + blocks + "}\n")
    binary = mc.nginx_binary()
    if binary is None:
        raise mc.CaptureFailed("nginx is not installed")
    proc = subprocess.Popen([binary, "-p", str(directory), "-c", str(conf),
                             "-e", str(directory / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for listen, _ in servers:
            mc.wait_listening(int(listen.rsplit(":", 1)[1]), proc)
        yield proc, conf
    finally:
        mc.stop(proc, signal.SIGQUIT)


APACHE_CONF = """\
ServerRoot {d}
DefaultRuntimeDir {d}
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel warn
Mutex file:{d} default
LoadModule mpm_event_module {m}/mod_mpm_event.so
LoadModule authz_core_module {m}/mod_authz_core.so
LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so
LoadModule ssl_module {m}/mod_ssl.so
User www-data
Group www-data
ServerName {sni}
Listen {listen}
DocumentRoot {d}/htdocs
<Directory {d}/htdocs>
  Require all granted
</Directory>
SSLSessionCache shmcb:{d}/scache(512000)
SSLSessionCacheTimeout 300
SSLProtocol -all +TLSv1.2 +TLSv1.3
<VirtualHost {listen}>
  ServerName {sni}
  SSLEngine on
  SSLCertificateFile {cert}
  SSLCertificateKeyFile {key}
  SSLSessionTickets off
</VirtualHost>
"""


@contextlib.contextmanager
def apache(directory: Path, cert: Path, key: Path, listen: str):
    """Apache httpd (Debian's apache2 binary) with mod_ssl and ``SSLSessionCache shmcb:``."""
    binary = "/usr/sbin/apache2"
    if not os.access(binary, os.X_OK):
        raise mc.CaptureFailed("apache2 is not installed (apt-get install apache2)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "htdocs").mkdir(exist_ok=True)
    (directory / "htdocs" / "index.html").write_text("ok\n")
    os.chmod(directory, 0o755)
    conf = directory / "httpd.conf"
    conf.write_text(APACHE_CONF.format(d=directory, m="/usr/lib/apache2/modules", sni=SNI,
                                       listen=listen, cert=cert, key=key))
    proc = subprocess.Popen([binary, "-f", str(conf), "-DFOREGROUND"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        mc.wait_listening(int(listen.rsplit(":", 1)[1]), proc)
        yield proc
    finally:
        mc.stop(proc, signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# Clients


class Log:
    """The Python clients' own reports, in order: the truth file."""

    def __init__(self) -> None:
        self.runs: list[mc.Run] = []
        self.lock = threading.Lock()

    def client(self, port: int, *, host: str = "127.0.0.1", session=None, offered: str = "none",
               max_version=TLS12, story: str = "", expect: bool | None = None):
        run, sess = mc.py_client(port, host=host, session=session, offered=offered,
                                 max_version=max_version, story=story)
        if expect is not None and run.reused != expect:
            raise mc.CaptureFailed(f"{story}: client reports reused={run.reused}, want {expect}")
        with self.lock:
            self.runs.append(run)
        return run, sess

    def concurrent(self, n: int, port: int, session, offered: str, max_version=TLS12,
                   host: str = "127.0.0.1", story: str = "") -> list[mc.Run]:
        """``n`` threads released together by a barrier, each resuming ``session`` once."""
        barrier = threading.Barrier(n)
        errors: list[BaseException] = []
        done: list[mc.Run] = []

        def go() -> None:
            try:
                barrier.wait(mc.TIMEOUT)
                done.append(self.client(port, host=host, session=session, offered=offered,
                                        max_version=max_version, story=story)[0])
            except BaseException as err:  # reported below, in the main thread
                errors.append(err)

        threads = [threading.Thread(target=go) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(2 * mc.TIMEOUT)
        if errors:
            raise mc.CaptureFailed(f"{story}: {errors[0]!r}")
        return done

    def write(self, path: Path, pcap: Path, ports: list[int]) -> None:
        """The truth file; each client's address as the capture shows it (a client connecting
        to 127.0.0.2 speaks from 127.0.0.1), matched by its port."""
        actual = {int(c.rsplit(":", 1)[1]): c for c, _ in mc.connections_in(pcap, ports)}
        rows = []
        for r in self.runs:
            t = r.truth()
            if r.client_port not in actual:
                raise mc.CaptureFailed(f"client port {r.client_port} is not in {pcap.name}")
            t["client"] = actual[r.client_port]
            rows.append(t)
        rows.sort(key=lambda t: t["client"])
        path.write_text("".join(json.dumps(t) + "\n" for t in rows))


def s_client_plain(port: int, *args: str, host: str = "127.0.0.1") -> None:
    """One ``openssl s_client`` connection that presents nothing (no ``-sess_in``)."""
    mc.s_client(port, *args, host=host, story="s_client, no session")


class Tcpdump(mc.Tcpdump):
    """make_captures' tcpdump with a 64 MiB kernel buffer (``-B``): 20 connections released at
    once by a barrier overflow the default one."""

    def __enter__(self) -> Tcpdump:
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-U", "--immediate-mode", "-B", "65536", "-Z", "root",
             "-w", str(self.path), self.filter],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        line = b""
        deadline = time.monotonic() + mc.TIMEOUT
        while b"listening on" not in line:
            line = self.proc.stderr.readline()
            if not line or time.monotonic() > deadline:
                mc.stop(self.proc, signal.SIGKILL)
                raise mc.CaptureFailed(f"tcpdump did not start: {line.decode(errors='replace')}")
        return self


def until(t0: float, at: float) -> None:
    """Sleep until ``at`` seconds after ``t0``."""
    delay = t0 + at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --------------------------------------------------------------------------------------------
# Scenarios: each returns (ports to capture, expected document) and runs its clients inside
# the capture; ``run`` wraps it with tcpdump and writes the files.


def _server(host: str, port: int) -> str:
    return f"{host}:{port} {SNI}"


def scenario_cache_timeout(work, cert, key, log, capture):
    """nginx ``ssl_session_timeout 3s``: one server resumes by session id (tickets off), one by
    TLS 1.2 ticket. Offers at 1 s are accepted, at 6 s refused."""
    ids, tkt = 44360, 44361
    servers = [
        (f"127.0.0.1:{ids}", ["ssl_session_cache shared:SSL:1m", "ssl_session_timeout 3s",
                              "ssl_session_tickets off"]),
        (f"127.0.0.1:{tkt}", ["ssl_session_cache shared:SSL:1m", "ssl_session_timeout 3s",
                              "ssl_session_tickets on"]),
    ]
    with nginx(work / "nginx", cert, key, servers), capture([ids, tkt]):
        t0 = time.monotonic()
        sess = {}
        for port, mech in ((ids, "session_id"), (tkt, "ticket")):
            _, sess[port] = log.client(port, story=f"{mech}: full handshake at 0 s", expect=False)
        until(t0, 1.0)
        for port, mech in ((ids, "session_id"), (tkt, "ticket")):
            log.client(port, session=sess[port], offered=mech,
                       story=f"{mech}: offered at 1 s, accepted", expect=True)
        until(t0, 6.0)
        for port, mech in ((ids, "session_id"), (tkt, "ticket")):
            log.client(port, session=sess[port], offered=mech,
                       story=f"{mech}: offered at 6 s, refused (timeout 3 s)", expect=False)
    return {
        "story": "nginx ssl_session_timeout 3s; resumptions at 1 s accepted, at 6 s refused: one "
                 "observation on each side of the bracket is not enough for cache_timeout (a "
                 "restart between 1 and 6 s looks the same); cache-timeout-staggered has enough",
        "findings": [],
    }


def _cluster(work, cert, key, log, capture, shared: bool, port: int = 44362,
             version=TLS12):
    a, b = "127.0.0.2", "127.0.0.3"
    directives = ["ssl_session_cache shared:SSL:1m", "ssl_session_tickets on"]
    if shared:
        keyfile = work / "ticket.key"
        keyfile.write_bytes(secrets.token_bytes(80))
        directives.append(f"ssl_session_ticket_key {keyfile}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(nginx(work / "nginx-a", cert, key, [(f"{a}:{port}", directives)]))
        stack.enter_context(nginx(work / "nginx-b", cert, key, [(f"{b}:{port}", directives)]))
        stack.enter_context(capture([port]))
        mech = "psk" if version is TLS13 else "ticket"
        _, sa = log.client(port, host=a, max_version=version, story="full handshake on A",
                           expect=False)
        log.client(port, host=a, session=sa, offered=mech, max_version=version,
                   story="A's ticket to A", expect=True)
        log.client(port, host=b, session=sa, offered=mech, max_version=version,
                   story="A's ticket to B", expect=shared)
        _, sb = log.client(port, host=b, max_version=version, story="full handshake on B",
                           expect=False)
        log.client(port, host=b, session=sb, offered=mech, max_version=version,
                   story="B's ticket to B", expect=True)
        log.client(port, host=a, session=sb, offered=mech, max_version=version,
                   story="B's ticket to A", expect=shared)
    return [_server(a, port), _server(b, port)]


def scenario_cluster_separate(work, cert, key, log, capture):
    """Two nginx on 127.0.0.2 and 127.0.0.3, same SNI, each with its own ticket key."""
    servers = _cluster(work, cert, key, log, capture, shared=False)
    return {
        "story": "two nginx, same SNI, separate ticket keys: tickets refused across nodes",
        "findings": [
            {"code": "ticket_keys_differ", "servers": servers},
            {"code": "cross_server_refused", "servers": servers, "offers": 1, "accepted": 0},
            {"code": "cross_server_refused", "servers": servers[::-1], "offers": 1,
             "accepted": 0},
        ],
    }


def scenario_cluster_shared(work, cert, key, log, capture):
    """The same two nginx sharing one ``ssl_session_ticket_key`` file."""
    _cluster(work, cert, key, log, capture, shared=True)
    return {"story": "two nginx, same SNI, one shared ticket key file: tickets accepted on both",
            "findings": []}


def scenario_cluster_separate_tls13(work, cert, key, log, capture):
    """The two nginx with their own ticket keys, TLS 1.3 clients (port 25040): issuance is
    encrypted; each node accepting its own PSKs (key names) and refusing the other's shows it."""
    servers = _cluster(work, cert, key, log, capture, shared=False, port=25040, version=TLS13)
    return {
        "story": "two nginx, same SNI, separate ticket keys, TLS 1.3: PSKs refused across nodes",
        "findings": [
            {"code": "ticket_keys_differ", "servers": servers},
            {"code": "cross_server_refused", "servers": servers, "offers": 1,
             "target_accepts_own": True},
            {"code": "cross_server_refused", "servers": servers[::-1], "offers": 1,
             "target_accepts_own": True},
        ],
    }


def scenario_cluster_shared_tls13(work, cert, key, log, capture):
    _cluster(work, cert, key, log, capture, shared=True, port=25041, version=TLS13)
    return {"story": "two nginx sharing one ssl_session_ticket_key file, TLS 1.3: every PSK "
                     "accepted on both", "findings": []}


def scenario_concurrent_nginx(work, cert, key, log, capture):
    """nginx ``ssl_session_cache shared``, tickets off, TLS 1.2: 20 concurrent resumptions of
    one session id."""
    port = 44364
    with nginx(work / "nginx", cert, key, [(f"127.0.0.1:{port}", [
            "ssl_session_cache shared:SSL:1m", "ssl_session_tickets off"])]), capture([port]):
        _, s = log.client(port, story="full handshake", expect=False)
        runs = log.concurrent(20, port, s, "session_id", story="20 concurrent resumptions")
    accepted = sum(r.reused for r in runs)
    return {"story": "20 concurrent TLS 1.2 session-id resumptions against nginx's shared cache",
            "findings": [] if accepted in (0, 20) else [
                {"code": "concurrent_refused", "servers": [_server("127.0.0.1", port)],
                 "offers": 20, "accepted": accepted}],
            "concurrency": {_server("127.0.0.1", port): {"offers": 20, "accepted": accepted}}}


def scenario_concurrent_apache(work, cert, key, log, capture):
    """Apache httpd mod_ssl ``SSLSessionCache shmcb:``, tickets off, TLS 1.2: 20 concurrent
    resumptions of one session id."""
    port = 44365
    with apache(work / "apache", cert, key, f"127.0.0.1:{port}"), capture([port]):
        _, s = log.client(port, story="full handshake", expect=False)
        runs = log.concurrent(20, port, s, "session_id", story="20 concurrent resumptions")
    accepted = sum(r.reused for r in runs)
    return {"story": "20 concurrent TLS 1.2 session-id resumptions against Apache shmcb",
            "findings": [] if accepted in (0, 20) else [
                {"code": "concurrent_refused", "servers": [_server("127.0.0.1", port)],
                 "offers": 20, "accepted": accepted}],
            "concurrency": {_server("127.0.0.1", port): {"offers": 20, "accepted": accepted}}}


_DISABLED = ["ssl_session_cache off", "ssl_session_tickets off"]


def scenario_resumption_disabled(work, cert, key, log, capture):
    """nginx ``ssl_session_cache off; ssl_session_tickets off;`` with TLS 1.3 clients: OpenSSL
    still sends (stateful) tickets, clients offer them, none is ever accepted."""
    port = 44366
    with nginx(work / "nginx", cert, key, [(f"127.0.0.1:{port}", _DISABLED)]), capture([port]):
        for i in range(3):
            _, s = log.client(port, max_version=TLS13, story=f"client {i}: full", expect=False)
            log.client(port, session=s, offered="psk", max_version=TLS13,
                       story=f"client {i}: offers its PSK, refused", expect=False)
    return {"story": "nginx ssl_session_cache off; ssl_session_tickets off; TLS 1.3 clients",
            "findings": [{"code": "resumption_disabled", "servers": [_server("127.0.0.1", port)],
                          "offers": 3, "accepted": 0}]}


def scenario_not_resumable(work, cert, key, log, capture):
    """The same nginx with TLS 1.2 clients: no session id, no ticket, so nothing to offer."""
    port = 44367
    with nginx(work / "nginx", cert, key, [(f"127.0.0.1:{port}", _DISABLED)]), capture([port]):
        for i in range(3):
            _, s = log.client(port, story=f"client {i}: full, nothing issued", expect=False)
            log.client(port, session=s, story=f"client {i}: returns, nothing to offer",
                       expect=False)
    return {"story": "nginx ssl_session_cache off; ssl_session_tickets off; TLS 1.2 clients",
            "findings": [{"code": "session_not_resumable",
                          "servers": [_server("127.0.0.1", port)]}]}


def scenario_clients(work, cert, key, log, capture):
    """One nginx (tickets on): Python clients resume, ``openssl s_client`` never presents its
    session (client_never_resumes for its JA4); a second server only s_client talks to
    (no_resumption_offered)."""
    both, only = 44368, 44369
    d = ["ssl_session_cache shared:SSL:1m", "ssl_session_tickets on"]
    with nginx(work / "nginx", cert, key, [(f"127.0.0.1:{both}", d), (f"127.0.0.1:{only}", d)]), \
            capture([both, only]):
        for i in range(2):
            _, s = log.client(both, story=f"python {i}: full", expect=False)
            log.client(both, session=s, offered="ticket", story=f"python {i}: resumes",
                       expect=True)
        for _ in range(3):
            s_client_plain(both, "-tls1_2")
        for _ in range(3):
            s_client_plain(only, "-tls1_2")
    return {"story": "python resumes, openssl s_client never presents its session",
            "findings": [
                {"code": "client_never_resumes", "servers": [_server("127.0.0.1", both)],
                 "connections": 3},
                {"code": "no_resumption_offered", "servers": [_server("127.0.0.1", only)]},
            ]}


def scenario_key_rotation(work, cert, key, log, capture):
    """nginx with two ``ssl_session_ticket_key`` files, reloaded with their order swapped:
    new tickets are issued under the second key's name; old tickets are still accepted."""
    port = 44370
    k1, k2 = work / "k1.key", work / "k2.key"
    k1.write_bytes(secrets.token_bytes(80))
    k2.write_bytes(secrets.token_bytes(80))
    base = ["ssl_session_cache shared:SSL:1m", "ssl_session_tickets on"]
    with nginx(work / "nginx", cert, key, [(f"127.0.0.1:{port}", base + [
            f"ssl_session_ticket_key {k1}", f"ssl_session_ticket_key {k2}"])]) as (proc, conf), \
            capture([port]):
        _, s1 = log.client(port, story="full, ticket under key 1", expect=False)
        log.client(port, session=s1, offered="ticket", story="resume", expect=True)
        text = conf.read_text()
        conf.write_text(text.replace(f"ssl_session_ticket_key {k1};\n", "@@").replace(
            f"ssl_session_ticket_key {k2};\n", f"ssl_session_ticket_key {k2};\n"
            f"        ssl_session_ticket_key {k1};\n").replace("@@", ""))
        proc.send_signal(signal.SIGHUP)  # reload: new workers with the keys swapped
        time.sleep(1.5)
        _, s2 = log.client(port, story="full, ticket under key 2", expect=False)
        log.client(port, session=s2, offered="ticket", story="resume", expect=True)
        log.client(port, session=s1, offered="ticket", story="old ticket still accepted",
                   expect=True)
    return {"story": "ticket key rotation by reload with swapped ssl_session_ticket_key files",
            "findings": [{"code": "ticket_key_rotation",
                          "servers": [_server("127.0.0.1", port)], "key_names": 2}]}


# --------------------------------------------------------------------------------------------
# Clusters as users run them: a VIP in front of two backends, haproxy as the TLS server,
# restarts, timeouts with enough observations (ports 25000-25999).

HAPROXY_HEAD = """\
global
    nbthread 1
    maxconn 256
    pidfile {d}/haproxy.pid
defaults
    timeout connect 5s
    timeout client 10s
    timeout server 10s
"""


def haproxy_binary() -> str:
    for b in ("/usr/sbin/haproxy", "/usr/bin/haproxy"):
        if os.access(b, os.X_OK):
            return b
    raise mc.CaptureFailed("haproxy is not installed")


@contextlib.contextmanager
def haproxy(directory: Path, body: str, ports: list[int]):
    """One haproxy process in the foreground (``-db``) with ``body`` after the global and
    defaults sections."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "haproxy.cfg"
    conf.write_text(HAPROXY_HEAD.format(d=directory) + body)
    subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(conf)], check=True,
                   timeout=mc.TIMEOUT)
    proc = subprocess.Popen([haproxy_binary(), "-db", "-f", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports:
            mc.wait_listening(port, proc)
        yield proc
    finally:
        mc.stop(proc, signal.SIGUSR1)  # soft stop: finish the connections in flight


def wait_listening_on(host: str, port: int) -> None:
    """``mc.wait_listening`` for one address: two nodes listen on the same port number."""
    deadline = time.monotonic() + mc.TIMEOUT
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-Hltn", f"src {host}:{port}"], capture_output=True,
                             text=True, timeout=mc.TIMEOUT).stdout
        if out.strip():
            return
        time.sleep(0.02)
    raise mc.CaptureFailed(f"nothing listens on {host}:{port} after {mc.TIMEOUT}s")


def scenario_cache_timeout_staggered(work, cert, key, log, capture):
    """nginx ``ssl_session_timeout 3s``, session ids on :25001, TLS 1.2 tickets on :25002: three
    sessions issued at 0, 2.5 and 3.5 s, offered at ages 1, 1.5 and 2 s (accepted) and 5 s
    (refused). The refusals follow age, and no single moment explains them: a timeout."""
    ids, tkt = 25001, 25002
    common = ["ssl_session_cache shared:SSL:1m", "ssl_session_timeout 3s"]
    servers = [(f"127.0.0.1:{ids}", common + ["ssl_session_tickets off"]),
               (f"127.0.0.1:{tkt}", common + ["ssl_session_tickets on"])]
    plan = [  # (at s, session, offer?, expect reused)
        (0.0, "s1", False, False), (1.0, "s1", True, True), (2.5, "s2", False, False),
        (3.5, "s3", False, False), (4.0, "s2", True, True), (5.0, "s1", True, False),
        (5.5, "s3", True, True), (7.5, "s2", True, False),
    ]
    with nginx(work / "nginx", cert, key, servers), capture([ids, tkt]):
        t0 = time.monotonic()
        sess: dict = {}
        for at, name, offer, want in plan:
            until(t0, at)
            for port, mech in ((ids, "session_id"), (tkt, "ticket")):
                if offer:
                    log.client(port, session=sess[port, name], offered=mech, expect=want,
                               story=f"{mech}: {name} offered at {at} s")
                else:
                    _, sess[port, name] = log.client(port, expect=False,
                                                     story=f"{mech}: {name} issued at {at} s")
    return {
        "story": "nginx ssl_session_timeout 3s; sessions of ages 1-2 s accepted, 5 s refused, "
                 "issued at different times so that no single loss explains the refusals",
        "findings": [
            {"code": "cache_timeout", "servers": [_server("127.0.0.1", ids)],
             "accepted_max_age": [1.8, 2.6], "refused_min_age": [4.6, 5.6], "accepted": 3,
             "refused": 2, "lifetime_hint": None},
            {"code": "cache_timeout", "servers": [_server("127.0.0.1", tkt)],
             "accepted_max_age": [1.8, 2.6], "refused_min_age": [4.6, 5.6], "accepted": 3,
             "refused": 2, "lifetime_hint": 3},
        ],
    }


def scenario_restart(work, cert, key, log, capture):
    """nginx restarted (stopped and started again, ``ssl_session_timeout 300s``): session ids on
    :25010, TLS 1.2 tickets without a key file on :25011 (new keys at each start). Sessions
    issued before the restart are refused after it, whatever their age; one issued after it
    is accepted at an age greater than a refused one's."""
    ids, tkt = 25010, 25011
    common = ["ssl_session_cache shared:SSL:1m", "ssl_session_timeout 300s"]
    servers = [(f"127.0.0.1:{ids}", common + ["ssl_session_tickets off"]),
               (f"127.0.0.1:{tkt}", common + ["ssl_session_tickets on"])]
    mechs = ((ids, "session_id"), (tkt, "ticket"))
    sess: dict = {}

    def issue(name: str, at: float) -> None:
        for port, mech in mechs:
            _, sess[port, name] = log.client(port, expect=False,
                                             story=f"{mech}: {name} issued at {at} s")

    def offer(name: str, at: float, want: bool) -> None:
        for port, mech in mechs:
            log.client(port, session=sess[port, name], offered=mech, expect=want,
                       story=f"{mech}: {name} offered at {at} s")

    with capture([ids, tkt]):
        t0 = time.monotonic()
        with nginx(work / "nginx", cert, key, servers):
            issue("sA", 0.0)
            until(t0, 0.2)
            issue("sB", 0.2)
            until(t0, 0.5)
            offer("sA", 0.5, True)
        until(t0, 1.0)  # restart: the cache and the ticket keys are gone
        with nginx(work / "nginx", cert, key, servers):
            until(t0, 1.5)
            issue("s2", 1.5)
            until(t0, 2.0)
            offer("sA", 2.0, False)
            until(t0, 5.0)
            offer("s2", 5.0, True)
            until(t0, 5.5)
            offer("sB", 5.5, False)
    return {
        "story": "nginx restarted at 1 s: sessions from before refused at 2 s and 5.3 s, one "
                 "from after accepted at 3.5 s old; session timeout 300 s",
        "findings": [
            {"code": "sessions_lost", "servers": [_server("127.0.0.1", ids)], "refused": 2,
             "accepted_after": 1, "key_change": False},
            {"code": "sessions_lost", "servers": [_server("127.0.0.1", tkt)], "refused": 2,
             "accepted_after": 1, "key_change": True, "lifetime_hint": 300},
            {"code": "ticket_key_rotation", "servers": [_server("127.0.0.1", tkt)],
             "key_names": 2},
        ],
    }


def _vip(work, cert, key, log, capture, shared: bool):
    """haproxy (TCP mode, round robin) on 127.0.0.1:25020 (TLS 1.2 clients) and :25022 (TLS
    1.3 clients) in front of two nginx on 127.0.0.2:25021 and 127.0.0.3:25021. Only the VIP
    side is captured: the clients see one address."""
    vip12, vip13, backend = 25020, 25022, 25021
    a, b = "127.0.0.2", "127.0.0.3"
    directives = ["ssl_session_cache shared:SSL:1m", "ssl_session_tickets on"]
    if shared:
        keyfile = work / "ticket.key"
        keyfile.write_bytes(secrets.token_bytes(80))
        directives.append(f"ssl_session_ticket_key {keyfile}")
    body = ""
    for name, port in (("vip12", vip12), ("vip13", vip13)):
        body += (f"frontend {name}\n    mode tcp\n    bind 127.0.0.1:{port}\n"
                 f"    default_backend {name}_nodes\n"
                 f"backend {name}_nodes\n    mode tcp\n    balance roundrobin\n"
                 f"    server a {a}:{backend}\n    server b {b}:{backend}\n")
    reports = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(nginx(work / "nginx-a", cert, key, [(f"{a}:{backend}", directives)]))
        stack.enter_context(nginx(work / "nginx-b", cert, key, [(f"{b}:{backend}", directives)]))
        stack.enter_context(haproxy(work / "haproxy", body, [vip12, vip13]))
        stack.enter_context(capture([vip12, vip13]))
        for port, version, mech, fulls in ((vip12, TLS12, "ticket", 3), (vip13, TLS13, "psk", 2)):
            first = None
            for i in range(fulls):  # round robin: A, B, A (TLS 1.2 key names interleave)
                _, s = log.client(port, max_version=version, expect=False,
                                  story=f"full handshake {i} through the VIP")
                first = first or s
            got = [log.client(port, session=first, offered=mech, max_version=version,
                              story=f"first session offered through the VIP ({j})")[0].reused
                   for j in range(4)]
            if shared and not all(got):
                raise mc.CaptureFailed(f"shared keys, yet a refusal behind :{port}: {got}")
            if not shared and not (any(got) and not all(got)):
                raise mc.CaptureFailed(f"separate keys, yet {got} behind :{port}")
            reports[port] = got
    return [_server("127.0.0.1", vip12), _server("127.0.0.1", vip13)]


def scenario_vip_separate(work, cert, key, log, capture):
    servers = _vip(work, cert, key, log, capture, shared=False)
    return {
        "story": "haproxy round robin in front of two nginx with their own ticket keys: one "
                 "address, two key sets; TLS 1.2 on :25020, TLS 1.3 on :25022",
        "findings": [
            {"code": "several_key_sets", "servers": [servers[0]],
             "interleaved_key_names": 2},
            {"code": "several_key_sets", "servers": [servers[1]],
             "interleaved_key_names": 0, "refused_and_accepted": 1},
        ],
    }


def scenario_vip_shared(work, cert, key, log, capture):
    _vip(work, cert, key, log, capture, shared=True)
    return {"story": "haproxy round robin in front of two nginx sharing one "
                     "ssl_session_ticket_key file: every ticket accepted", "findings": []}


def _haproxy_cluster(work, cert, key, log, capture, shared: bool):
    """Two haproxy terminating TLS on 127.0.0.2 and 127.0.0.3 (:25030 TLS 1.2 clients,
    :25031 TLS 1.3 clients), each with its own ticket keys unless ``tls-ticket-keys`` names
    one shared file. A's session is offered to A and to B, B's only to A (never back to B)."""
    p12, p13 = 25030, 25031
    a, b = "127.0.0.2", "127.0.0.3"
    pem = work / "server.pem"
    pem.write_text(Path(cert).read_text() + Path(key).read_text())
    keys = ""
    if shared:
        import base64
        keyfile = work / "tls-ticket-keys"
        keyfile.write_text("".join(base64.b64encode(secrets.token_bytes(80)).decode() + "\n"
                                   for _ in range(3)))
        keys = f" tls-ticket-keys {keyfile}"

    def body(host: str) -> str:
        return (f"frontend tls\n    mode http\n"
                f"    bind {host}:{p12} ssl crt {pem}{keys} ssl-min-ver TLSv1.2\n"
                f"    bind {host}:{p13} ssl crt {pem}{keys} ssl-min-ver TLSv1.2\n"
                "    http-request return status 200 content-type text/plain string ok\n")

    with contextlib.ExitStack() as stack:
        stack.enter_context(haproxy(work / "haproxy-a", body(a), []))
        stack.enter_context(haproxy(work / "haproxy-b", body(b), []))
        for host in (a, b):
            for port in (p12, p13):
                wait_listening_on(host, port)
        stack.enter_context(capture([p12, p13]))
        for port, version, mech in ((p12, TLS12, "ticket"), (p13, TLS13, "psk")):
            _, sa = log.client(port, host=a, max_version=version, expect=False,
                               story="full handshake on A")
            log.client(port, host=a, session=sa, offered=mech, max_version=version,
                       story="A's session to A", expect=True)
            log.client(port, host=b, session=sa, offered=mech, max_version=version,
                       story="A's session to B", expect=shared)
            _, sb = log.client(port, host=b, max_version=version, expect=False,
                               story="full handshake on B")
            log.client(port, host=a, session=sb, offered=mech, max_version=version,
                       story="B's session to A (never offered back to B)", expect=shared)
    return [_server(h, p) for p in (p12, p13) for h in (a, b)]


def scenario_haproxy_separate(work, cert, key, log, capture):
    a12, b12, a13, b13 = _haproxy_cluster(work, cert, key, log, capture, shared=False)
    return {
        "story": "two haproxy with their own ticket keys; B's own sessions are never offered "
                 "back to B (B is not resumption_disabled); TLS 1.2 on :25030, TLS 1.3 on "
                 ":25031, where B's issuance is encrypted so only A->B is shown",
        "findings": [
            {"code": "cross_server_refused", "servers": [a12, b12], "offers": 1,
             "target_accepts_own": False},
            {"code": "cross_server_refused", "servers": [b12, a12], "offers": 1,
             "target_accepts_own": True},
            {"code": "ticket_keys_differ", "servers": [a12, b12]},
            {"code": "cross_server_refused", "servers": [a13, b13], "offers": 1,
             "target_accepts_own": False},
        ],
    }


def scenario_haproxy_shared(work, cert, key, log, capture):
    _haproxy_cluster(work, cert, key, log, capture, shared=True)
    return {"story": "two haproxy sharing one tls-ticket-keys file: every session accepted on "
                     "both nodes", "findings": []}


SCENARIOS = {
    "cache-timeout-staggered": scenario_cache_timeout_staggered,
    "restart-nginx": scenario_restart,
    "vip-separate-keys": scenario_vip_separate,
    "vip-shared-key": scenario_vip_shared,
    "haproxy-separate-keys": scenario_haproxy_separate,
    "haproxy-shared-keys": scenario_haproxy_shared,

    "cache-timeout": scenario_cache_timeout,
    "cluster-separate-keys": scenario_cluster_separate,
    "cluster-shared-key": scenario_cluster_shared,
    "cluster-separate-keys-tls13": scenario_cluster_separate_tls13,
    "cluster-shared-key-tls13": scenario_cluster_shared_tls13,
    "concurrent-nginx": scenario_concurrent_nginx,
    "concurrent-apache": scenario_concurrent_apache,
    "resumption-disabled": scenario_resumption_disabled,
    "not-resumable": scenario_not_resumable,
    "clients": scenario_clients,
    "key-rotation": scenario_key_rotation,
}


def run(name: str, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix=f"tlssniff-{name}-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        cert, key = mc.make_cert(work)
        log = Log()
        pcap = out / f"{name}.pcap"
        tmp_pcap = work / f"{name}.pcap"

        captured: list[int] = []

        @contextlib.contextmanager
        def capture(ports):
            captured.extend(ports)
            with Tcpdump(tmp_pcap, ports):
                yield

        expected = SCENARIOS[name](work, cert, key, log, capture)
        subprocess.run(["cp", str(tmp_pcap), str(pcap)], check=True)
        log.write(out / f"{name}.truth.jsonl", tmp_pcap, captured)
        (out / f"{name}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
        print(f"{pcap}: {pcap.stat().st_size} bytes, {len(log.runs)} python connections",
              file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=list(SCENARIOS), action="append")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (tcpdump on lo)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or SCENARIOS:
        run(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
