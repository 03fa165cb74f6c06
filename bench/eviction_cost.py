"""Eviction cost against table size: the CLOCK victim search must not grow with the table.

    python bench/eviction_cost.py

Fills a flow table of N connections stuck mid-handshake, then times 5,000 more (each one
evicts one). Sorting the table per eviction would make the 100,000-flow figure ~50x the
2,000-flow one; CLOCK keeps them within a small factor. A benchmark, not a test: a timing on a
shared machine is no verdict.
"""

from __future__ import annotations

import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.flow.table import FlowTable, Limits  # noqa: E402


class _Stuck:
    """An app that never decides (a connection stuck mid-handshake)."""

    __slots__ = ("done", "buf")

    def __init__(self, flow) -> None:
        self.done = False
        self.buf = b""

    def data(self, from_client, data, frame, ts=0.0) -> None:
        self.buf += data

    def finish(self, reason) -> None:
        self.done = True


def _syn_data(table: FlowTable, i: int) -> None:
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    dst = bytes([192, 0, 2, 1])
    port = 1024 + i % 60000
    key = src + dst + struct.pack("!HH", port, 443)
    table.segment(table.flows.get(key), key, 1.0, (6, src, dst, port, 443, 1000, 0, 2, b""), i)
    table.segment(table.flows.get(key), key, 1.0,
                  (6, src, dst, port, 443, 1001, 0, 0x18, b"x" * 100), i)


def cost(n: int, extra: int = 5000) -> float:
    table = FlowTable(_Stuck, lambda f: None, Limits(max_flows=n))
    for i in range(n):
        _syn_data(table, i)
    t = time.perf_counter()
    for i in range(n, n + extra):
        _syn_data(table, i)
    return time.perf_counter() - t


def main() -> None:
    small, large = min(cost(2_000) for _ in range(3)), min(cost(100_000) for _ in range(3))
    print(f"5,000 evictions: table of 2,000 {small * 1e3:.1f} ms, of 100,000 {large * 1e3:.1f} ms "
          f"({large / small:.2f}x)")


if __name__ == "__main__":
    main()
