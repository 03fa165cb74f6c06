"""Load test of ``tlssniff live``: real TLS handshakes and bulk data over a veth pair.

    python bench/live_load.py                      # 60 s: >= 300 handshakes/s + >= 50 MB/s
    python bench/live_load.py --minutes 10         # 10 minutes, tlssniff's RSS every 10 s
    python bench/live_load.py --reader-bench       # per-frame cost of the capture readers
    python bench/live_load.py --minutes 10 --metrics   # the same with live --metrics, scraped
    python bench/live_load.py --replay 2 -- --workers 2 # recorded once, replayed at 2x

Needs root, nginx, iproute2. Everything happens inside two network namespaces this script
creates (``tlsl-srv-PID``, ``tlsl-cli-PID``) joined by a veth pair with MTU 1500 and
addresses 10.200.N.1 (server) and 10.200.N.2 (clients); nothing leaves the machine. The veth's
segmentation offloads (TSO, GSO, GRO) are switched off, so what is captured is what a real
1500-byte link carries: ~35,000 frames/s at 50 MB/s, not 64 KB super-packets.

* Server namespace: nginx, one worker. Port 443: TLS 1.2 and 1.3, session tickets on, and
  ``/bulk``, a large file. Port 8443: tickets off (TLS 1.2 resumes by session id from the shared
  session cache).
* Client namespace: ``--workers`` processes of Python ``ssl`` clients, paced to ``--rate``
  handshakes/s in total, cycling through four kinds (TLS 1.3 PSK, TLS 1.2 ticket, TLS 1.2
  session id, TLS 1.3 on the tickets-off server); each session is resumed three times, then a new
  full handshake is made. Every connection's client port and the client's own
  ``session_reused`` are recorded. One more process downloads ``/bulk`` paced to ``--bulk``
  MB/s (reconnecting at the end of the file).
* ``tlssniff live VETH -f jsonl`` runs in the server namespace during the whole load, is stopped
  with SIGTERM one second after the clients, and its verdicts are compared with the clients'
  records connection by connection.

With ``--metrics``, tlssniff also serves Prometheus metrics (``--metrics 127.0.0.1:PORT`` on the
server namespace's own loopback, PORT in 23000-23999) and a scraper in that namespace reads
``/metrics`` every ``--scrape-interval`` seconds (default 1) during the whole load, as a
Prometheus server would; the last scrape's handshake counts must equal its verdict count, and no more than tlssniff
wrote (connections still open at the stop are decided after it).

Reported: handshakes/s and MB/s achieved, frames/s, the kernel's received/dropped counts (from
tlssniff's summary), connections classified vs made, disagreements, tlssniff's CPU (with
``--workers``, the parent's and each worker's) and RSS.
Exit status 0 when the acceptance holds (no kernel drop, every handshake classified and
agreeing with its client), 1 otherwise.

Record, then replay (``--replay M``). On a 2-core machine the real clients and nginx need the
same cores as tlssniff, so they cannot make much more than the default load while tlssniff
runs beside them. With ``--replay M`` the load is made in two steps:

1. *Real*: the load above (nginx, the Python ``ssl`` clients, their records of every
   connection's client port and ``session_reused``), at ``--rate`` and ``--bulk``, recorded by
   ``tcpdump`` on the server's end of the veth; tlssniff does not run. The recording must be
   complete: tcpdump's kernel drops must be 0, and ``tlssniff analyze`` on the file must agree
   with every client (``--no-offline-check`` skips that), else the run fails as unjudgeable.
2. *Replayed*: the recorded frames, unchanged (same addresses, ports, bytes and order), sent by
   ``tcpreplay --pps`` (M times the recording's mean TCP frame rate: the spacing becomes even;
   its ``--multiplier`` drifts, see ``replay_main``) into one end of a second veth pair whose ends
   have no addresses, so no kernel answers them; ``tlssniff live`` (with the arguments after
   ``--``, e.g. ``--workers 2``) captures the other end. Its verdicts are compared with the
   records of step 1, connection by connection: the truth is what each client reported when
   the connection was made.

The rates reported are the replay's: handshakes/s from the first to the last handshake tlssniff
saw; bulk MB/s the bulk client's received bytes over its time, times the replay's measured
speed-up; frames/s and wire MB/s from tcpreplay. The exit status also requires the replay to
reach ``--min-rate`` handshakes/s and ``--min-mbps`` bulk MB/s (default M x 326 and M x 50, the
single-process figures, scaled by --rate/330 and --bulk/55) and tcpreplay to send every frame.
tcpreplay costs about 5 us of CPU a frame (under half a core at 90,000 frames/s), most of it
the kernel's, delivering the frames to the capture rings (as a NIC's receive path costs a
sensor); the Python clients it stands in for need both cores at 1.5x the default load. Needs tcpdump and tcpreplay besides the above; the
recording (~55 MB per second recorded at the default load) is written to the work directory,
deleted at the end unless ``--keep``; ``--replay-from DIR`` replays a kept one again (another
M, another build of tlssniff).
A recording at half the rate replayed twice as fast makes the same load from half the clients
(``--seconds 120 --rate 165 --bulk 27.5 --replay 4 --min-rate 652 --min-mbps 100``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNI = "load.tlssniff.test"
TIMEOUT = 10.0


# --------------------------------------------------------------------------------------------
# Namespaces


def run(*cmd: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    if ns is not None:
        cmd = ("ip", "netns", "exec", ns, *cmd)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


class Netns:
    """Two namespaces and a veth pair; ``close()`` deletes them (and so the veth)."""

    def __init__(self, tag: int, prefix: str = "tlsl"):
        n = tag % 250 + 1
        self.srv, self.cli = f"{prefix}-srv-{tag}", f"{prefix}-cli-{tag}"
        self.srv_if, self.cli_if = f"{prefix}S{tag}"[:15], f"{prefix}C{tag}"[:15]
        self.srv_ip, self.cli_ip = f"10.200.{n}.1", f"10.200.{n}.2"
        self.created: list[str] = []
        self._n = n

    def extra_ip(self, k: int) -> str:
        """Another client address (one per handshake worker)."""
        return f"10.200.{self._n}.{10 + k}"

    def open(self, addresses: bool = True) -> Netns:
        """Create them; without ``addresses`` the veth ends have no IP address (a replay's:
        its frames are for no one there, and no kernel answers them)."""
        for ns in (self.srv, self.cli):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        run("ip", "link", "add", self.srv_if, "mtu", "1500", "type", "veth",
            "peer", "name", self.cli_if, "mtu", "1500")
        self.created.append("veth")
        run("ip", "link", "set", self.srv_if, "netns", self.srv)
        run("ip", "link", "set", self.cli_if, "netns", self.cli)
        for ns, ifname, ip in ((self.srv, self.srv_if, self.srv_ip),
                               (self.cli, self.cli_if, self.cli_ip)):
            if addresses:
                run("ip", "addr", "add", f"{ip}/24", "dev", ifname, ns=ns)
            run("ip", "link", "set", ifname, "up", ns=ns)
            run(sys.executable, __file__, "_offloads", ifname, ns=ns)
        return self

    def close(self) -> None:
        if "veth" in self.created:
            run("ip", "link", "del", self.srv_if, check=False)  # if it never moved
        for ns in (self.srv, self.cli):
            if ns in self.created:
                run("ip", "netns", "del", ns, check=False)
        self.created.clear()


# Legacy ethtool ioctls (linux/ethtool.h): struct ethtool_value {u32 cmd; u32 data;}
_SIOCETHTOOL = 0x8946
_ETHTOOL_SET = {"tso": 0x1F, "gso": 0x24, "gro": 0x2C, "sg": 0x19}


def set_offloads_off(ifname: str) -> None:
    """``ethtool -K IF tso off gso off gro off`` without ethtool (run inside the namespace)."""
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in ("tso", "gso", "gro"):
            value = bytearray(struct.pack("II", _ETHTOOL_SET[name], 0))
            addr = struct.pack("16sP", ifname.encode(), _buffer_address(value))
            fcntl.ioctl(s.fileno(), _SIOCETHTOOL, addr)


def _buffer_address(buf: bytearray) -> int:
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


# --------------------------------------------------------------------------------------------
# Server

NGINX_CONF = """\
user root;
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    ssl_certificate {d}/server.crt;
    ssl_certificate_key {d}/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:20m;
    ssl_session_timeout 10m;
    server {{
        listen {ip}:443 ssl;
        server_name {sni};
        ssl_session_tickets on;
        location / {{ return 200 "ok\\n"; }}
        location = /bulk {{ alias {d}/bulk.bin; }}
    }}
    server {{
        listen {ip}:8443 ssl;
        server_name {sni};
        ssl_session_tickets off;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

BULK_FILE_MB = 256


def make_server_files(d: Path) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(d / "server.key"), "-out", str(d / "server.crt"),
         "-days", "30", "-subj", f"/CN={SNI}"],
        check=True, capture_output=True, timeout=TIMEOUT,
    )
    with open(d / "bulk.bin", "wb") as f:  # sparse: costs no disk
        f.truncate(BULK_FILE_MB * 1024 * 1024)


