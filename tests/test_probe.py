"""``tlssniff probe`` against real servers on loopback: nginx, ``openssl s_server``, Apache.

Every server is configured so that the figures it must produce are known exactly: a cache and
no tickets resumes by id and by TLS 1.3 PSK but issues no ticket; no cache and tickets the
other way round; nothing resumes when both are off; a 3 s timeout accepts at 1 s and refuses
at 5 s; two nodes with their own ticket keys accept only their own sessions, with one shared
key file each other's tickets (but never each other's session ids: the caches stay per node).
As root the probe also captures its own traffic, and the passive analyzer must agree with the
client on every connection.

Servers listen on 127.0.0.x at free ports and are stopped by their fixtures.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tlssniff.errors import UsageError
from tlssniff.probe.engine import ProbeConfig, ProbeResult, Rate, run_probe
from tlssniff.probe.report import age_bracket, findings, score
from tlssniff.probe.target import split_host_port
from tlssniff.testing.nginx import http_head

SNI = "tlssniff.test"
WAIT = 10.0  # seconds: every wait for a server is bounded by this
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CAN_CAPTURE = ROOT and shutil.which("tcpdump") is not None
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                   else None)
APACHE = shutil.which("apache2") or ("/usr/sbin/apache2" if os.access("/usr/sbin/apache2", os.X_OK)
                                     else None)

pytestmark = pytest.mark.e2e
if shutil.which("openssl") is None:
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason="openssl is not installed")]

need_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed "
                                "(scripts/install-system-deps.sh)")


# --------------------------------------------------------------------------------------------
# Servers


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_listening(host: str, port: int, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server for {host}:{port} exited with {proc.returncode}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {host}:{port} after {WAIT} s")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=WAIT)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pki")
    os.chmod(d, 0o755)  # Apache's workers read the key after dropping root
    cert, key = d / "server.crt", d / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={SNI}",
         "-addext", f"subjectAltName=DNS:{SNI}", "-addext", "basicConstraints=critical,CA:FALSE"],
        check=True, capture_output=True, timeout=WAIT,
    )
    os.chmod(key, 0o644)
    return cert, key


NGINX_SERVER = """\
    server {{
        listen {ip}:{port} ssl;
        server_name {sni};
{directives}
        location / {{ return 200 "ok\\n"; }}
    }}
"""


def start_nginx(d: Path, pki, ip: str, servers: dict[str, str]) -> tuple[subprocess.Popen, dict]:
    """One nginx on ``ip`` with one server block per entry: name -> directives."""
    cert, key = pki
    d.mkdir(parents=True, exist_ok=True)
    ports = {}
    conf = http_head(d, cert, key, 512)
    for name, directives in servers.items():
        ports[name] = free_port(ip)
        body = "\n".join(f"        {line.strip()}" for line in directives.strip().splitlines())
        conf += NGINX_SERVER.format(ip=ip, port=ports[name], sni=SNI, directives=body)
    conf += "}\n"
    (d / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([NGINX, "-p", str(d), "-c", str(d / "nginx.conf"),
                             "-e", str(d / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for port in ports.values():
            wait_listening(ip, port, proc)
    except Exception:
        stop(proc, signal.SIGQUIT)
        raise
    return proc, {name: f"{ip}:{port}" for name, port in ports.items()}


@pytest.fixture(scope="module")
def nginx_single(pki, tmp_path_factory):
    """One nginx, one server block per configuration (each with its own cache zone)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/install-system-deps.sh)")
    d = tmp_path_factory.mktemp("nginx")
    proc, addr = start_nginx(d, pki, "127.0.0.1", {
        "cache_only": "ssl_session_cache shared:A:1m;\nssl_session_tickets off;",
        "tickets_only": "ssl_session_cache off;\nssl_session_tickets on;",
        "both_off": "ssl_session_cache off;\nssl_session_tickets off;",
        "cache_none": "ssl_session_cache none;\nssl_session_tickets off;",
        "timeout3": "ssl_session_cache shared:T:1m;\nssl_session_tickets on;\n"
                    "ssl_session_timeout 3s;",
    })
    yield addr
    stop(proc, signal.SIGQUIT)


