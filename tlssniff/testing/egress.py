"""Egress-shaped captures, fast: what a forward proxy or NAT gateway sees.

A few thousand clients open connections to a huge number of servers: a small set of popular
servers (Zipf-distributed) takes a share of the connections and every other connection goes to a
server seen once, so ``--connections 400000 --servers 330000`` gives about 330,000 distinct
``ip:port`` servers.

Speed comes from templates: a few dozen real connections (Python ``ssl`` through
:class:`~tlssniff.testing.generate.Generator`, so every verdict is real and known) are recorded
once; each connection of the capture is a template re-addressed to its own client and server
(addresses and ports replaced in place, IPv4 and TCP checksums updated incrementally, RFC 1624:
the same delta fits every frame of a connection, both directions) and shifted in time. Frames of
overlapping connections are merged by timestamp with a heap and streamed to disk: memory follows
the connections open at once. Measured: 100,000 connections (510 MB) in 13 s; 400,000
(2.0 GB) in 409 s while the machine's two cores ran many other jobs.

The truth is counted, not listed (4 million lines would not help): ``OUT.truth.json`` holds
the number of connections per verdict ``(version, offered, handshake, hrr, early_data)``.
Servers seen once can only get a first connection: their templates offer nothing.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tlssniff.testing import generate as gen
from tlssniff.testing.pcapwriter import PcapWriter

POPULAR = 2000  # servers drawing the popular share, Zipf weights 1/rank
VARIANTS = 6  # recorded connections per scenario (different RTTs and idle times)
_MIX = {k: w for k, w in gen.DEFAULT_MIX.items() if not k.startswith("zero_rtt")}


@dataclass(slots=True)
class Template:
    """One recorded connection: frames relative to its start, split where addresses go."""

    v6: bool
    truth: dict
    frames: list  # (dt, from_client, head, ip_csum, tcp_csum, mid, tail)
    offers: bool  # the client presents a session: not a server's first connection
    addr_sum: int  # ones' complement sums of the recorded addresses and ports
    port_sum: int


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(b: bytes) -> int:
    return sum(int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b), 2))


def _split(frame: bytes, v6: bool) -> tuple:
    """``(head, ip_csum, tcp_csum, mid, tail)`` around the rewritten fields."""
    if v6:  # Ethernet 14, IPv6 40 (src 22..38, dst 38..54), TCP at 54 (checksum 70..72)
        return (frame[:22], 0, int.from_bytes(frame[70:72], "big"), frame[58:70], frame[72:])
    # IPv4 20 bytes (checksum 24..26, src 26..30, dst 30..34), TCP at 34 (checksum 50..52)
    return (frame[:24], int.from_bytes(frame[24:26], "big"),
            int.from_bytes(frame[50:52], "big"), frame[38:50], frame[52:])


def record_templates(seed: int = 1, variants: int = VARIANTS, ipv6: bool = True) -> list[Template]:
    """Run every scenario of the mix ``variants`` times through real ssl objects."""
    g = gen.Generator(seed=seed, servers=1, pool=0, idle_mean=0.0)
    rng = random.Random(seed)
    srv = g.servers[0]
    out = []
    t = g.start
    families = (False, True) if ipv6 else (False,)
    for _ in range(variants):
        for v6 in families:
            for kind in _MIX:
                p = gen.Pending(t, 0, kind, srv, v6)
                frames, truth, _ = g.connection(p, 0)
                # Idle before the client's close (long-lived connections overlap).
                rtt_idle = rng.expovariate(1 / 0.5)
                t0 = frames[0][0]
                client = truth["client"]
                cut = _close_index(frames)
                recs = []
                for i, (ts, frame) in enumerate(frames):
                    dt = ts - t0 + (rtt_idle if i >= cut else 0.0)
                    from_client = _is_from(frame, client, v6)
                    head, ipc, tcpc, mid, tail = _split(frame, v6)
                    recs.append((dt, from_client, head, ipc, tcpc, mid, tail))
                truth = {k: truth[k] for k in gen.TRUTH_FIELDS if k not in ("client", "server")}
                first = frames[0][1]  # the client's SYN
                addrs, ports = (first[22:54], first[54:58]) if v6 else (first[26:34], first[34:38])
                out.append(Template(v6, truth, recs, truth["offered"] != "none",
                                    _sum16(addrs), _sum16(ports)))
                t += 10.0
    return out


def _close_index(frames: list) -> int:
    """The first frame of the last quarter: the idle pause goes before the close."""
    return max(1, (3 * len(frames)) // 4)


def _is_from(frame: bytes, client: str, v6: bool) -> bool:
    import ipaddress

    host = client.rpartition(":")[0].strip("[]")
    packed = ipaddress.ip_address(host).packed
    return frame[22:38] == packed if v6 else frame[26:30] == packed


class Addressing:
    """Client and server addresses: ``hosts`` clients, ``servers`` distinct servers."""

    def __init__(self, rng: random.Random, connections: int, servers: int, hosts: int) -> None:
        self.rng = rng
        self.hosts = hosts
        self.popular = min(POPULAR, max(1, servers // 10))
        tail = max(0, servers - self.popular)
        # Each tail server takes exactly one connection; the popular ones share the rest.
        self.tail_share = min(1.0, tail / connections) if connections else 0.0
        self.next_tail = self.popular
        self.ports = [rng.randrange(1024, 60000) for _ in range(hosts)]
        weights = [1.0 / (r + 1) for r in range(self.popular)]
        self.cum = list(itertools.accumulate(weights))

    def server(self) -> tuple[int, bool]:
        """``(index, popular)``."""
        rng = self.rng
        if rng.random() < self.tail_share:
            i = self.next_tail
            self.next_tail += 1
            return i, False
        return bisect.bisect(self.cum, rng.random() * self.cum[-1]), True

    def client(self) -> tuple[int, int]:
        h = self.rng.randrange(self.hosts)
        port = self.ports[h]
        self.ports[h] = port + 1 if port < 65535 else 1024
        return h, port

    @staticmethod
    def client_ip(h: int, v6: bool) -> bytes:
        if v6:
            return b"\xfd\x00\x00\x64" + bytes(10) + h.to_bytes(2, "big")
        return bytes((10, 64 + (h >> 16), (h >> 8) & 0xFF, h & 0xFF))

    @staticmethod
    def server_ip(i: int, v6: bool) -> bytes:
        if v6:
            return b"\xfd\x00\x02\x00" + bytes(8) + (i + 1).to_bytes(4, "big")
        i += 1
        return bytes((10, 128 + (i >> 16), (i >> 8) & 0xFF, i & 0xFF))


@dataclass
class Summary:
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    servers: int = 0
    verdicts: Counter = field(default_factory=Counter)

    def render(self) -> str:
        lines = [f"{self.connections} connections to {self.servers} distinct servers, "
                 f"{self.frames} frames, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s",
                 "verdicts (version, offered, handshake, hrr, early_data):"]
        for key, n in sorted(self.verdicts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {n:8}  {' '.join(map(str, key))}")
        return "\n".join(lines)


def generate(out: Path, connections: int, servers: int, *, seed: int = 1, rate: float = 5000.0,
             hosts: int = 4000, ipv6_share: float = 0.1, port: int = 443) -> Summary:
    """Write an egress-shaped capture to ``out`` and its verdict counts next to it."""
    t_start = time.perf_counter()
    templates = record_templates(seed)
    rng = random.Random(seed)
    by_family = {v6: [t for t in templates if t.v6 == v6] for v6 in (False, True)}
    first_only = {v6: [t for t in ts if not t.offers] for v6, ts in by_family.items()}
    addr = Addressing(rng, connections, servers, hosts)
    summary = Summary()
    seen_servers: set[tuple[int, bool]] = set()
    heap: list = []
    t = 1_700_000_000.0
    started = 0
    seq = 0
    with open(out, "wb", buffering=1 << 20) as f:
        w = PcapWriter(f)
        write = w.write
        next_start = t + rng.expovariate(rate)
        while started < connections or heap:
            if started < connections and (not heap or next_start <= heap[0][0]):
                v6 = rng.random() < ipv6_share
                index, popular = addr.server()
                tpl = rng.choice(by_family[v6] if popular else first_only[v6])
                h, cport = addr.client()
                cip, sip = addr.client_ip(h, v6), addr.server_ip(index, v6)
                seen_servers.add((index, v6))
                conn = _Conn(tpl, cip, sip, cport, port, next_start)
                heapq.heappush(heap, (next_start, seq, 0, conn))
                seq += 1
                started += 1
                summary.verdicts[gen.verdict_key(tpl.truth)] += 1
                next_start += rng.expovariate(rate)
                continue
            ts, s, i, conn = heapq.heappop(heap)
            write(ts, conn.frame(i))
            i += 1
            if i < len(conn.tpl.frames):
                heapq.heappush(heap, (conn.start + conn.tpl.frames[i][0], s, i, conn))
        summary.frames = w.frames
        summary.bytes = w.bytes + 24
    summary.connections = started
    summary.servers = len(seen_servers)
    summary.seconds = time.perf_counter() - t_start
    truth = out.with_name(out.name.removesuffix(".pcap") + ".truth.json")
    truth.write_text(json.dumps({
        "connections": summary.connections, "servers": summary.servers,
        "verdicts": [{"version": k[0], "offered": k[1], "handshake": k[2], "hrr": k[3],
                      "early_data": k[4], "connections": n}
                     for k, n in sorted(summary.verdicts.items(), key=str)],
    }, indent=1) + "\n")
    return summary


class _Conn:
    """One connection of the capture: a template and its new addresses."""

    __slots__ = ("tpl", "start", "c2s", "s2c", "ip_delta", "tcp_delta", "v6")

    def __init__(self, tpl: Template, cip: bytes, sip: bytes, cport: int, sport: int,
                 start: float) -> None:
        self.tpl = tpl
        self.start = start
        self.v6 = tpl.v6
        cp, sp = cport.to_bytes(2, "big"), sport.to_bytes(2, "big")
        self.c2s = cip + sip + cp + sp
        self.s2c = sip + cip + sp + cp
        self.ip_delta, self.tcp_delta = _deltas(tpl, cip + sip, cp + sp)

    def frame(self, i: int) -> bytes:
        _, from_client, head, ipc, tcpc, mid, tail = self.tpl.frames[i]
        tcp = (~_fold((~tcpc & 0xFFFF) + self.tcp_delta)) & 0xFFFF
        fields = self.c2s if from_client else self.s2c
        if self.v6:
            return head + fields + mid + tcp.to_bytes(2, "big") + tail
        ip = (~_fold((~ipc & 0xFFFF) + self.ip_delta)) & 0xFFFF
        return head + ip.to_bytes(2, "big") + fields + mid + tcp.to_bytes(2, "big") + tail


def _deltas(tpl: Template, addrs: bytes, ports: bytes) -> tuple[int, int]:
    """Ones' complement deltas (new - old) of the IPv4 header and TCP checksums: addresses are
    in both (TCP: the pseudo-header), ports in TCP only; their order does not matter to a sum."""
    new_addr, new_ports = _sum16(addrs), _sum16(ports)
    ip = _fold(new_addr + (~_fold(tpl.addr_sum) & 0xFFFF))
    tcp = _fold(new_addr + new_ports + (~_fold(tpl.addr_sum + tpl.port_sum) & 0xFFFF))
    return ip, tcp