def wait_port(ns: str, port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if run("ss", "-Hltn", f"sport = :{port}", ns=ns).stdout.strip():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# --------------------------------------------------------------------------------------------
# Clients (run inside the client namespace: ``live_load.py _clients ...``)

KINDS = (  # name, port, TLS 1.2 only, what a resumption presents
    ("tls13", 443, False, "psk"),
    ("tls12-ticket", 443, True, "ticket"),
    ("tls12-id", 8443, True, "session_id"),
    ("tls13-notkt", 8443, False, "psk"),
)
RESUMES_PER_SESSION = 3
GET = b"GET / HTTP/1.0\r\nHost: " + SNI.encode() + b"\r\n\r\n"


# Client source ports: each worker has its own source address and takes ports in sequence from
# this range, so no 4-tuple is used twice within (range size / worker rate) = 740 s at 330/s
# with 6 workers. Letting the kernel choose ports reuses 4-tuples within seconds at this rate;
# ``--ephemeral-ports`` does that (see docs/live.md: tlssniff's flow table then merges the reused
# connection into the closed one).
PORT_RANGE = (20000, 61000)


class _Ports:
    def __init__(self, ip: str, ephemeral: bool):
        self.ip, self.ephemeral = ip, ephemeral
        self.next = PORT_RANGE[0]

    def connect(self, server: str, port: int) -> socket.socket:
        if self.ephemeral:
            raw = socket.create_connection((server, port), timeout=TIMEOUT,
                                           source_address=(self.ip, 0))
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return raw
        for _ in range(100):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(TIMEOUT)
            src = self.next
            self.next = src + 1 if src + 1 < PORT_RANGE[1] else PORT_RANGE[0]
            try:
                raw.bind((self.ip, src))
                raw.connect((server, port))
                return raw
            except OSError:
                raw.close()
        raise OSError("no free source port")


def _handshake_worker(server: str, ip: str, ephemeral: bool, rate: float, until: float,
                      out: str, index: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ports = _Ports(ip, ephemeral)
    ctx13 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx12 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    for ctx in (ctx13, ctx12):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    sessions: dict[str, list] = {}
    records = []
    errors = 0
    interval = 1.0 / rate
    nxt = time.monotonic()
    i = index
    while True:
        now = time.monotonic()
        if now >= until:
            break
        if now < nxt:
            time.sleep(min(nxt - now, until - now))
            continue
        nxt += interval
        if nxt < now - 1.0:
            nxt = now  # far behind: do not burst to catch up
        name, port, v12, mech = KINDS[i % len(KINDS)]
        i += 1
        ctx = ctx12 if v12 else ctx13
        held = sessions.get(name)
        sess = held[0] if held and held[1] < RESUMES_PER_SESSION else None
        try:
            with ports.connect(server, port) as raw:
                cport = raw.getsockname()[1]
                with ctx.wrap_socket(raw, server_hostname=SNI, session=sess) as tls:
                    tls.sendall(GET)
                    while tls.recv(4096):
                        pass
                    reused, version, new = tls.session_reused, tls.version(), tls.session
        except (OSError, ssl.SSLError):
            errors += 1
            continue
        if sess is None or not reused:
            sessions[name] = [new, 0]
        else:
            held[1] += 1
        records.append({"client": f"{ip}:{cport}",
                        "server": f"{server}:{port}", "kind": name, "version": version,
                        "offered": mech if sess is not None else "none", "reused": reused})
    with open(out, "w") as f:
        json.dump({"records": records, "errors": errors}, f)


def _bulk_worker(server: str, ip: str, ephemeral: bool, mbps: float, until: float,
                 out: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ports = _Ports(ip, ephemeral)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    rate = mbps * 1e6
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    records = []
    errors = 0
    start = time.monotonic()
    request = b"GET /bulk HTTP/1.0\r\nHost: " + SNI.encode() + b"\r\n\r\n"
    while time.monotonic() < until:
        try:
            with ports.connect(server, 443) as raw:
                cport = raw.getsockname()[1]
                with ctx.wrap_socket(raw, server_hostname=SNI) as tls:
                    tls.sendall(request)
                    records.append({"client": f"{ip}:{cport}",
                                    "server": f"{server}:443", "kind": "bulk",
                                    "version": tls.version(), "offered": "none",
                                    "reused": tls.session_reused})
                    while True:
                        now = time.monotonic()
                        if now >= until:
                            break
                        allowed = rate * (now - start) - total
                        if allowed < 16384:
                            time.sleep(min((16384 - allowed) / rate, 0.01))
                            continue
                        n = tls.recv_into(view, min(int(allowed), len(buf)))
                        if not n:
                            break
                        total += n
        except (OSError, ssl.SSLError):
            errors += 1
            time.sleep(0.1)
    with open(out, "w") as f:
        json.dump({"records": records, "errors": errors, "bytes": total,
                   "seconds": time.monotonic() - start}, f)


def clients_main(args: argparse.Namespace) -> None:
    """Inside the client namespace: start the workers, wait for them, exit."""
    until = time.monotonic() + args.seconds
    ips = args.client_ips.split(",")
    eph = args.ephemeral_ports
    procs = []
    for k in range(args.workers):
        procs.append(multiprocessing.Process(
            target=_handshake_worker,
            args=(args.server, ips[k + 1], eph, args.rate / args.workers, until,
                  f"{args.out}/hs{k}.json", k)))
    if args.bulk > 0:
        procs.append(multiprocessing.Process(
            target=_bulk_worker,
            args=(args.server, ips[0], eph, args.bulk, until, f"{args.out}/bulk.json")))
    for p in procs:
        p.start()
    for p in procs:
        p.join(args.seconds + 30)
        if p.is_alive():
            p.kill()
            p.join(5)


def _start_scraper(namespace: str, port: int, interval: float, work: Path) -> subprocess.Popen:
    """:func:`scrape_main` in ``namespace``, reading live --metrics on its own loopback."""
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, sys.executable, __file__, "_scrape",
         "--url", f"http://127.0.0.1:{port}/metrics", "--interval", str(interval),
         "--out", str(work / "scrape.json")],
        stdout=subprocess.DEVNULL, stderr=open(work / "scrape.err", "w"))


def scrape_main(args: argparse.Namespace) -> None:
    """Inside the server namespace: scrape ``args.url`` every ``args.interval`` seconds until
    killed; after every scrape, write what it saw to ``args.out`` (a Prometheus stand-in)."""
    import urllib.request

    sys.path.insert(0, str(REPO))
    from prometheus_client.parser import text_string_to_metric_families

    stats = {"scrapes": 0, "failures": 0, "max_bytes": 0, "max_series": 0, "max_seconds": 0.0,
             "handshakes": 0, "verdicts": 0, "series": 0}
    while True:
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(args.url, timeout=5) as r:
                body = r.read()
            took = time.monotonic() - t0
            series = hs = verdicts = 0
            for fam in text_string_to_metric_families(body.decode()):
                for sample in fam.samples:
                    series += 1
                    if sample.name == "tlssniff_handshakes_total":
                        hs += int(sample.value)
                    elif sample.name == "tlssniff_verdicts_total":
                        verdicts = int(sample.value)
            stats.update(scrapes=stats["scrapes"] + 1, handshakes=hs, verdicts=verdicts,
                         series=series, max_bytes=max(stats["max_bytes"], len(body)),
                         max_series=max(stats["max_series"], series),
                         max_seconds=max(stats["max_seconds"], took))
        except OSError:
            stats["failures"] += 1
        Path(args.out + ".tmp").write_text(json.dumps(stats))
        os.replace(args.out + ".tmp", args.out)
        time.sleep(max(0.0, args.interval - (time.monotonic() - t0)))


# --------------------------------------------------------------------------------------------
# The measurement


def _proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _proc_cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and of each of its live descendants (``live --workers``' forked
    workers are not in the parent's own count until they are reaped)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        cpu = _proc_cpu_s(p)
        if cpu is not None:
            out[p] = cpu
        todo += children.get(p, [])
    return out


def _cpu_parts(pid: int, before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """Per-process CPU between two ``_tree_cpu`` samples: the parent, then each worker."""
    parts = {"parent": after.get(pid, 0.0) - before.get(pid, 0.0)}
    for k, p in enumerate(sorted(q for q in after if q != pid)):
        parts[f"worker {k + 1}"] = after[p] - before.get(p, 0.0)
    return parts


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _check_tools(tools: tuple[str, ...]) -> bool:
    if os.geteuid() != 0:
        print("live_load: needs root (network namespaces, capture)", file=sys.stderr)
        return False
    for tool in tools:
        if shutil.which(tool) is None and not os.access(f"/usr/sbin/{tool}", os.X_OK):
            print(f"live_load: {tool} is not installed", file=sys.stderr)
            return False
    return True


def _start_nginx(net: Netns, work: Path) -> subprocess.Popen:
    make_server_files(work)
    (work / "nginx.conf").write_text(NGINX_CONF.format(d=work, ip=net.srv_ip, sni=SNI))
    nginx = subprocess.Popen(
        ["ip", "netns", "exec", net.srv, shutil.which("nginx") or "/usr/sbin/nginx",
         "-p", str(work), "-c", str(work / "nginx.conf"), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(net.srv, 443, nginx)
    wait_port(net.srv, 8443, nginx)
    return nginx


def _wait_for(path: Path, text: str, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while text not in path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: " + path.read_text())
        time.sleep(0.05)


def _start_tlssniff(net: Netns, work: Path, args: argparse.Namespace,
                    metrics_port: int) -> subprocess.Popen:
    """``tlssniff live`` on the server end of the veth; returns once it listens."""
    cmd = ["ip", "netns", "exec", net.srv, sys.executable, "-m", "tlssniff", "live",
           net.srv_if, "-f", "jsonl", "-o", str(work / "verdicts.jsonl"), *args.tlssniff_args]
    if args.metrics:
        cmd += ["--metrics", f"127.0.0.1:{metrics_port}"]
    with open(work / "tlssniff.err", "w") as err:
        sniff = subprocess.Popen(cmd, cwd=REPO, stdout=err, stderr=subprocess.STDOUT)
    _wait_for(work / "tlssniff.err", "listening on", sniff, "tlssniff")
    return sniff


def _start_clients(net: Netns, work: Path, args: argparse.Namespace, seconds: float,
                   nice: int) -> subprocess.Popen:
    client_ips = [net.cli_ip] + [net.extra_ip(k) for k in range(args.workers)]
    for ip in client_ips[1:]:
        run("ip", "addr", "add", f"{ip}/24", "dev", net.cli_if, ns=net.cli)
    return subprocess.Popen(
        ["nice", "-n", str(nice),
         "ip", "netns", "exec", net.cli, sys.executable, __file__, "_clients",
         "--server", net.srv_ip, "--client-ips", ",".join(client_ips),
         "--rate", str(args.rate), "--bulk", str(args.bulk), "--seconds", str(seconds),
         "--workers", str(args.workers), "--out", str(work)]
        + (["--ephemeral-ports"] if args.ephemeral_ports else []),
        start_new_session=True)  # its own process group: the workers are killed with it


def _kill_clients(clients: subprocess.Popen | None) -> None:
    if clients is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(clients.pid, signal.SIGKILL)  # the client process and its workers
    _stop(clients, signal.SIGKILL)


def load_main(args: argparse.Namespace) -> int:
    if not _check_tools(("ip", "nginx", "openssl", "ss")):
        return 2
    seconds = args.minutes * 60 if args.minutes else args.seconds
    work = Path(tempfile.mkdtemp(prefix="tlssniff-live-load-"))
    net = Netns(os.getpid())
    nginx = clients = sniff = scraper = None
    samples: list[tuple[float, float]] = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        net.open()
        nginx = _start_nginx(net, work)
        verdicts = work / "verdicts.jsonl"
        metrics_port = 23900 + os.getpid() % 100  # the namespace's own loopback
        sniff = _start_tlssniff(net, work, args, metrics_port)
        print(f"live_load: {seconds:.0f} s of {args.rate:.0f} handshakes/s and {args.bulk:.0f} MB/s "
              f"over {net.srv_if} ({net.cli_ip} -> {net.srv_ip}); tlssniff pid {sniff.pid}",
              flush=True)
        if args.metrics:
            scraper = _start_scraper(net.srv, metrics_port, args.scrape_interval, work)
        cpu0 = _tree_cpu(sniff.pid)
        t0 = time.monotonic()
        # The clients stand for other machines: niced, they do not take the CPU the server
        # host (nginx, tlssniff) would have to itself (--client-nice 0 to compare).
        nice = 10 if args.client_nice is None else args.client_nice
        clients = _start_clients(net, work, args, seconds, nice)
        next_sample = t0 + 10
        while clients.poll() is None and time.monotonic() < t0 + seconds + 60:
            time.sleep(0.5)
            if time.monotonic() >= next_sample:
                next_sample += 10
                rss = _proc_rss_mb(sniff.pid)
                if rss is not None:
                    samples.append((time.monotonic() - t0, rss))
                    if args.minutes:
                        print(f"  t={samples[-1][0]:5.0f} s  tlssniff RSS {rss:6.1f} MB", flush=True)
        load_seconds = time.monotonic() - t0
        _stop(clients, signal.SIGKILL if clients.poll() is None else signal.SIGTERM)
        time.sleep(1.0)
        if scraper is not None:
            time.sleep(max(1.0, 2 * args.scrape_interval))  # a scrape after the last verdicts
            _stop(scraper, signal.SIGKILL)
        cpu = _cpu_parts(sniff.pid, cpu0, _tree_cpu(sniff.pid))
        peak = _peak_rss_mb(sniff.pid)
        _stop(sniff, signal.SIGTERM, timeout=30)
        return report(work, verdicts, sniff, load_seconds, cpu, samples, peak, args)
    except KeyboardInterrupt:
        print("live_load: interrupted", file=sys.stderr)
        return 130
    finally:
        _kill_clients(clients)
        _stop(scraper, signal.SIGKILL)
        _stop(sniff, signal.SIGKILL)
        _stop(nginx, signal.SIGQUIT)
        net.close()
        _restore(old, work, args.keep)


def _restore(handlers: dict, work: Path, keep: bool) -> None:
    """The signal handlers back as they were; the work directory kept (``--keep``) or removed."""
    for s, h in handlers.items():
        signal.signal(s, h)
    if keep:
        print(f"live_load: files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def _peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load_records(work: Path) -> tuple[list, int, int, float | None]:
    """The clients' records: (records, client errors, bulk bytes, bulk seconds)."""
    records, errors, bulk_bytes, bulk_seconds = [], 0, 0, None
    for path in sorted(work.glob("hs*.json")) + sorted(work.glob("bulk.json")):
        doc = json.loads(path.read_text())
        records += doc["records"]
        errors += doc["errors"]
        if "bytes" in doc:
            bulk_bytes, bulk_seconds = doc["bytes"], doc["seconds"]
    return records, errors, bulk_bytes, bulk_seconds


def compare(records: list, verdicts: Path) -> dict:
    """tlssniff's verdicts against the clients' records, connection by connection."""
    # A 4-tuple used twice (--ephemeral-ports) has two records (one worker's, in order) and
    # should have two verdicts: matched in time order.
    got: dict[tuple, list] = {}
    reported = 0
    for line in verdicts.read_text().splitlines():
        v = json.loads(line)
        got.setdefault((v["client"], v["server"]), []).append(v)
        reported += 1
    for vs in got.values():
        vs.sort(key=lambda v: v["ts"])
    missing = unclassified = wrong = 0
    examples, hs_ts = [], []
    for r in records:
        vs = got.get((r["client"], r["server"]))
        v = vs.pop(0) if vs else None
        if v is None:
            missing += 1
            examples.append(f"not reported: {r}")
            continue
        if r["kind"] != "bulk":
            hs_ts.append(v["ts"])
        if v["handshake"] == "unknown":
            unclassified += 1
            examples.append(f"unknown ({v['note']}): {r}")
            continue
        want = r["offered"] if r["reused"] else "full"
        if v["handshake"] != want or v["resumed"] != r["reused"] or v["offered"] != r["offered"]:
            wrong += 1
            examples.append(f"disagrees: client {r} tlssniff {v['offered']}/{v['handshake']}")
    extra = sum(len(vs) for vs in got.values())
    agree = len(records) - missing - unclassified - wrong
    return {"reported": reported, "agree": agree, "missing": missing,
            "unclassified": unclassified, "wrong": wrong, "extra": extra,
            "examples": examples, "ok": agree == len(records), "hs_ts": hs_ts}


def report(work: Path, verdicts: Path, sniff: subprocess.Popen, seconds: float,
           cpu: dict[str, float],
           samples: list, peak: float | None, args, replay: dict | None = None) -> int:
    """Print the figures; 0 when the acceptance holds. With ``replay`` (the replay's
    ``speedup`` over the recording, its ``min_rate``/``min_mbps`` and its own ``lines``),
    ``seconds`` is the recording's load time and the rates are the replay's."""
    err = (work / "tlssniff.err").read_text()
    m = re.search(r"Captured (\d+) frames .*? in ([\d.]+) s .*?kernel:\s+(\d+)\s+received,\s+(\d+)\s+dropped",
                  err, re.S)
    records, errors, bulk_bytes, bulk_seconds = load_records(work)
    speedup = replay["speedup"] if replay else 1.0
    seconds /= speedup
    bulk_seconds = (bulk_seconds or seconds * speedup) / speedup
    keys = [(r["client"], r["server"]) for r in records]
    reused_tuples = len(keys) - len(set(keys))
    hs = [r for r in records if r["kind"] != "bulk"]
    c = compare(records, verdicts)
    missing, unclassified, wrong = c["missing"], c["unclassified"], c["wrong"]
    reported, examples = c["reported"], c["examples"]
    extra = c["extra"]
    resumed = sum(r["reused"] for r in hs)
    hs_rate, bulk_rate = len(hs) / seconds, bulk_bytes / 1e6 / bulk_seconds
    if replay and len(c["hs_ts"]) > 1:
        # what the capture saw: handshakes over the time from its first to its last one
        arrived = max(c["hs_ts"]) - min(c["hs_ts"])
        hs_rate = (len(c["hs_ts"]) - 1) / arrived
        seconds = len(hs) / hs_rate
    print()
    for line in (replay or {}).get("lines", ()):
        print(line)
    print(f"load:      {len(hs)} handshakes in {seconds:.1f} s = {hs_rate:.0f}/s "
          f"({resumed} resumed, {len(hs) - resumed} full; client errors {errors}); "
          f"bulk {bulk_rate:.1f} MB/s" + (f" (replayed {speedup:.2f}x)" if replay else ""))
    if m:
        frames, cap_s, received, dropped = int(m[1]), float(m[2]), int(m[3]), int(m[4])
        print(f"capture:   {frames} frames in {cap_s:.1f} s = {frames / cap_s:,.0f} frames/s; "
              f"kernel: {received} received, {dropped} dropped")
    else:
        dropped = -1
        print(f"capture:   no summary from tlssniff (exit {sniff.returncode}):\n{err[-2000:]}")
    print(f"verdicts:  {len(records)} client connections ({len(hs)} handshake clients + "
          f"{len(records) - len(hs)} bulk); tlssniff reported {reported}: "
          f"{len(records) - missing - unclassified - wrong} agree, {missing} missing, "
          f"{unclassified} unknown, {wrong} disagree, {extra} extra")
    if reused_tuples:
        print(f"           {reused_tuples} client connections reused the 4-tuple of an earlier one")
    for line in examples[:10]:
        print("   ", line)
    total = sum(cpu.values())
    parts = "; ".join(f"{k} {v:.1f} s" for k, v in cpu.items()) if len(cpu) > 1 else ""
    print(f"tlssniff:  CPU {total:.1f} s over {seconds:.0f} s ({100 * total / seconds:.0f}% of a core"
          + (f": {parts}" if parts else "") + f"); exit {sniff.returncode}; "
          f"peak RSS {peak if peak is None else round(peak, 1)} MB (parent)")
    ok = (dropped == 0 and missing == 0 and unclassified == 0 and wrong == 0
          and sniff.returncode == 0)
    if replay:
        fast = hs_rate >= replay["min_rate"] and bulk_rate >= replay["min_mbps"]
        print(f"rate:      {hs_rate:.0f} handshakes/s and {bulk_rate:.1f} MB/s against the "
              f"{replay['min_rate']:.0f}/s and {replay['min_mbps']:.0f} MB/s asked: "
              + ("reached" if fast else "NOT reached"))
        ok = ok and fast and replay["ok"]
    if args.metrics:
        scrape = work / "scrape.json"
        st = json.loads(scrape.read_text()) if scrape.exists() else None
        if st is None:
            print("metrics:   no scrape succeeded")
            ok = False
        else:
            print(f"metrics:   {st['scrapes']} scrapes every {args.scrape_interval:g} s, "
                  f"{st['failures']} failed; largest {st['max_bytes']:,} bytes, "
                  f"{st['max_series']} series, slowest {1000 * st['max_seconds']:.0f} ms; "
                  f"last scrape: {st['verdicts']} verdicts, {st['handshakes']} in "
                  f"tlssniff_handshakes_total (tlssniff reported {reported})")
            # connections still open at the stop are decided after the last scrape
            ok = ok and st["failures"] == 0 and st["verdicts"] == st["handshakes"] <= reported
    if samples:
        rss = [s[1] for s in samples]
        growth = rss[-1] - rss[0]
        print(f"RSS:       {len(rss)} samples every 10 s: first {rss[0]:.1f} MB, last {rss[-1]:.1f} MB, "
              f"min {min(rss):.1f}, max {max(rss):.1f}; growth {growth:+.1f} MB")
        late = [r for t, r in samples if t >= 120]
        if late:
            print(f"           after the first 2 minutes (flow table and sweeps at steady state): "
                  f"{late[0]:.1f} -> {late[-1]:.1f} MB, growth {late[-1] - late[0]:+.1f} MB")
        if args.minutes:
            ok = ok and growth < 20
    print("result:   ", "PASS" if ok else "FAIL")
    return 0 if ok else 1


# --------------------------------------------------------------------------------------------
# Record, then replay (--replay M)


def pcap_span(path: Path) -> dict:
    """A classic Ethernet pcap's frames and bytes on the wire (``frames``, ``wire``), its TCP
    frames (``tcp``) and the time from the first to the last of those (``span``): the load,
    without the link's own chatter (neighbour discovery, ARP) before it starts."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        magic = bytes(m[:4])
        little = magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
        frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
        header = struct.Struct("<IIII" if little else ">IIII")
        off, size, frames, wire, tcp = 24, len(m), 0, 0, 0
        first = last = 0.0
        while off + 16 <= size:
            sec, sub, incl, orig = header.unpack_from(m, off)
            frames += 1
            wire += orig
            data = off + 16
            ether = m[data + 12:data + 14]
            if incl >= 34 and ((ether == b"\x08\x00" and m[data + 23] == 6)
                               or (ether == b"\x86\xdd" and m[data + 20] == 6)):
                last = sec + sub * frac
                if not tcp:
                    first = last
                tcp += 1
            off = data + incl
    return {"frames": frames, "wire": wire, "tcp": tcp, "span": last - first}


def _softnet_dropped() -> int:
    """Frames the kernel's per-CPU input queues dropped (all namespaces): /proc/net/softnet_stat."""
    with open("/proc/net/softnet_stat") as f:
        return sum(int(line.split()[1], 16) for line in f)


def record_load(args: argparse.Namespace, work: Path, seconds: float) -> dict:
    """Step 1 of ``--replay``: the real load, recorded by tcpdump on the server's end of the
    veth (no tlssniff running). Writes ``load.pcap``, the clients' records and
    ``recording.json`` (what the replay needs to know about it) into ``work``."""
    rec = Netns(os.getpid())
    nginx = clients = tcpdump = None
    try:
        rec.open()
        nginx = _start_nginx(rec, work)
        pcap = work / "load.pcap"
        with open(work / "tcpdump.err", "w") as err:
            tcpdump = subprocess.Popen(
                ["ip", "netns", "exec", rec.srv, "tcpdump", "-i", rec.srv_if, "-n", "-s", "0",
                 "-B", "262144", "-w", str(pcap)],
                stdout=subprocess.DEVNULL, stderr=err)
        _wait_for(work / "tcpdump.err", "listening on", tcpdump, "tcpdump")
        print(f"live_load: recording {seconds:.0f} s of {args.rate:.0f} handshakes/s and "
              f"{args.bulk:.0f} MB/s over {rec.srv_if} ({rec.cli_ip} -> {rec.srv_ip}) with tcpdump",
              flush=True)
        t0 = time.monotonic()
        # Nothing to leave the CPU to while recording (tlssniff runs at the replay): not niced.
        nice = 0 if args.client_nice is None else args.client_nice
        clients = _start_clients(rec, work, args, seconds, nice)
        with contextlib.suppress(subprocess.TimeoutExpired):
            clients.wait(seconds + 60)
        load_seconds = time.monotonic() - t0
        _kill_clients(clients)
        time.sleep(1.0)  # the last closes
        _stop(tcpdump, signal.SIGTERM)
    finally:
        _kill_clients(clients)
        _stop(tcpdump, signal.SIGKILL)
        _stop(nginx, signal.SIGQUIT)
        rec.close()
    m = re.search(r"(\d+) packets? dropped by kernel", (work / "tcpdump.err").read_text())
    dropped = int(m[1]) if m else -1
    cap = pcap_span(pcap)
    frames, wire, span = cap["frames"], cap["wire"], cap["span"]
    records, _, _, _ = load_records(work)
    lines = [f"recorded:  {frames:,} frames ({wire / 1e6:,.0f} MB on the wire); {cap['tcp']:,} TCP "
             f"frames over {span:.1f} s = {cap['tcp'] / span:,.0f} frames/s, "
             f"{wire / 1e6 / span:.1f} MB/s; tcpdump: {dropped} "
             f"dropped by the kernel; {len(records)} client connections"]
    ok = dropped == 0
    if not args.no_offline_check:
        # The recording itself, analyzed offline: it is complete when every connection agrees
        # with its client here (a live miss is then the live capture's).
        offline = work / "offline.jsonl"
        subprocess.run([sys.executable, "-m", "tlssniff", "analyze", str(pcap), "-f", "jsonl",
                        "-o", str(offline)], cwd=REPO, check=True, capture_output=True)
        c = compare(records, offline)
        ts = c["hs_ts"]
        made = f"; {(len(ts) - 1) / (max(ts) - min(ts)):.0f} handshakes/s" if len(ts) > 1 else ""
        lines.append(f"offline:   tlssniff analyze on the recording: {c['agree']} of "
                     f"{len(records)} agree, {c['missing']} missing, {c['unclassified']} "
                     f"unknown, {c['wrong']} disagree{made}")
        lines += [f"    {e}" for e in c["examples"][:5]]
        ok = ok and c["ok"]
    meta = {"load_seconds": load_seconds, "span": span, "frames": frames, "wire": wire,
            "tcp": cap["tcp"],
            "rate": args.rate, "bulk": args.bulk, "lines": lines, "ok": ok}
    (work / "recording.json").write_text(json.dumps(meta))
    return meta


def replay_main(args: argparse.Namespace) -> int:
    """Record the real load with tcpdump (or take ``--replay-from``'s recording), then replay it
    ``args.replay`` times as fast onto a fresh veth pair while ``tlssniff live`` captures;
    compare its verdicts with the recording's clients."""
    import resource

    tools = ("ip", "tcpreplay") if args.replay_from else ("ip", "nginx", "openssl", "ss",
                                                          "tcpdump", "tcpreplay")
    if not _check_tools(tools):
        return 2
    seconds = args.minutes * 60 if args.minutes else args.seconds
    mult = args.replay
    if not args.replay_from:
        # the recording: the bulk bytes plus framing, ~4 KB per handshake, and some room
        need = seconds * (args.bulk * 1.08 + args.rate * 0.004) * 1e6 + 200e6
        free = shutil.disk_usage(tempfile.gettempdir()).free
        if need > 0.9 * free:
            print(f"live_load: the recording needs ~{need / 1e9:.1f} GB, {tempfile.gettempdir()} "
                  f"has {free / 1e9:.1f} GB free (fewer --seconds, or TMPDIR)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="tlssniff-live-load-"))
    rep = Netns(os.getpid(), prefix="tlsr")
    sniff = scraper = None

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        if args.replay_from:
            src = Path(args.replay_from)
            meta = json.loads((src / "recording.json").read_text())
            for path in list(src.glob("hs*.json")) + list(src.glob("bulk.json")):
                shutil.copy(path, work / path.name)
            pcap = src / "load.pcap"
            print(f"live_load: the recording in {src}", flush=True)
        else:
            meta = record_load(args, work, seconds)
            pcap = work / "load.pcap"
        lines: list[str] = list(meta["lines"])
        if not meta["ok"]:
            lines.append("           the recording is incomplete: the replay cannot be judged")
        span, frames, tcp = meta["span"], meta["frames"], meta["tcp"]
        # M times the single-process load test's figures (326 handshakes/s and 50 MB/s at the
        # default --rate 330 --bulk 55), scaled with the recording's --rate and --bulk.
        min_rate = args.min_rate if args.min_rate is not None else mult * 326 * meta["rate"] / 330
        min_mbps = args.min_mbps if args.min_mbps is not None else mult * 50 * meta["bulk"] / 55

        # 2. The recording replayed M times as fast onto a new veth pair (no addresses: its
        # frames are for no one there); tlssniff live captures the other end.
        rep.open(addresses=False)
        metrics_port = 23900 + os.getpid() % 100
        sniff = _start_tlssniff(rep, work, args, metrics_port)
        print(f"live_load: replaying it at {mult:g}x ({span / mult:.1f} s) over {rep.srv_if} with "
              f"tcpreplay; tlssniff pid {sniff.pid}", flush=True)
        if args.metrics:
            scraper = _start_scraper(rep.srv, metrics_port, args.scrape_interval, work)
        cpu0 = _tree_cpu(sniff.pid)
        softnet0 = _softnet_dropped()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # --pps (the recording's mean TCP frame rate times M) and not --multiplier: tcpreplay
        # 4.4's --multiplier adds every sleep's overshoot up (it ran a 2x replay at 1.1x here;
        # appneta/tcpreplay#724), its --pps aims at a fixed start. The order of the frames is
        # kept; their spacing becomes even.
        pps = mult * tcp / span
        replayed = subprocess.run(
            ["nice", "-n", str(args.replay_nice), "ip", "netns", "exec", rep.cli, "tcpreplay",
             "-i", rep.cli_if, "--pps", f"{pps:.1f}", "--timer", args.replay_timer,
             "--no-flow-stats", str(pcap)],
            capture_output=True, text=True, timeout=span / mult * 4 + 60)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        softnet = _softnet_dropped() - softnet0
        time.sleep(1.0)
        if scraper is not None:
            time.sleep(max(1.0, 2 * args.scrape_interval))
            _stop(scraper, signal.SIGKILL)
        cpu = _cpu_parts(sniff.pid, cpu0, _tree_cpu(sniff.pid))
        peak = _peak_rss_mb(sniff.pid)
        _stop(sniff, signal.SIGTERM, timeout=30)

        out = replayed.stdout + replayed.stderr
        m = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", out)
        failed = re.search(r"Failed packets:\s+(\d+)", out)
        if replayed.returncode != 0 or m is None:
            lines.append(f"replay:    tcpreplay failed (exit {replayed.returncode}): {out[-1000:]}")
            sent, sent_bytes, replay_s = 0, 0, span / mult
        else:
            sent, sent_bytes, replay_s = int(m[1]), int(m[2]), float(m[3])
        # the frames go out evenly spaced: the TCP ones took their share of the time
        speedup = span / (replay_s * tcp / frames)
        replay_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        n_failed = int(failed[1]) if failed else -1
        lines.append(f"replay:    tcpreplay --pps {pps:.0f} --timer {args.replay_timer}: "
                     f"{sent:,} frames in {replay_s:.1f} s = {sent / replay_s:,.0f} frames/s, "
                     f"{sent_bytes / 1e6 / replay_s:.1f} MB/s on the wire ({speedup:.2f}x "
                     f"the recording); {n_failed} failed; CPU {replay_cpu:.1f} s "
                     f"({100 * replay_cpu / replay_s:.0f}% of a core); the kernel's input "
                     f"queues dropped {softnet}")
        replay_ok = replayed.returncode == 0 and sent == frames and n_failed == 0
        return report(work, work / "verdicts.jsonl", sniff, meta["load_seconds"], cpu, [], peak,
                      args, replay={"speedup": speedup, "min_rate": min_rate,
                                    "min_mbps": min_mbps, "lines": lines,
                                    "ok": meta["ok"] and replay_ok})
    except KeyboardInterrupt:
        print("live_load: interrupted", file=sys.stderr)
        return 130
    finally:
        _stop(scraper, signal.SIGKILL)
        _stop(sniff, signal.SIGKILL)
        rep.close()
        _restore(old, work, args.keep)


# --------------------------------------------------------------------------------------------
# Reader comparison (the figures in tlssniff/capture/live.py's docstring)


def reader_bench_main(args: argparse.Namespace) -> int:
    """A burst of N UDP datagrams (1,514-byte frames) on lo, read after it was sent."""
    sys.path.insert(0, str(REPO))
    port = 39000 + os.getpid() % 1000
    n = args.frames
    bpf = f"udp dst port {port}"

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            payload = b"x" * 1472
            for _ in range(n):
                s.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.3)

    from tlssniff.capture.live import LiveCapture

    for backend, label in (("ring", "LiveCapture ring (AF_PACKET, TPACKET_V3)"),
                           ("pcap", "LiveCapture pcap (libpcap pcap_next_ex)")):
        with LiveCapture("lo", bpf, backend=backend) as cap:
            flood()
            t, got = time.perf_counter(), 0
            while True:
                batch = cap.read(4096)
                if batch:
                    got += len(batch)
                elif not cap.wait(0.3):
                    break
            dt = time.perf_counter() - t - 0.3
        print(f"{label:40s} {dt / max(got, 1) * 1e6:5.1f} us/frame, {got} of {n} kept")

    from scapy.config import conf

    conf.use_pcap = True
    from scapy.arch.libpcap import open_pcap

    p = open_pcap("lo", 262144, False, 100)
    p.setfilter(bpf)
    p.setnonblock(1)
    flood()
    t, got, idle = time.perf_counter(), 0, 0
    while idle < 30:
        _, pkt = p.next()
        if pkt is None:
            idle += 1
            time.sleep(0.01)
        else:
            got += 1
    dt = time.perf_counter() - t - 0.3
    p.close()
    print(f"{'scapy open_pcap().next() (libpcap)':40s} {dt / max(got, 1) * 1e6:5.1f} us/frame, "
          f"{got} of {n} kept")

    from scapy.arch.linux import L2ListenSocket

    s = L2ListenSocket(iface="lo", filter=bpf)
    s.ins.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    flood()
    s.ins.setblocking(False)
    t, got = time.perf_counter(), 0
    while True:
        try:
            _, data, _ = s.recv_raw(65535)
        except BlockingIOError:
            break
        if data is None:
            break
        got += 1
    dt = time.perf_counter() - t
    s.close()
    print(f"{'scapy L2ListenSocket.recv_raw':40s} {dt / max(got, 1) * 1e6:5.1f} us/frame, "
          f"{got} of {n} kept (socket buffer capped by net.core.rmem_max)")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_offloads":
        set_offloads_off(sys.argv[2])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_scrape":
        p = argparse.ArgumentParser()
        p.add_argument("--url", required=True)
        p.add_argument("--interval", type=float, required=True)
        p.add_argument("--out", required=True)
        scrape_main(p.parse_args(sys.argv[2:]))
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_clients":
        p = argparse.ArgumentParser()
        p.add_argument("--ephemeral-ports", action="store_true")
        for name, typ in (("--server", str), ("--client-ips", str), ("--rate", float),
                          ("--bulk", float), ("--seconds", float), ("--workers", int),
                          ("--out", str)):
            p.add_argument(name, type=typ, required=True)
        clients_main(p.parse_args(sys.argv[2:]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60, help="load duration (default 60)")
    p.add_argument("--minutes", type=float, default=0,
                   help="long run: minutes of load, tlssniff's RSS sampled every 10 s")
    p.add_argument("--rate", type=float, default=330, help="handshakes/s (default 330)")
    p.add_argument("--bulk", type=float, default=55, help="bulk MB/s (default 55)")
    p.add_argument("--workers", type=int, default=6, help="handshake client processes")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--client-nice", type=int, default=None,
                   help="nice value of the client processes (default 10; 0 while recording "
                        "for --replay)")
    p.add_argument("--ephemeral-ports", action="store_true",
                   help="let the kernel choose client ports (4-tuples get reused quickly)")
    p.add_argument("--reader-bench", action="store_true",
                   help="compare the capture readers instead (needs root)")
    p.add_argument("--frames", type=int, default=20000, help="frames for --reader-bench")
    p.add_argument("--metrics", action="store_true",
                   help="run tlssniff with --metrics and scrape it during the load")
    p.add_argument("--scrape-interval", type=float, default=1.0,
                   help="seconds between scrapes with --metrics (default 1)")
    p.add_argument("--replay", type=float, default=0, metavar="M",
                   help="record the load with tcpdump, then replay it M times as fast "
                        "(tcpreplay) while tlssniff captures")
    p.add_argument("--min-rate", type=float, default=None,
                   help="with --replay: handshakes/s the replay must reach "
                        "(default M x 326 x rate/330)")
    p.add_argument("--min-mbps", type=float, default=None,
                   help="with --replay: bulk MB/s the replay must reach (default M x 50 x bulk/55)")
    p.add_argument("--replay-timer", default="nano", choices=("nano", "gtod", "select"),
                   help="tcpreplay's --timer (default nano: nanosleep; gtod polls the clock)")
    p.add_argument("--replay-nice", type=int, default=0,
                   help="with --replay: tcpreplay's nice value (default 0; below 0 it stands "
                        "for a wire that does not wait for a busy machine)")
    p.add_argument("--replay-from", metavar="DIR",
                   help="with --replay: replay the recording a --keep run left in DIR "
                        "instead of recording one")
    p.add_argument("--no-offline-check", action="store_true",
                   help="with --replay: do not analyze the recording offline first")
    p.add_argument("tlssniff_args", nargs="*", help="extra arguments for tlssniff live (after --)")
    args = p.parse_args()
    if args.reader_bench:
        return reader_bench_main(args)
    if args.replay:
        return replay_main(args)
    return load_main(args)


if __name__ == "__main__":
    sys.exit(main())
