"""Generate a large capture of real, interleaved TLS connections with exact ground truth.

    python -m tlssniff.testing.generate -o OUT.pcap --truth OUT.truth.jsonl --connections N \\
        [--seed S] [--bulk-bytes B] [--bulk-share F] [--servers K] [--ipv6-share F] \\
        [--rate R] [--pool P]

Every connection is a real TLS connection between Python ``ssl`` objects
(:mod:`tlssniff.testing.handshakes`) or a recorded OpenSSL 0-RTT template, re-addressed to its
own client ``ip:port``. Connections arrive as a Poisson process (``--rate`` per second) and stay
open for a while (an idle pause before the client closes), so thousands overlap in time; their
frames are merged by timestamp with a heap and streamed to disk, so memory is bounded by the
number of connections open at once, not by ``N``.

A server address is a small pool of members (separate ``SSLContext``s, hence separate ticket
keys and session caches): ``main`` issues and accepts sessions, ``peer`` is a member without
shared keys (it refuses them: the classic load-balancer resumption failure), ``hrr`` only accepts
secp384r1 (HelloRetryRequest on every TLS 1.3 hello). A resumption presents a session that an
earlier connection of the same capture got from the same server address and SNI, once that
connection has ended; when no such session exists yet, the connection is the full handshake that
makes one (its truth says so).

``--pool P`` trades realism for speed: after P real connections of one kind, later ones reuse a
recorded one at a new address (fresh TCP ISNs and timings, same TLS bytes).
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import json
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from tlssniff.testing import handshakes as hs
from tlssniff.testing.pcapwriter import Endpoint, PcapWriter, tcp_frames

TRUTH_FIELDS = ("client", "server", "sni", "version", "offered", "handshake", "resumed", "hrr",
                "early_data")

# Relative weights of the scenarios in a generated capture. The 0-RTT entries are template
# groups (a full handshake, then a resumption), so they count two connections each.
DEFAULT_MIX: dict[str, float] = {
    "tls12_full": 8,
    "tls12_sid_full": 4,
    "tls12_sid_resume": 7,
    "tls12_ticket_resume": 9,
    "tls12_sid_refused": 3,
    "tls12_ticket_refused": 3,
    "tls13_full": 18,
    "tls13_psk_resume": 16,
    "tls13_psk_refused": 4,
    "tls13_hrr_full": 4,
    "tls13_hrr_psk": 3,
    "zero_rtt": 2,
    "zero_rtt_refused": 1,
    "zero_rtt_hrr": 1,
}

SERVER_PORTS = (443, 443, 8443, 443, 4433, 443, 10443, 443)


@dataclass
class Server:
    index: int
    v4: str
    v6: str
    port: int
    names: tuple[str, ...]
    members: dict = field(default_factory=dict)  # member name -> SSLContext

    def member(self, name: str):
        ctx = self.members.get(name)
        if ctx is None:
            ctx = self.members[name] = hs.server_context(hrr=name == "hrr")
        return ctx


@dataclass
class Summary:
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    real: int = 0  # connections run through ssl for this capture
    reused: int = 0  # connections re-addressed from the pool
    verdicts: Counter = field(default_factory=Counter)
    scenarios: Counter = field(default_factory=Counter)

    def render(self) -> str:
        lines = [
            f"{self.connections} connections, {self.frames} frames, "
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s "
            f"({self.real} real, {self.reused} re-addressed from the pool)",
            "verdicts (version, offered, handshake, hrr, early_data):",
        ]
        for key, n in sorted(self.verdicts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {n:8}  {' '.join(map(str, key))}")
        lines.append("scenarios:")
        for key, n in sorted(self.scenarios.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {n:8}  {key}")
        return "\n".join(lines)


def verdict_key(truth: dict) -> tuple:
    return (truth["version"], truth["offered"], truth["handshake"], truth["hrr"],
            truth["early_data"])


class Addresses:
    """Distinct client ``ip:port`` per connection: a few thousand hosts, sequential ports."""

    def __init__(self, rng: random.Random, hosts: int = 4000) -> None:
        self.rng = rng
        self.hosts = hosts
        self.next_port: dict[tuple[int, int], int] = {}

    def client(self, v6: bool, host: int | None = None) -> tuple[Endpoint, int]:
        if host is None:
            host = self.rng.randrange(self.hosts)
        key = (v6, host)
        port = self.next_port.get(key)
        if port is None:
            port = self.rng.randrange(32768, 50000)
        if port > 60999:
            raise ValueError("client ports exhausted: raise Addresses.hosts")
        self.next_port[key] = port + 1
        if v6:
            ip = str(ipaddress.IPv6Address(f"fd00:64::{host >> 8:x}:{host & 0xFF:x}"))
        else:
            ip = f"10.{64 + (host >> 16)}.{(host >> 8) & 0xFF}.{host & 0xFF}"
        return Endpoint(ip, port), host


@dataclass(order=True)
class Pending:
    """A connection waiting for its start time."""

    start: float
    seq: int
    kind: str = field(compare=False)
    server: Server | None = field(compare=False, default=None)
    v6: bool = field(compare=False, default=False)
    host: int | None = field(compare=False, default=None)
    template: hs.Template | None = field(compare=False, default=None)
    followers: list = field(compare=False, default_factory=list)
    arrival: bool = field(compare=False, default=True)  # False: a template group's follower


class Generator:
    def __init__(self, *, seed: int = 1, servers: int = 8, ipv6_share: float = 0.2,
                 bulk_bytes: int = 0, bulk_share: float = 0.1, rate: float = 2000.0,
                 idle_mean: float = 1.0, pool: int = 0, mix: dict[str, float] | None = None,
                 start: float = 1_700_000_000.0) -> None:
        self.rng = random.Random(seed)
        self.ipv6_share = ipv6_share
        self.bulk_bytes = bulk_bytes
        self.bulk_share = bulk_share if bulk_bytes else 0.0
        self.rate = rate
        self.idle_mean = idle_mean
        self.pool_size = pool
        self.start = start
        self.servers = []
        for i in range(servers):
            names = tuple(self.rng.sample(hs.SNI_NAMES, k=1 + i % 3))
            v6 = str(ipaddress.IPv6Address(f"fd00:200::{i + 1:x}"))
            port = SERVER_PORTS[i % len(SERVER_PORTS)]
            self.servers.append(Server(i, f"10.200.{i >> 8}.{(i & 0xFF) + 1}", v6, port, names))
        templates = hs.load_openssl_templates()
        self.groups: dict[str, list[hs.Template]] = defaultdict(list)
        for t in templates:
            self.groups[t.group].append(t)
        mix = dict(mix or DEFAULT_MIX)
        for name in list(mix):
            if name not in hs.SCENARIOS and name not in self.groups:
                del mix[name]  # 0-RTT fixtures missing: leave those out
        self.kinds = list(mix)
        self.weights = [mix[k] for k in self.kinds]
        self.addresses = Addresses(self.rng)
        # (server, member, source kind, alpn, sni) -> [(available_at, session)]
        self.sessions: dict[tuple, list] = defaultdict(list)
        self.pool: dict[tuple, list] = defaultdict(list)
        self.summary = Summary()

    # -- one connection ---------------------------------------------------------------------

    def _session_for(self, key: tuple, now: float):
        """A session of ``key`` the client holds by ``now``: ``(available, session, alpn, sni)``."""
        cands = [entry for entry in self.sessions.get(key, ()) if entry[0] <= now]
        return self.rng.choice(cands[-20:]) if cands else None

    def _real(self, p: Pending, alpn: bool, sni: str | None, response: int):
        """Run connection ``p`` through ssl (or take it from the pool).

        Returns ``(chunks, truth, kind, new_session)``; ``new_session`` is ``(key, session)``
        when the connection left a session that later connections may resume.
        """
        kind = p.kind
        srv = p.server
        profile, presents, _ = hs.SCENARIOS[kind]
        source = hs.SESSION_SOURCE.get(kind, kind)
        issuer = "hrr" if kind in hs.HRR_SCENARIOS else "main"
        skey = (srv.index, p.v6, issuer, source)  # same server address, same member
        session = None
        if presents:
            held = self._session_for(skey, p.start)
            if held is None:
                kind = source  # nothing to resume yet: this connection makes the session
            else:
                # A client resumes with the SNI and client settings of its first connection.
                _, session, alpn, sni = held
        member = "peer" if presents == "foreign" and session is not None else issuer
        # Pool entries keep the SNI and response size they were recorded with.
        pool_key = (kind, alpn, response == self.bulk_bytes)
        recorded = self.pool.get(pool_key)
        if self.pool_size and recorded and len(recorded) >= self.pool_size:
            self.summary.reused += 1
            chunks, truth = self.rng.choice(recorded)
            return chunks, truth, kind, None
        keep = member != "peer"
        conn = hs.run_scenario(kind, srv.member(member), session=session, sni=sni, alpn=alpn,
                               response_bytes=response, want_session=keep)
        self.summary.real += 1
        chunks, truth = conn.transcript.chunks, conn.transcript.truth
        if self.pool_size:
            recorded = self.pool[pool_key]
            if len(recorded) < self.pool_size:
                recorded.append((chunks, truth))
        new_session = None
        if keep and conn.session is not None:
            new_session = (skey, conn.session, alpn, sni)
        return chunks, truth, kind, new_session

    def connection(self, p: Pending, cid: int):
        """``(frames, truth)`` of pending connection ``p``."""
        rng = self.rng
        rtt = rng.uniform(0.002, 0.080)
        srv = p.server
        client, host = self.addresses.client(p.v6, p.host)
        p.host = host
        server = Endpoint(srv.v6 if p.v6 else srv.v4, srv.port)
        new_session = None
        if p.template is not None:
            chunks, truth = p.template.chunks, dict(p.template.truth)
        else:
            alpn = rng.random() < 0.5
            sni = rng.choice(srv.names) if rng.random() < 0.9 else None
            bulk = rng.random() < self.bulk_share
            response = self.bulk_bytes if bulk else rng.choice((0, 120, 800, 1500, 3000, 9000))
            chunks, truth, kind, new_session = self._real(p, alpn, sni, response)
            truth = dict(truth)
            truth["scenario"] = kind
        truth["client"] = str(client)
        truth["server"] = str(server)
        # Idle before the client's close_notify (its last flight): long-lived connections.
        last_client = max(i for i, (d, _) in enumerate(chunks) if d == "c")
        pauses = {last_client: rng.expovariate(1.0 / self.idle_mean)} if self.idle_mean else {}
        frames = tcp_frames(chunks, client, server, start=p.start, rtt=rtt, pauses=pauses,
                            rng=rng)
        end = frames[-1][0]
        if new_session:
            # The client holds the session once the handshake (and a TLS 1.3 ticket) is in:
            # a browser opens its next connections while the first is still open.
            skey, *rest = new_session
            bucket = self.sessions[skey]
            bucket.append((p.start + 5 * rtt, *rest))
            if len(bucket) > 200:
                del bucket[:100]
        return frames, truth, end

    # -- the whole capture -----------------------------------------------------------------

    def _arrival(self, t: float, seq: int, remaining: int) -> Pending:
        rng = self.rng
        kind = rng.choices(self.kinds, self.weights)[0]
        while kind in self.groups and len(self.groups[kind]) > remaining:
            kind = rng.choices(self.kinds, self.weights)[0]
        server = rng.choice(self.servers)
        v6 = rng.random() < self.ipv6_share
        if kind in self.groups:
            first, *rest = self.groups[kind]
            p = Pending(t, seq, first.name, server, v6, template=first)
            p.followers = rest
            return p
        return Pending(t, seq, kind, server, v6)

    def run(self, out: Path, truth_out: Path, connections: int) -> Summary:
        t0 = time.perf_counter()
        rng = self.rng
        summary = self.summary
        pending: list[Pending] = []
        frames_heap: list = []
        seq = 0
        arrivals = 0
        t = self.start
        with open(out, "wb", buffering=1 << 20) as f, open(truth_out, "w") as tf:
            w = PcapWriter(f)

            def schedule_arrival() -> None:
                nonlocal arrivals, seq, t
                if arrivals >= connections:
                    return
                t += rng.expovariate(self.rate)
                p = self._arrival(t, seq, connections - arrivals)
                seq += 1
                arrivals += 1 + len(p.followers)
                heapq.heappush(pending, p)

            schedule_arrival()
            done = 0
            while pending or frames_heap:
                # Start every connection whose first frame is due before the next frame.
                while pending and (not frames_heap or pending[0].start <= frames_heap[0][0]):
                    p = heapq.heappop(pending)
                    frames, truth, end = self.connection(p, done)
                    done += 1
                    if p.followers:
                        nxt, *rest = p.followers
                        q = Pending(end + rng.uniform(0.05, 0.5), seq, nxt.name, p.server, p.v6,
                                    host=p.host, template=nxt, arrival=False)
                        q.followers = rest
                        seq += 1
                        heapq.heappush(pending, q)
                    if p.arrival:
                        schedule_arrival()
                    tf.write(json.dumps({k: truth[k] for k in (*TRUTH_FIELDS, "scenario")})
                             + "\n")
                    summary.verdicts[verdict_key(truth)] += 1
                    summary.scenarios[truth["scenario"]] += 1
                    heapq.heappush(frames_heap, (frames[0][0], p.seq, 0, frames))
                ts, s, i, frames = heapq.heappop(frames_heap)
                w.write(ts, frames[i][1])
                if i + 1 < len(frames):
                    heapq.heappush(frames_heap, (frames[i + 1][0], s, i + 1, frames))
            summary.frames = w.frames
            summary.bytes = w.bytes + 24
        summary.connections = done
        summary.seconds = time.perf_counter() - t0
        return summary


def generate(out: Path | str, truth: Path | str, connections: int, **kw) -> Summary:
    """Write a capture of ``connections`` connections and its truth; see :class:`Generator`."""
    return Generator(**kw).run(Path(out), Path(truth), connections)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tlssniff.testing.generate",
                                description=__doc__.splitlines()[0])
    p.add_argument("-o", "--out", type=Path, required=True, help="capture to write (pcap)")
    p.add_argument("--truth", type=Path, help="truth JSONL (default: OUT with .truth.jsonl)")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bulk-bytes", type=int, default=0,
                   help="application data bytes of a bulk connection (0: no bulk)")
    p.add_argument("--bulk-share", type=float, default=0.1,
                   help="fraction of connections that carry --bulk-bytes")
    p.add_argument("--servers", type=int, default=8)
    p.add_argument("--ipv6-share", type=float, default=0.2)
    p.add_argument("--rate", type=float, default=2000.0, help="new connections per second")
    p.add_argument("--idle", type=float, default=1.0,
                   help="mean idle seconds before a client closes (0: none)")
    p.add_argument("--pool", type=int, default=0,
                   help="real connections per kind before re-addressing recorded ones (0: all "
                        "real)")
    return p


def truth_path_for(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".pcap") + ".truth.jsonl")


def main(argv: list[str] | None = None) -> Summary:
    args = build_parser().parse_args(argv)
    truth = args.truth or truth_path_for(args.out)
    summary = generate(args.out, truth, args.connections, seed=args.seed,
                       bulk_bytes=args.bulk_bytes, bulk_share=args.bulk_share,
                       servers=args.servers, ipv6_share=args.ipv6_share, rate=args.rate,
                       idle_mean=args.idle, pool=args.pool)
    print(summary.render())
    print(f"capture: {args.out}\ntruth:   {truth}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