@pytest.fixture(scope="module")
def nginx_cluster(pki, tmp_path_factory):
    """Two nginx nodes, 127.0.0.2 and 127.0.0.3, same name and certificate, each with its own
    session cache; port ``separate``: each node its own ticket key; port ``shared``: both read
    one ``ssl_session_ticket_key`` file."""
    if NGINX is None:
        pytest.skip("nginx is not installed (scripts/install-system-deps.sh)")
    d = tmp_path_factory.mktemp("cluster")
    keyfile = d / "ticket.key"
    keyfile.write_bytes(os.urandom(80))
    procs, nodes = [], []
    try:
        for ip in ("127.0.0.2", "127.0.0.3"):
            proc, addr = start_nginx(d / ip, pki, ip, {
                "separate": "ssl_session_cache shared:S:1m;",
                "shared": f"ssl_session_cache shared:K:1m;\nssl_session_ticket_key {keyfile};",
            })
            procs.append(proc)
            nodes.append(addr)
        yield nodes
    finally:
        for proc in procs:
            stop(proc, signal.SIGQUIT)


class SServer:
    """``openssl s_server -www`` on 127.0.0.1 with extra options."""

    def __init__(self, pki, *args: str):
        cert, key = pki
        self.port = free_port("127.0.0.1")
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert),
             "-key", str(key), "-www", "-quiet", *args],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening("127.0.0.1", self.port, self.proc)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        stop(self.proc)


@pytest.fixture(scope="module")
def s_servers(pki):
    servers = {}
    try:
        servers["cache_only"] = SServer(pki, "-no_ticket")
        servers["tickets_only"] = SServer(pki, "-no_cache")
        servers["both_off"] = SServer(pki, "-no_cache", "-no_ticket")
        # 0-RTT allowed: OpenSSL's anti-replay makes every TLS 1.3 ticket single-use.
        servers["anti_replay"] = SServer(pki, "-max_early_data", "16384")
        yield {name: s.addr for name, s in servers.items()}
    finally:
        for s in servers.values():
            s.stop()


APACHE_CONF = """\
ServerRoot "{d}"
ServerName {sni}
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule socache_shmcb_module {mods}/mod_socache_shmcb.so
LoadModule ssl_module {mods}/mod_ssl.so
User www-data
Group www-data
PidFile {d}/httpd.pid
ErrorLog {d}/error.log
LogLevel warn
Mutex file:{d}
DefaultRuntimeDir {d}
StartServers 2
ServerLimit 2
ThreadsPerChild 25
MaxRequestWorkers 50
Listen 127.0.0.1:{port}
SSLSessionCache shmcb:{d}/ssl_scache(512000)
SSLSessionCacheTimeout 300
<VirtualHost 127.0.0.1:{port}>
    ServerName {sni}
    SSLEngine on
    SSLCertificateFile {cert}
    SSLCertificateKeyFile {key}
    SSLSessionTickets off
    DocumentRoot {d}
</VirtualHost>
"""


