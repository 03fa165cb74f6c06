"""The speed floor of reading a capture, and how close the capture layer gets to it.

    python bench/read_floor.py FILE [--repeat N] [--dpkt]

Prints packets per second for:

* ``floor``: a bare Python loop over the pcap record headers that touches nothing else (the
  file read in the same chunks as the capture layer; pcap files only). tlssniff's whole run is
  compared to this.
* ``frames``: ``open_capture(FILE).frames()`` alone.
* ``frames+decode``: the same plus ``decode_frame`` on every frame.
* ``dpkt`` (with ``--dpkt``): ``dpkt.pcap.Reader``/``dpkt.pcapng.Reader`` for comparison.

Each figure is the best of ``--repeat`` runs (the machine's noise only ever slows a run down).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.capture import MalformedFrame, decode_frame, open_capture  # noqa: E402
from tlssniff.capture.files import CHUNK_SIZE  # noqa: E402


def floor(path: str) -> int:
    """Walk the record headers of a pcap file, read in the same chunks; return the record count."""
    n = 0
    with open(path, "rb", buffering=0) as f:
        buf = f.read(CHUNK_SIZE)
        bo = "<" if buf[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        unpack = struct.Struct(bo + "IIII").unpack_from
        off = 24
        while True:
            end = len(buf) - 16
            while off <= end:
                _sec, _frac, caplen, _wirelen = unpack(buf, off)
                if off + 16 + caplen > len(buf):
                    break
                off += 16 + caplen
                n += 1
            chunk = f.read(CHUNK_SIZE)
            if not chunk:
                return n
            buf = buf[off:] + chunk
            off = 0


def frames_only(path: str) -> int:
    n = 0
    for _frame in open_capture(path).frames():
        n += 1
    return n


def frames_decode(path: str) -> int:
    n = 0
    for _ts, linktype, frame in open_capture(path).frames():
        try:
            decode_frame(linktype, frame)
        except MalformedFrame:
            pass
        n += 1
    return n


def dpkt_reader(path: str) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        for _ts, _buf in reader:
            n += 1
    return n


def best_rate(fn: Callable[[str], int], path: str, repeat: int) -> tuple[int, float]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(path)
        best = min(best, time.perf_counter() - t0)
    return n, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dpkt", action="store_true", help="also time dpkt's reader")
    args = ap.parse_args()

    with open_capture(args.file) as cap:
        plain_pcap = cap.format.startswith("pcap") and cap.format != "pcapng" and not cap.compressed
    runs: list[tuple[str, Callable[[str], int]]] = []
    if plain_pcap:
        runs.append(("floor", floor))
    runs += [("frames", frames_only), ("frames+decode", frames_decode)]
    if args.dpkt and not args.file.endswith(".gz"):
        runs.append(("dpkt", dpkt_reader))

    base = None
    print(f"{args.file}  (Python {sys.version.split()[0]}, best of {args.repeat})")
    for name, fn in runs:
        n, secs = best_rate(fn, args.file, args.repeat)
        base = base or secs
        print(
            f"  {name:14s} {n:>9d} frames  {secs:7.3f} s  {n / secs / 1e6:6.2f} M frames/s  "
            f"{secs / n * 1e9:6.0f} ns/frame  {secs / base:4.2f}x floor"
        )


if __name__ == "__main__":
    main()
