#!/usr/bin/env python3
"""Peak memory of the diagnostics alone on an egress-shaped stream of verdicts.

    python bench/diagnostics_memory.py --connections 400000 --servers 330000

Verdicts are made in memory (no capture, no output): ``connections`` TLS 1.2/1.3 connections
to ``servers`` distinct servers (a forward proxy or NAT gateway's view: most servers seen once
or twice), a third of them resuming, some offering sessions whose issuance was not captured.
Prints the peak RSS growth attributable to :class:`~tlssniff.analysis.diagnostics.Diagnostics`
(resource.getrusage before and after), its time per connection and its documented limits.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.analysis.diagnostics import Diagnostics  # noqa: E402
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered  # noqa: E402


def verdicts(n: int, servers: int, seed: int = 1):
    rnd = random.Random(seed)
    t = 1_700_000_000.0
    for i in range(n):
        t += 0.002
        s = i if i < servers else rnd.randrange(servers)
        v = ConnectionVerdict(ts=t, client=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:"
                              f"{1024 + i % 60000}",
                              server=f"{(s >> 16) & 255 | 64}.{(s >> 8) & 255}.{s & 255}.1:443",
                              sni=f"host{s}.example")
        tls13 = i % 3 != 0
        v.version = "TLSv1.3" if tls13 else "TLSv1.2"
        v.client_hello_ts = v.server_hello_ts = t
        v.handshake_end_ts = t + 0.05
        v.frames = [i * 10 + 1, i * 10 + 3]
        v.ja4 = v.ja4_base = f"t13d1516h2_{i % 7:012x}_{i % 11:012x}"
        if i >= servers and i % 2:
            if tls13:
                v.offered = Offered.PSK
                v.psk_identity_hash = f"{i:016x}"
                v.psk_key_name = f"{s:032x}"
                v.handshake = Handshake.PSK if i % 4 == 1 else Handshake.FULL
            else:
                v.offered = Offered.TICKET
                v.ticket_hash = f"{s:016x}"
                v.ticket_key_name = f"{s:032x}"
                v.handshake = Handshake.TICKET
        else:
            v.handshake = Handshake.FULL
            if not tls13:
                v.issued_session_id = f"{i:064x}"
                v.issued_ticket = True
                v.issued_ticket_hash = f"{i:016x}"
                v.issued_ticket_key_name = f"{s:032x}"
                v.ticket_lifetime = 300
        yield v


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=400_000)
    ap.add_argument("--servers", type=int, default=330_000)
    args = ap.parse_args()
    gc.collect()
    before = rss_mb()
    d = Diagnostics()
    t0 = time.perf_counter()
    for v in verdicts(args.connections, args.servers):
        d.add(v)
    t1 = time.perf_counter()
    findings = d.findings()
    t2 = time.perf_counter()
    limits = d.to_dict()["limits"]
    print(f"connections={args.connections} servers={args.servers} "
          f"peak_rss_growth_mb={rss_mb() - before:.0f} add_us={1e6 * (t1 - t0) / args.connections:.1f} "
          f"findings_s={t2 - t1:.1f} findings={len(findings)} limits={limits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