@pytest.fixture(scope="module")
def apache(pki, tmp_path_factory):
    """Apache httpd, mod_ssl with ``SSLSessionCache shmcb`` shared by two processes; tickets
    off. Skipped when apache2 (Debian's build) is not installed or does not start here."""
    mods = Path("/usr/lib/apache2/modules")
    if APACHE is None or not (mods / "mod_ssl.so").exists():
        pytest.skip("apache2 with mod_ssl is not installed (apt-get install -y apache2)")
    if not ROOT:
        pytest.skip("Apache as configured here starts as root and drops to www-data")
    d = tmp_path_factory.mktemp("apache")
    os.chmod(d, 0o755)
    cert, key = pki
    port = free_port("127.0.0.1")
    conf = d / "httpd.conf"
    conf.write_text(APACHE_CONF.format(d=d, sni=SNI, mods=mods, port=port, cert=cert, key=key))
    proc = subprocess.Popen([APACHE, "-f", str(conf), "-DFOREGROUND"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening("127.0.0.1", port, proc)
    except RuntimeError as err:
        stop(proc, signal.SIGKILL)
        log = (d / "error.log").read_text() if (d / "error.log").exists() else ""
        pytest.skip(f"Apache did not start here: {err}; {log[-300:]}")
    yield f"127.0.0.1:{port}"
    stop(proc, signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# Helpers


def probe(pki, *targets: str, **kw) -> ProbeResult:
    kw.setdefault("attempts", 6)
    kw.setdefault("concurrency", 3)
    config = ProbeConfig(targets=list(targets), sni=SNI, cafile=str(pki[0]), **kw)
    return run_probe(config)


def rates(result: ProbeResult, target: str | None = None) -> dict:
    """mechanism -> (status, (accepted, completed) sequential, (accepted, completed) concurrent)."""
    out = {}
    t = result.targets[0] if target is None else next(x for x in result.targets if x.spec == target)
    for m in result.config.mechanisms:
        run = result.run(m, t)
        seq, conc = Rate.of(run.sequential), Rate.of(run.concurrent)
        out[m] = (run.status, (seq.accepted, seq.completed), (conc.accepted, conc.completed))
    return out


def codes(result: ProbeResult) -> list[tuple[str, str | None]]:
    # A self-check disagreement would show below as one more finding: shown in full instead.
    assert result.self_check.disagreements == [], result.self_check.disagreements
    return sorted((f.code, f.details.get("mechanism")) for f in findings(result))


def assert_self_check(result: ProbeResult) -> None:
    """As root: the wire agrees with the client on every connection the probe made."""
    sc = result.self_check
    if not CAN_CAPTURE:
        assert not sc.ran
        return
    assert sc.ran, sc.reason
    assert sc.dropped == 0
    assert sc.disagreements == []
    assert sc.unseen == 0
    connected = [a for a in result.attempts() if a.outcome.client is not None]
    assert sc.connections == sc.agree == len([a for a in connected if a.ok]) > 0
    for a in connected:
        assert a.wire is not None
        assert a.wire["handshake"] == a.handshake, a.to_dict()
        assert a.wire["offered"] == a.offered, a.to_dict()


def full(n: int) -> tuple[int, int]:
    return (n, n)


# --------------------------------------------------------------------------------------------
# nginx


@need_nginx
def test_nginx_cache_on_tickets_off(pki, nginx_single):
    r = probe(pki, nginx_single["cache_only"])
    # TLS 1.3 with tickets off: OpenSSL's stateful tickets, kept in the session cache.
    assert rates(r) == {
        "id": ("ok", full(6), full(6)),
        "ticket": ("not_issued", (0, 0), (0, 0)),
        "psk": ("ok", full(6), full(6)),
    }
    assert codes(r) == [("not_issued", "ticket")]
    assert score(r) == 0.0  # a client that needs tickets never resumes
    assert_self_check(r)


@need_nginx
def test_nginx_tickets_on_cache_off(pki, nginx_single):
    r = probe(pki, nginx_single["tickets_only"])
    assert rates(r) == {
        "id": ("not_issued", (0, 0), (0, 0)),
        "ticket": ("ok", full(6), full(6)),
        "psk": ("ok", full(6), full(6)),
    }
    assert r.run("ticket", r.targets[0]).ticket_lifetime == 300  # nginx's default timeout
    assert codes(r) == [("not_issued", "id")]
    assert_self_check(r)


@need_nginx
def test_nginx_both_off(pki, nginx_single):
    r = probe(pki, nginx_single["both_off"])
    # nginx still sends TLS 1.3 tickets it can never accept (no cache, no ticket keys in use).
    assert rates(r) == {
        "id": ("not_issued", (0, 0), (0, 0)),
        "ticket": ("not_issued", (0, 0), (0, 0)),
        "psk": ("ok", (0, 6), (0, 6)),
    }
    assert codes(r) == [("resumption_disabled", "psk"), ("session_not_resumable", None)]
    assert_self_check(r)


@need_nginx
def test_nginx_cache_none_issues_ids_it_never_keeps(pki, nginx_single):
    r = probe(pki, nginx_single["cache_none"], mechanisms=("id",))
    assert rates(r) == {"id": ("ok", (0, 6), (0, 6))}
    assert codes(r) == [("resumption_disabled", "id")]
    assert_self_check(r)


@need_nginx
def test_nginx_timeout_bracket(pki, nginx_single):
    """ssl_session_timeout 3s: every mechanism accepted at 1 s and refused at 5 s."""
    r = probe(pki, nginx_single["timeout3"], ages=(1.0, 5.0), attempts=2, concurrency=2)
    t = r.targets[0]
    for m in ("id", "ticket", "psk"):
        run = r.run(m, t)
        assert age_bracket(run) == (1.0, 5.0), m
        by_age = {a.planned_age: a for a in run.ages}
        assert 0.9 < by_age[1.0].age < 2.5 and 4.9 < by_age[5.0].age < 6.5
    # OpenSSL's client does not even offer a TLS 1.3 ticket past its lifetime hint (3 s).
    psk5 = next(a for a in r.run("psk", t).ages if a.planned_age == 5.0)
    assert psk5.offered == "none" and r.run("psk", t).ticket_lifetime == 3
    timeouts = [f for f in findings(r) if f.code == "cache_timeout"]
    assert sorted(f.details["mechanism"] for f in timeouts) == ["id", "psk", "ticket"]
    assert all(f.details["accepted_max_age"] == 1.0 and f.details["refused_min_age"] == 5.0
               for f in timeouts)
    assert codes(r) == [("cache_timeout", "id"), ("cache_timeout", "psk"),
                        ("cache_timeout", "ticket")]
    assert_self_check(r)


def _matrix(result: ProbeResult, mechanism: str) -> dict[tuple[str, str], tuple[int, int]]:
    out = {}
    for (i, j), attempts in result.matrix[mechanism].items():
        rate = Rate.of(attempts)
        out[(i, j)] = (rate.accepted, rate.completed)
    return out


@need_nginx
def test_nginx_two_nodes_separate_keys(pki, nginx_cluster):
    a, b = nginx_cluster[0]["separate"], nginx_cluster[1]["separate"]
    r = probe(pki, a, b)
    own_only = {(a, a): (2, 2), (a, b): (0, 2), (b, a): (0, 2), (b, b): (2, 2)}
    for m in ("id", "ticket", "psk"):
        assert _matrix(r, m) == own_only, m
        for t in (a, b):
            assert rates(r, t)[m] == ("ok", full(6), full(6))
    assert_self_check(r)  # first: a disagreement is shown in full, not as one more finding
    assert codes(r) == [("cross_server_refused", "id"), ("cross_server_refused", "psk"),
                        ("cross_server_refused", "ticket"), ("ticket_keys_differ", "psk"),
                        ("ticket_keys_differ", "ticket")]
    keys = next(f for f in findings(r) if f.code == "ticket_keys_differ")
    assert keys.servers == sorted([r.targets[0].endpoint, r.targets[1].endpoint])


@need_nginx
def test_nginx_two_nodes_shared_ticket_key(pki, nginx_cluster):
    a, b = nginx_cluster[0]["shared"], nginx_cluster[1]["shared"]
    r = probe(pki, a, b)
    everyone = {(a, a): (2, 2), (a, b): (2, 2), (b, a): (2, 2), (b, b): (2, 2)}
    assert _matrix(r, "ticket") == everyone
    assert _matrix(r, "psk") == everyone
    # The key file is shared, the session caches are not: ids stay on their node.
    assert _matrix(r, "id") == {(a, a): (2, 2), (a, b): (0, 2), (b, a): (0, 2), (b, b): (2, 2)}
    assert codes(r) == [("cross_server_refused", "id")]
    assert_self_check(r)


@need_nginx
def test_cli_two_nodes_default_settings_under_10_s(pki, nginx_cluster):
    """Acceptance: a 2-node probe with default settings prints the matrix in under 10 s."""
    a, b = nginx_cluster[0]["shared"], nginx_cluster[1]["shared"]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tlssniff", "probe", a, b, "--sni", SNI, "--cafile", str(pki[0])],
        capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert "Node matrix: TLS 1.2 session ticket" in proc.stdout
    assert "Node matrix: TLS 1.3 PSK" in proc.stdout
    assert "cross_server_refused" in proc.stdout
    if CAN_CAPTURE:
        assert "connections agree" in proc.stdout
    print(f"\n2-node default probe, whole command: {elapsed:.2f} s")
    assert elapsed < 10.0


@need_nginx
def test_cli_json_fail_under_and_write(pki, nginx_single, tmp_path):
    out = tmp_path / "probe.pcapng"
    args = [sys.executable, "-m", "tlssniff", "probe", nginx_single["tickets_only"], "--sni", SNI,
            "--cafile", str(pki[0]), "-m", "ticket,psk", "-n", "4", "-c", "2", "-f", "json",
            "--fail-under", "90%"]
    if CAN_CAPTURE:
        args += ["--write", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["score"] == 1.0
    assert [(m["mechanism"], m["sequential"]["rate"], m["concurrent"]["rate"])
            for m in doc["mechanisms"]] == [("ticket", 1.0, 1.0), ("psk", 1.0, 1.0)]
    assert doc["findings"] == []
    assert all(a["error"] is None for a in doc["attempts"])
    if CAN_CAPTURE:
        assert doc["self_check"]["agree"] == len(doc["attempts"])
        # The kept capture is evidence: the analyzer reads it back to the same verdicts.
        again = subprocess.run([sys.executable, "-m", "tlssniff", "analyze", str(out), "-f",
                                "jsonl"], capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        verdicts = {(v["client"], v["server"]): v for v in map(json.loads,
                                                               again.stdout.splitlines())}
        for a in doc["attempts"]:
            assert verdicts[(a["client"], a["server"])]["handshake"] == a["handshake"]

    # The same server without tickets for the id mechanism: below the threshold, status 3.
    proc = subprocess.run(
        [sys.executable, "-m", "tlssniff", "probe", nginx_single["tickets_only"], "--sni", SNI,
         "--cafile", str(pki[0]), "-n", "2", "-c", "2", "--no-self-check", "--fail-under",
         "0.9"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "under --fail-under 90%" in proc.stderr


# --------------------------------------------------------------------------------------------
# openssl s_server


def test_s_server_configurations(pki, s_servers):
    expected = {
        "cache_only": {"id": ("ok", full(6), full(6)),
                       "ticket": ("not_issued", (0, 0), (0, 0)),
                       "psk": ("ok", full(6), full(6))},
        "tickets_only": {"id": ("not_issued", (0, 0), (0, 0)),
                         "ticket": ("ok", full(6), full(6)),
                         "psk": ("ok", full(6), full(6))},
        "both_off": {"id": ("not_issued", (0, 0), (0, 0)),
                     "ticket": ("not_issued", (0, 0), (0, 0)),
                     "psk": ("ok", (0, 6), (0, 6))},
    }
    for name, want in expected.items():
        r = probe(pki, s_servers[name])
        assert rates(r) == want, name
        assert_self_check(r)


def test_s_server_single_use_tickets(pki, s_servers):
    """Anti-replay (0-RTT enabled): each TLS 1.3 ticket resumes once. Sequential reuse of one
    ticket: only the first; each concurrent burst (its own fresh ticket): exactly one."""
    n, c = 6, 3
    r = probe(pki, s_servers["anti_replay"], mechanisms=("psk",), attempts=n, concurrency=c)
    assert rates(r) == {"psk": ("ok", (1, n), (math.ceil(n / c), n))}
    run = r.run("psk", r.targets[0])
    assert [a.accepted for a in run.sequential] == [True] + [False] * (n - 1)
    for burst in range(math.ceil(n / c)):
        assert sum(a.accepted for a in run.concurrent if a.burst == burst) == 1
    assert codes(r) == [("single_use_tickets", "psk")]
    assert_self_check(r)


# --------------------------------------------------------------------------------------------
# Apache


def test_apache_shmcb(pki, apache):
    """mod_ssl with a shmcb cache shared by two processes: every concurrent offer accepted."""
    r = probe(pki, apache, attempts=10, concurrency=10)
    assert rates(r) == {
        "id": ("ok", full(10), full(10)),
        "ticket": ("not_issued", (0, 0), (0, 0)),
        "psk": ("ok", full(10), full(10)),
    }
    assert codes(r) == [("not_issued", "ticket")]
    assert_self_check(r)


# --------------------------------------------------------------------------------------------
# STARTTLS and errors


class PlainServer:
    """A thread answering every TCP connection with ``greeting``; with ``smtp_tls`` it speaks
    enough SMTP to start TLS (Python ``ssl``: session cache and tickets on)."""

    def __init__(self, greeting: bytes, pki=None):
        self.greeting = greeting
        self.ctx = None
        if pki is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(*pki)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(WAIT)
        try:
            conn.sendall(self.greeting)
            if self.ctx is None:
                conn.recv(4096)
                return
            f = conn.makefile("rb")
            f.readline()  # EHLO
            conn.sendall(b"250-tlssniff.test\r\n250 STARTTLS\r\n")
            f.readline()  # STARTTLS
            conn.sendall(b"220 go ahead\r\n")
            with self.ctx.wrap_socket(conn, server_side=True) as tls:
                while tls.recv(4096):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.thread.join(WAIT)
        self.sock.close()


def test_starttls_smtp(pki):
    server = PlainServer(b"220 tlssniff.test ESMTP\r\n", pki)
    try:
        r = probe(pki, server.addr, mechanisms=("ticket", "psk"), starttls="smtp", attempts=3,
                  concurrency=3)
    finally:
        server.close()
    assert rates(r) == {"ticket": ("ok", full(3), full(3)), "psk": ("ok", full(3), full(3))}
    sc = r.self_check
    if CAN_CAPTURE:  # captured, but the passive analyzer does not follow STARTTLS (yet)
        assert sc.ran and sc.disagreements == []
        if sc.unseen:
            assert "STARTTLS" in sc.unseen_reason


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tlssniff", "probe", *args, "--no-self-check",
                           "--timeout", "3"], capture_output=True, text=True, timeout=60)


def test_errors_are_clear(pki, s_servers):
    closed = free_port("127.0.0.1")
    proc = _cli(f"127.0.0.1:{closed}")
    assert proc.returncode == 5 and "connection refused" in proc.stderr, proc.stderr

    # Verification is on by default: a self-signed certificate is refused, with the way out.
    proc = _cli(s_servers["cache_only"], "--sni", SNI)
    assert proc.returncode == 5, proc.stderr
    assert "certificate verification failed" in proc.stderr and "--insecure" in proc.stderr
    proc = _cli(s_servers["cache_only"], "--sni", SNI, "--insecure", "-n", "1", "-c", "1",
                "-m", "id")
    assert proc.returncode == 0, proc.stderr

    # Right CA, wrong name.
    proc = _cli(s_servers["cache_only"], "--sni", "other.test", "--cafile", str(pki[0]))
    assert proc.returncode == 5 and "certificate verification failed" in proc.stderr
    assert "Hostname mismatch" in proc.stderr or "hostname" in proc.stderr.lower()

    smtp = PlainServer(b"220 mail.example ESMTP\r\n")
    try:
        proc = _cli(smtp.addr)
    finally:
        smtp.close()
    assert proc.returncode == 5, proc.stderr
    assert "does not speak TLS" in proc.stderr and "--starttls" in proc.stderr

    # Accepts, reads the ClientHello, closes without a word.
    mute = PlainServer(b"")
    try:
        proc = _cli(mute.addr)
    finally:
        mute.close()
    assert proc.returncode == 5, proc.stderr
    assert "closed the connection without answering the ClientHello" in proc.stderr

    proc = _cli("127.0.0.1:1", "-m", "nope")
    assert proc.returncode == 2 and "unknown nope" in proc.stderr


def test_target_parsing():
    assert split_host_port("example.com", 443) == ("example.com", 443)
    assert split_host_port("example.com:8443", 443) == ("example.com", 8443)
    assert split_host_port("[::1]:8443", 443) == ("::1", 8443)
    assert split_host_port("::1", 443) == ("::1", 443)
    for bad in ("", "host:0", "host:http", "[::1", "[::1]x"):
        with pytest.raises(UsageError):
            split_host_port(bad, 443)
