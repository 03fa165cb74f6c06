"""Bounded TCP reassembly for one direction of a connection.

Retransmitted and overlapping bytes are trimmed against what was already delivered (first copy
wins, as most stacks do); out-of-order segments wait in a buffer bounded by ``limit`` bytes.
When that buffer would overflow, or the connection ends with bytes still missing, the stream is
marked ``gap``: the bytes the capture lacks are never guessed.

Memory: one small object per direction (80 bytes, tracemalloc); the out-of-order buffer (a
dict) is only made when a segment arrives ahead of a hole, and freed once the hole is filled.
"""

from __future__ import annotations

from typing import Final

MASK: Final = 0xFFFFFFFF
HALF: Final = 0x80000000
# Out-of-order segments held at once: 256 KB of full-size segments is ~180; tiny segments beyond
# this many are an attack on the buffer's bookkeeping, and count as an overflow.
MAX_SEGMENTS: Final = 1024


class StreamReassembler:
    __slots__ = ("next_seq", "pending", "pending_bytes", "limit", "gap", "delivered", "_low")

    def __init__(self, limit: int = 256 * 1024):
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] | None = None  # seq -> segment, made on first need
        self.pending_bytes = 0
        self.limit = limit
        self.gap = False  # bytes were lost: the out-of-order buffer overflowed
        self.delivered = 0
        self._low = 0  # the held segment that starts first (valid while ``pending``)

    def syn(self, seq: int) -> None:
        """A SYN fixes the initial sequence number; data starts one past it."""
        if self.next_seq is None:
            self.next_seq = (seq + 1) & MASK

    def add(self, seq: int, payload: bytes) -> bytes | None:
        """Accept one segment; return the newly contiguous bytes, or None."""
        ns = self.next_seq
        if ns is None:
            ns = seq  # no SYN seen: the first data segment starts the stream
        n = len(payload)
        off = (seq - ns) & MASK
        if off == 0:
            out = payload
        elif off >= HALF:
            back = (ns - seq) & MASK
            if back >= n:
                return None  # a pure retransmission
            out = payload[back:]
        else:
            self._hold(seq, payload)
            self.next_seq = ns
            return None
        ns = (ns + len(out)) & MASK
        if self.pending:
            low = (self._low - ns) & MASK
            if low == 0 or low >= HALF:
                # The first held segment starts at or before the next byte: the hole is filled.
                out, ns = self._drain(out, ns)
        self.next_seq = ns
        self.delivered += len(out)
        return out

    def _hold(self, seq: int, payload: bytes) -> None:
        pending = self.pending
        if pending is None:
            pending = self.pending = {}
        old = pending.get(seq)
        if old is not None and len(old) >= len(payload):
            return
        grow = len(payload) - (len(old) if old else 0)
        if self.pending_bytes + grow > self.limit or len(pending) >= MAX_SEGMENTS:
            self.gap = True
            return
        if not pending:
            self._low = seq
        elif self.next_seq is not None:
            ns = self.next_seq
            if (seq - ns) & MASK < (self._low - ns) & MASK:
                self._low = seq
        pending[seq] = payload
        self.pending_bytes += grow

    def _drain(self, out: bytes, ns: int) -> tuple[bytes, int]:
        """Deliver the held segments the new bytes made contiguous: one pass in stream order
        (O(n log n) whatever order they came in)."""
        chunks = [out]
        pending = self.pending
        assert pending is not None

        def start(seq: int) -> int:  # offset from ns, segments behind it negative
            off = (seq - ns) & MASK
            return off - (1 << 32) if off >= HALF else off

        for seq in sorted(pending, key=start):
            off = (seq - ns) & MASK
            if off != 0 and off < HALF:
                break  # a hole remains before this one (and so before every later one)
            data = pending.pop(seq)
            self.pending_bytes -= len(data)
            back = 0 if off == 0 else (ns - seq) & MASK
            if back < len(data):
                chunks.append(data[back:])
                ns = (ns + len(data) - back) & MASK
        if pending:
            self._low = min(pending, key=lambda s: (s - ns) & MASK)
        else:
            self.pending = None
        return b"".join(chunks), ns

    def release(self) -> None:
        """Drop the out-of-order buffer (the connection has its verdict or is being dropped)."""
        self.pending = None
        self.pending_bytes = 0

    @property
    def stuck(self) -> bool:
        """Bytes are waiting behind a hole the capture never filled."""
        return self.gap or bool(self.pending)
