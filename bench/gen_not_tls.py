"""A capture of TCP connections that are not TLS, to time how fast they are decided.

    python bench/gen_not_tls.py [-o bench/out/not-tls.pcap] [--connections 20000]

Each connection is one of: an HTTP/1.1 GET and its response (client first); a binary request
and answer of a made-up protocol (client first, no ClientHello: the preamble search watches it
until the server answers); an RFB (VNC) greeting from the server and the client's (server
first: a banner candidate until the client's first bytes); SSH banners. Each then carries
``--bulk-bytes`` of data each way. Not TLS, all of them: ``tlssniff analyze`` reports nothing and
counts them in ``not_tls_connections``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.testing.pcapwriter import Endpoint, PcapWriter, tcp_frames  # noqa: E402

KINDS = (
    [("c", b"GET /index.html HTTP/1.1\r\nHost: example.test\r\nAccept: */*\r\n\r\n"),
     ("s", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)],
    [("c", b"\x00\x01\x00\x10" + bytes(range(16))), ("s", b"\x00\x02\x00\x04ok!!")],
    [("s", b"RFB 003.008\n"), ("c", b"RFB 003.008\n"), ("s", b"\x01\x02")],
    [("s", b"SSH-2.0-OpenSSH_9.2\r\n"), ("c", b"SSH-2.0-OpenSSH_9.2\r\n")],
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).resolve().parent / "out" / "not-tls.pcap")
    ap.add_argument("--connections", type=int, default=20_000)
    ap.add_argument("--bulk-bytes", type=int, default=8_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as fh:
        w = PcapWriter(fh)
        t = 1_700_000_000.0
        for i in range(args.connections):
            chunks = list(KINDS[i % len(KINDS)])
            chunks += [("c", b"\x42" * args.bulk_bytes), ("s", b"\x43" * args.bulk_bytes)]
            client = Endpoint(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 20000 + i % 40000)
            server = Endpoint("192.0.2.80", (80, 5000, 5900, 22)[i % len(KINDS)])
            w.write_all(tcp_frames(chunks, client, server, start=t, rng=rng))
            t += 0.001
        print(f"{args.out}: {args.connections} connections, {w.frames} frames")


if __name__ == "__main__":
    main()
