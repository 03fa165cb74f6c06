"""The TCP flow table: connection roles, per-direction reassembly, limits and eviction.

The table is protocol-agnostic: each new connection gets an *application* from a factory
(the TLS analysis), which receives reassembled bytes and says when it is ``done``. A done
connection keeps only a light entry so that its remaining packets (usually almost all of them)
are skipped with one dict lookup in the caller's loop; see :func:`tlssniff.analysis.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from tlssniff.flow.reassembly import StreamReassembler

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10

# How long a connection that saw FIN/RST is kept after its last packet, so that late
# retransmissions are recognised instead of starting a new (mid-stream) connection.
CLOSED_GRACE = 30.0


@dataclass(slots=True)
class Limits:
    """Bounds that keep memory flat whatever the capture holds."""

    max_flows: int = 200_000  # connections tracked at once; the least recently active go first
    idle_timeout: float = 300.0  # seconds of capture time without a packet
    max_buffer: int = 256 * 1024  # out-of-order bytes held per direction before a verdict
    max_message: int = 64 * 1024  # largest hello/ticket message buffered


class App(Protocol):
    done: bool

    def data(self, from_client: bool, data: bytes, frame: int) -> None: ...

    def finish(self, reason: str) -> None: ...


class Flow:
    """One TCP connection. ``client``/``server`` are (ip bytes, port)."""

    __slots__ = (
        "ckey",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "ts",
        "last",
        "done",
        "closed",
        "fins",
        "c2s",
        "s2c",
        "app",
        "midstream",
        "frame",
    )

    def __init__(self, ckey: tuple, ts: float, midstream: bool, frame: int, max_buffer: int):
        self.ckey = ckey
        self.client_ip, self.client_port, self.server_ip, self.server_port = ckey
        self.ts = ts
        self.last = ts
        self.done = False
        self.closed = False
        self.fins = 0
        self.c2s: StreamReassembler | None = StreamReassembler(max_buffer)
        self.s2c: StreamReassembler | None = StreamReassembler(max_buffer)
        self.app: App | None = None
        self.midstream = midstream
        self.frame = frame

    def swap_roles(self) -> None:
        """Mid-stream connections guess roles from the first packet; the app may correct that."""
        self.ckey = (self.server_ip, self.server_port, self.client_ip, self.client_port)
        self.client_ip, self.client_port, self.server_ip, self.server_port = self.ckey
        self.c2s, self.s2c = self.s2c, self.c2s


@dataclass(slots=True)
class FlowCounters:
    flows: int = 0
    evicted: int = 0  # dropped for the flow limit before the app was done
    idle_expired: int = 0  # expired for idleness before the app was done
    gaps: int = 0  # ended with bytes missing from the capture


class FlowTable:
    """Maps both directions' 4-tuples to their :class:`Flow`."""

    def __init__(
        self,
        app_factory: Callable[[Flow], App],
        on_done: Callable[[Flow], None],
        limits: Limits | None = None,
    ):
        self.flows: dict[tuple, Flow] = {}
        self.app_factory = app_factory
        self.on_done = on_done
        self.limits = limits or Limits()
        self.counters = FlowCounters()
        self.active = 0  # flows whose app is not done
        self._next_sweep: float | None = None

    # The caller's loop handles done flows itself (the fast path); everything else comes here.
    def segment(
        self,
        flow: Flow | None,
        key: tuple,
        ts: float,
        seq: int,
        flags: int,
        payload: bytes,
        frame: int,
    ) -> None:
        if flow is None:
            if flags & RST or not (payload or flags & SYN):
                return  # a stray ACK/FIN/RST of a connection we never saw carry anything
            flow = self._new_flow(key, ts, flags, frame)
        flow.last = ts
        if flow.done:
            self.closing(flow, flags)
            return
        from_client = key == flow.ckey
        stream = flow.c2s if from_client else flow.s2c
        if flags & SYN:
            stream.syn(seq)
        if payload:
            data = stream.add(seq, payload)
            if data:
                flow.app.data(from_client, data, frame)
                if flow.app.done:
                    self._complete(flow)
                    self.closing(flow, flags)
                    return
                from_client = key == flow.ckey  # the app may have swapped roles
        if flags & (FIN | RST):
            # One bit per direction: a retransmitted FIN must not count as the other side's.
            if flags & RST:
                flow.fins = 3
            else:
                flow.fins |= 1 if from_client else 2
            if flow.fins == 3:
                flow.closed = True
                self._end(flow, "closed")

    def closing(self, flow: Flow, flags: int) -> None:
        if flags & (FIN | RST):
            flow.closed = True

    def _new_flow(self, key: tuple, ts: float, flags: int, frame: int) -> Flow:
        if flags & SYN and flags & ACK:
            ckey = (key[2], key[3], key[0], key[1])  # a SYN-ACK comes from the server
        else:
            ckey = key
        flow = Flow(ckey, ts, midstream=not flags & SYN, frame=frame, max_buffer=self.limits.max_buffer)
        flow.app = self.app_factory(flow)
        self.flows[key] = flow
        self.flows[(key[2], key[3], key[0], key[1])] = flow
        self.counters.flows += 1
        self.active += 1
        if self._next_sweep is None:
            self._next_sweep = ts + self.limits.idle_timeout / 4
        elif ts >= self._next_sweep:
            self.sweep(ts)
        if len(self.flows) > 2 * self.limits.max_flows:
            self._evict(ts)
        return flow

    def _complete(self, flow: Flow) -> None:
        """The app has what it needs: report it and keep only a light entry."""
        flow.done = True
        self.active -= 1
        if flow.c2s.stuck or flow.s2c.stuck:
            self.counters.gaps += 1
        self.on_done(flow)
        flow.app = None
        flow.c2s = flow.s2c = None

    def _end(self, flow: Flow, reason: str) -> None:
        """No more bytes will come for this connection: the app decides with what it has."""
        if flow.done:
            return
        if reason == "evicted":
            self.counters.evicted += 1
        elif reason == "idle":
            self.counters.idle_expired += 1
        gap = flow.c2s.stuck or flow.s2c.stuck
        flow.app.finish("gap" if gap and reason in ("closed", "eof") else reason)
        self._complete(flow)

    def _drop(self, flow: Flow) -> None:
        self.flows.pop(flow.ckey, None)
        ck = flow.ckey
        self.flows.pop((ck[2], ck[3], ck[0], ck[1]), None)

    def sweep(self, now: float) -> None:
        """Expire idle connections and forget closed ones past their grace period."""
        idle_before = now - self.limits.idle_timeout
        closed_before = now - CLOSED_GRACE
        seen = set()
        for flow in list(self.flows.values()):
            if id(flow) in seen:
                continue
            seen.add(id(flow))
            if flow.last < idle_before or (flow.closed and flow.done and flow.last < closed_before):
                self._end(flow, "idle")
                self._drop(flow)
        self._next_sweep = now + self.limits.idle_timeout / 4

    def _evict(self, now: float) -> None:
        """Over the flow limit: drop the least recently active tenth (done ones first)."""
        self.sweep(now)
        if len(self.flows) <= 2 * self.limits.max_flows * 0.9:
            return
        uniq = {id(f): f for f in self.flows.values()}.values()
        victims = sorted(uniq, key=lambda f: (not f.done, f.last))
        target = int(self.limits.max_flows * 0.9)
        for flow in victims[: max(0, len(uniq) - target)]:
            self._end(flow, "evicted")
            self._drop(flow)

    def finish_all(self) -> None:
        """End of input: every connection still open is decided with what was captured."""
        seen = set()
        for flow in list(self.flows.values()):
            if id(flow) not in seen:
                seen.add(id(flow))
                self._end(flow, "eof")
        self.flows.clear()
