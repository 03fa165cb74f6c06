"""Bounded TCP reassembly for one direction of a connection.

Retransmitted and overlapping bytes are trimmed against what was already delivered (first copy
wins, as most stacks do); out-of-order segments wait in a buffer bounded by ``limit`` bytes.
When that buffer would overflow, or the connection ends with bytes still missing, the stream is
marked ``gap``: the bytes the capture lacks are never guessed.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000


class StreamReassembler:
    __slots__ = ("next_seq", "pending", "pending_bytes", "limit", "gap", "delivered")

    def __init__(self, limit: int = 256 * 1024):
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.limit = limit
        self.gap = False
        self.delivered = 0

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
            out, ns = self._drain(out, ns)
        self.next_seq = ns
        self.delivered += len(out)
        return out

    def _hold(self, seq: int, payload: bytes) -> None:
        old = self.pending.get(seq)
        if old is not None and len(old) >= len(payload):
            return
        grow = len(payload) - (len(old) if old else 0)
        if self.pending_bytes + grow > self.limit:
            self.gap = True
            return
        self.pending[seq] = payload
        self.pending_bytes += grow

    def _drain(self, out: bytes, ns: int) -> tuple[bytes, int]:
        chunks = [out]
        pending = self.pending
        progressed = True
        while progressed and pending:
            progressed = False
            for seq in list(pending):
                off = (seq - ns) & MASK
                if off != 0 and off < HALF:
                    continue  # still in the future
                data = pending.pop(seq)
                self.pending_bytes -= len(data)
                back = 0 if off == 0 else (ns - seq) & MASK
                if back < len(data):
                    chunks.append(data[back:])
                    ns = (ns + len(data) - back) & MASK
                    progressed = True
        return b"".join(chunks), ns

    @property
    def stuck(self) -> bool:
        """Bytes are waiting behind a hole the capture never filled."""
        return self.gap or bool(self.pending)
