"""The adversarial capture of issue 7, and tlssniff's peak memory on it.

    python bench/adversarial.py [--connections 1000000] [--big 2000] [-o bench/out/adversarial.pcap]
                                [--keep] [-- EXTRA TLSSNIFF OPTIONS]

Writes a capture in which

* ``--connections`` TCP connections (1,000,000 by default) each send a SYN, get a SYN-ACK and
  then send the first 1,200 bytes of a real ClientHello (from captures/openssl-tls13.pcap,
  padded to a 1,700-byte record) and never another byte: every one of them sits in the flow
  table with a partial record buffered. They arrive at 100,000 per second, so none of them goes
  idle within the capture: only the flow limit can bound memory.
* ``--big`` connections (2,000 by default) declare a 16 MB ClientHello (handshake length
  0xFFFFFF) and then send 256 KB of records after it; half of them send their first data
  segment last, so the rest waits in the out-of-order buffer until it overflows.

then runs ``tlssniff analyze`` on it as a child process (table output, the default limits unless
options are given after ``--``), prints the report with its counters, the child's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) and wall time, and fails (exit 1) when the peak RSS is
300 MB or more. The capture is deleted afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RSS_LIMIT_MB = 300

_REC = struct.Struct("<IIII")
_ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"
_ETH_BACK = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
SYN, ACK, PSH = 0x02, 0x10, 0x08
SERVER = bytes([192, 0, 2, 1])
SERVER_PORT = 443


def _ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    ip = _IP4.pack(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + _ip_checksum(ip).to_bytes(2, "big") + ip[12:]
    return (_ETH if src != SERVER else _ETH_BACK) + ip + tcp + payload


def real_client_hello(record_len: int = 1700) -> bytes:
    """A real TLS 1.3 ClientHello record, padded (RFC 7685 padding extension) to record_len."""
    from tlssniff.capture.decode import decode_frame  # noqa: PLC0415
    from tlssniff.capture.files import open_capture  # noqa: PLC0415

    with open_capture(REPO / "captures" / "openssl-tls13.pcap") as cap:
        for _ts, lt, f in cap.frames():
            d = decode_frame(lt, f)
            if d and d[0] == 6 and d[8][:1] == b"\x16" and d[8][5] == 1:
                rec = d[8]
                break
        else:
            raise SystemExit("no ClientHello in captures/openssl-tls13.pcap")
    body = bytearray(rec[9 : 5 + ((rec[3] << 8) | rec[4])])
    # Skip to the extensions: version, random, session id, cipher suites, compression.
    p = 34
    p += 1 + body[p]
    p += 2 + ((body[p] << 8) | body[p + 1])
    p += 1 + body[p]
    ext_len = (body[p] << 8) | body[p + 1]
    pad = record_len - 5 - 4 - len(body) - 4
    body += b"\x00\x15" + pad.to_bytes(2, "big") + bytes(pad)
    body[p : p + 2] = (ext_len + 4 + pad).to_bytes(2, "big")
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def write_capture(path: Path, connections: int, big: int) -> tuple[int, int]:
    """Returns (frames, bytes)."""
    hello = real_client_hello()
    part = hello[:1200]
    t0 = 1_700_000_000.0
    n = 0
    with open(path, "wb", buffering=1 << 22) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))

        def put(ts: float, fr: bytes) -> None:
            nonlocal n
            sec = int(ts)
            usec = int((ts - sec) * 1_000_000)
            f.write(_REC.pack(sec, usec, len(fr), len(fr)) + fr)
            n += 1

        for i in range(connections):
            ts = t0 + i * 1e-5
            client = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
            cport = 1024 + (i % 60000)
            cisn = (i * 2654435761) & 0xFFFFFFFF
            sisn = (i * 40503 + 7) & 0xFFFFFFFF
            put(ts, frame(client, SERVER, cport, SERVER_PORT, cisn, 0, SYN))
            put(ts + 2e-6, frame(SERVER, client, SERVER_PORT, cport, sisn, cisn + 1, SYN | ACK))
            put(ts + 4e-6, frame(client, SERVER, cport, SERVER_PORT, cisn + 1, sisn + 1,
                                 ACK | PSH, part))

        # 16 MB declared handshakes: a record opening a ClientHello of 0xFFFFFF bytes, then
        # 16 KB records of its body, 256 KB in all.
        first = b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff" + b"\x03\x03" + bytes(16384 - 6)
        more = b"\x16\x03\x01\x40\x00" + bytes(16384)
        stream = first + more * 15
        segs = [stream[o : o + 1448] for o in range(0, len(stream), 1448)]
        ts = t0 + connections * 1e-5
        for j in range(big):
            client = bytes([172, 16 + ((j >> 16) & 0x0F), (j >> 8) & 0xFF, j & 0xFF])
            cport = 2000 + j % 60000
            cisn = (j * 2246822519) & 0xFFFFFFFF
            ts += 1e-4
            put(ts, frame(client, SERVER, cport, SERVER_PORT, cisn, 0, SYN))
            put(ts, frame(SERVER, client, SERVER_PORT, cport, 1000, cisn + 1, SYN | ACK))
            order = list(range(len(segs)))
            if j % 2:
                order = order[1:] + order[:1]  # the first segment comes last: a hole
            for k in order:
                ts += 1e-6
                put(ts, frame(client, SERVER, cport, SERVER_PORT, cisn + 1 + 1448 * k, 1001,
                              ACK, segs[k]))
    return n, path.stat().st_size


def measure(path: Path, extra: list[str]) -> tuple[int, float, str]:
    """Run the real CLI on the capture; returns (peak RSS KiB, seconds, its stdout)."""
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tlssniff", "analyze", str(path), "--no-progress", *extra],
        capture_output=True, text=True, cwd=REPO,
    )
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"tlssniff exited {proc.returncode}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return rss, dt, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connections", type=int, default=1_000_000)
    p.add_argument("--big", type=int, default=2_000)
    p.add_argument("-o", "--out", type=Path, default=REPO / "bench" / "out" / "adversarial.pcap")
    p.add_argument("--keep", action="store_true", help="keep the capture")
    p.add_argument("extra", nargs="*", help="options for tlssniff analyze (after --)")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    frames, size = write_capture(args.out, args.connections, args.big)
    print(f"wrote {args.out}: {frames} frames, {size / 1e6:.0f} MB in "
          f"{time.perf_counter() - t:.0f} s ({args.connections} partial ClientHellos, "
          f"{args.big} declared 16 MB handshakes)")
    try:
        rss, dt, out = measure(args.out, args.extra)
    finally:
        if not args.keep:
            os.unlink(args.out)
    print(out.rstrip())
    print(f"peak RSS {rss / 1024:.0f} MB, {dt:.0f} s (limit {RSS_LIMIT_MB} MB)")
    return 0 if rss < RSS_LIMIT_MB * 1024 else 1


if __name__ == "__main__":
    sys.exit(main())
