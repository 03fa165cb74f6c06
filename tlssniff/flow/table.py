"""The TCP flow table: connection roles, per-direction reassembly, limits and eviction.

The table is protocol-agnostic: each new connection gets an *application* from a factory
(the TLS analysis), which receives reassembled bytes and says when it is ``done``. A done
connection keeps only a light entry so that its remaining packets (usually almost all of them)
are skipped with one dict lookup in the caller's loop; see :func:`tlssniff.engine.pipeline`.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Callable, Final, Protocol

from tlssniff.capture.decode import (
    DPORT,
    DST,
    FLAGS,
    PAYLOAD,
    SEQ,
    SPORT,
    SRC,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Decoded,
)
from tlssniff.flow.eviction import clock_victim
from tlssniff.flow.limits import (  # noqa: F401  (Limits and PENDING_COST: importable from here)
    END_CLOSED,
    END_EOF,
    END_EVICTED,
    END_GAP,
    END_IDLE,
    PENDING_COST,
    Limits,
)
from tlssniff.flow.reassembly import StreamReassembler

FIN: Final = TCP_FIN
SYN: Final = TCP_SYN
RST: Final = TCP_RST
ACK: Final = TCP_ACK

_PORTS: Final = struct.Struct("!HH")


def flow_key(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    """One direction's key: source ip, destination ip, source port, destination port.

    This is the byte layout of an IPv4 or IPv6 header's addresses followed by the TCP ports,
    so the caller's fast path can slice a frame's key straight out of it (one allocation).
    """
    return src + dst + _PORTS.pack(sport, dport)


# How long a connection that saw FIN/RST is kept after its last packet, so that late
# retransmissions are recognised instead of starting a new (mid-stream) connection: 5 s, as
# Zeek's tcp_close_delay. (30 s kept 150,000 closed connections in the table on an egress
# capture of 4,800 connections/s, hit the 200,000-flow limit and evicted open ones, whose later
# packets then began mid-stream connections.)
CLOSED_GRACE: Final = 5.0
# The full scan for idle connections runs this often (capture time) at most; closed ones leave
# from their own queue every CLOSED_GRACE, at the cost of the closed connections only.
IDLE_SCAN: Final = 30.0




class App(Protocol):
    done: bool

    def data(self, from_client: bool, data: bytes, frame: int, ts: float = 0.0) -> None: ...

    def finish(self, reason: int) -> None: ...  # an END_* of flow/limits.py

    # Optional: ``held() -> int``, the bytes the app buffers (charged to max_pending_memory).


class Flow:
    """One TCP connection. ``client``/``server`` are (ip bytes, port)."""

    __slots__ = (
        "ckey",
        "skey",
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "ts",
        "last",
        "stamp",
        "held",
        "done",
        "closed",
        "fins",
        "c2s",
        "s2c",
        "app",
        "midstream",
        "frame",
    )

    def __init__(
        self, client: tuple[bytes, int], server: tuple[bytes, int], ts: float, midstream: bool,
        frame: int, max_buffer: int, key: bytes = b"", from_client: bool = True,
    ):
        """``key``: the :func:`flow_key` of the first packet's direction (the client's when
        ``from_client``), when the caller has it: only the other key is made."""
        self.client_ip, self.client_port = client
        self.server_ip, self.server_port = server
        if key and from_client:
            self.ckey = key
        else:
            self.ckey = flow_key(self.client_ip, self.server_ip, self.client_port,
                                 self.server_port)
        if key and not from_client:
            self.skey = key
        else:
            self.skey = flow_key(self.server_ip, self.client_ip, self.server_port,
                                 self.client_port)
        self.ts = ts
        self.last = ts
        self.stamp = ts  # ``last`` when the flow last went to the back of its eviction queue
        self.held = 0  # bytes charged to Limits.max_pending_memory
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
        self.client_ip, self.client_port, self.server_ip, self.server_port = (
            self.server_ip, self.server_port, self.client_ip, self.client_port
        )
        self.ckey, self.skey = self.skey, self.ckey
        self.c2s, self.s2c = self.s2c, self.c2s


@dataclass(slots=True)
class FlowCounters:
    flows: int = 0
    evicted: int = 0  # dropped for a limit (flows or pending memory) before the app was done
    evicted_memory: int = 0  # of those, for max_pending_memory
    idle_expired: int = 0  # expired for idleness before the app was done
    gaps: int = 0  # ended with bytes missing from the capture
    buffer_overflows: int = 0  # connections whose out-of-order buffer overflowed (bytes lost)


class FlowTable:
    """Maps both directions' 4-tuples to their :class:`Flow`.

    Eviction is O(1) per connection: flows wait in two queues in the order they arrived (those
    without a verdict, and those done), and a flow at the head of a queue that was active since
    it was queued goes to the back instead of out (the CLOCK approximation of least recently
    used). The caller's fast path only stores ``flow.last``; no per-packet bookkeeping.
    """

    def __init__(
        self,
        app_factory: Callable[[Flow], App],
        on_done: Callable[[Flow], None],
        limits: Limits | None = None,
    ):
        self.flows: dict[bytes, Flow] = {}
        self.app_factory = app_factory
        self.on_done = on_done
        self.limits = limits or Limits()
        self.counters = FlowCounters()
        self.count = 0  # flows in the table
        self.active = 0  # flows whose app is not done
        self.held = 0  # bytes charged to Limits.max_pending_memory, all flows together
        self._pending_q: deque[Flow] = deque()  # flows without a verdict (and stale entries)
        self._done_q: deque[Flow] = deque()  # done flows (and stale entries)
        # Closed flows by the time they were last seen when queued, oldest first (and stale
        # entries): sweep() forgets those a CLOSED_GRACE past their last packet.
        self._closed_q: deque[tuple[float, Flow]] = deque()
        self._next_idle_scan = -1.0  # capture time of the next full scan; armed by sweep()
        # Limit evictions of any flow (done ones included): flow-hash partitions of one capture
        # (engine/parallel.py) are exact only while none happens.
        self.evictions = 0

    # The caller's loop handles done flows itself (the fast path); everything else comes here.
    def segment(self, flow: Flow | None, key: bytes, ts: float, d: Decoded, frame: int) -> None:
        """One TCP segment: ``key`` from :func:`flow_key`, ``d`` the decoded tuple
        ``(proto, src, dst, sport, dport, seq, ack, flags, payload)``."""
        seq = d[SEQ]
        flags = d[FLAGS]
        payload = d[PAYLOAD]
        if flow is not None and flow.done and flags & SYN and not flags & ACK:
            # A bare SYN on the 4-tuple of a finished connection: the client reused its port
            # (busy clients do within seconds); a new connection, not more of the old one.
            self._drop(flow)
            flow = None
        if flow is None:
            if flags & RST or not (payload or flags & SYN):
                return  # a stray ACK/FIN/RST of a connection we never saw carry anything
            flow = self._new_flow(key, ts, d, frame)
        flow.last = ts
        if flow.done:
            self.closing(flow, flags)
            return
        from_client = key == flow.ckey
        stream = flow.c2s if from_client else flow.s2c
        assert stream is not None  # a flow without a verdict has both reassemblers
        if flags & SYN:
            stream.syn(seq)
            # TCP Fast Open (RFC 7413): data on a SYN is stream data, one past the ISN. When the
            # SYN-ACK does not acknowledge it the client sends it again after the handshake: the
            # reassembler trims that copy as a retransmission, so it is read once.
            seq = (seq + 1) & 0xFFFFFFFF
        if payload:
            data = stream.add(seq, payload)
            if data:
                if self._deliver(flow, from_client, data, frame, ts):
                    self._complete(flow)
                    self.closing(flow, flags)
                    return
                from_client = key == flow.ckey  # the app may have swapped roles
            self._charge(flow)
        if flags & (FIN | RST):
            # One bit per direction: a retransmitted FIN must not count as the other side's.
            if flags & RST:
                flow.fins = 3
            else:
                flow.fins |= 1 if from_client else 2
            if flow.fins == 3:
                self._closed(flow)
                self._end(flow, END_CLOSED, keep=True)

    def _deliver(self, flow: Flow, from_client: bool, data: bytes, frame: int, ts: float) -> bool:
        """Hand reassembled bytes to the flow's app; True once the app is done. A subclass
        that knows its app's class overrides this (and :meth:`_app_held`) with a direct call:
        the app is typed by a Protocol here, so every call is a Python-level method call."""
        app = flow.app
        assert app is not None
        app.data(from_client, data, frame, ts)
        return app.done

    def _app_held(self, flow: Flow) -> int:
        """The bytes the flow's app buffers (its optional ``held()``; 0 without one)."""
        measure = getattr(flow.app, "held", None)
        return measure() if measure is not None else 0

    def closing(self, flow: Flow, flags: int) -> None:
        if flags & (FIN | RST) and not flow.closed:
            self._closed(flow)

    def _closed(self, flow: Flow) -> None:
        flow.closed = True
        self._closed_q.append((flow.last, flow))

    def _charge(self, flow: Flow) -> None:
        """Re-count what a flow without a verdict holds; shed the oldest when over budget."""
        c2s, s2c = flow.c2s, flow.s2c
        assert c2s is not None and s2c is not None
        held = PENDING_COST + c2s.pending_bytes + s2c.pending_bytes + self._app_held(flow)
        self.held += held - flow.held
        flow.held = held
        if self.held > self.limits.max_pending_memory:
            self._shed()

    def _new_flow(self, key: bytes, ts: float, d: Decoded, frame: int) -> Flow:
        flags = d[FLAGS]
        src, dst = (d[SRC], d[SPORT]), (d[DST], d[DPORT])
        from_client = True
        if flags & SYN and flags & ACK:
            src, dst = dst, src  # a SYN-ACK comes from the server
            from_client = False
        while self.count >= self.limits.max_flows:
            self._evict_one()
        # ``key`` is this packet's direction: the flow makes only the other key (one bytes
        # object per key, the dict's own).
        flow = Flow(src, dst, ts, midstream=not flags & SYN, frame=frame,
                    max_buffer=self.limits.max_buffer, key=key, from_client=from_client)
        flow.app = self.app_factory(flow)
        self.flows[flow.ckey] = flow
        self.flows[flow.skey] = flow
        self.count += 1
        self.counters.flows += 1
        self.active += 1
        flow.held = PENDING_COST
        self.held += PENDING_COST
        self._pending_q.append(flow)
        if len(self._pending_q) > 2 * self.active + 1024:
            self._compact_pending()
        if self.held > self.limits.max_pending_memory:
            self._shed()
        return flow

    def _complete(self, flow: Flow, keep: bool = True) -> None:
        """The app has what it needs: report it and keep only a light entry (unless the flow
        is about to be dropped)."""
        flow.done = True
        self.active -= 1
        self.held -= flow.held
        flow.held = 0
        c2s, s2c = flow.c2s, flow.s2c
        assert c2s is not None and s2c is not None
        if c2s.stuck or s2c.stuck:
            self.counters.gaps += 1
        if c2s.gap or s2c.gap:
            self.counters.buffer_overflows += 1
        self.on_done(flow)
        flow.app = None
        flow.c2s = flow.s2c = None
        if keep:
            flow.stamp = flow.last
            self._done_q.append(flow)
            if len(self._done_q) > 2 * (self.count - self.active) + 1024:
                self._compact_done()

    def _end(self, flow: Flow, reason: int, keep: bool = False) -> None:
        """No more bytes will come for this connection: the app decides with what it has."""
        if flow.done:
            return
        if reason == END_EVICTED:
            self.counters.evicted += 1
        elif reason == END_IDLE:
            self.counters.idle_expired += 1
        c2s, s2c, app = flow.c2s, flow.s2c, flow.app
        assert c2s is not None and s2c is not None and app is not None
        gap = c2s.stuck or s2c.stuck
        app.finish(END_GAP if gap and (reason == END_CLOSED or reason == END_EOF) else reason)
        self._complete(flow, keep)

    def _drop(self, flow: Flow) -> None:
        flows = self.flows
        if flows.get(flow.ckey) is flow:
            del flows[flow.ckey]
            self.count -= 1
        if flows.get(flow.skey) is flow:
            del flows[flow.skey]

    def _live(self, flow: Flow) -> bool:
        return self.flows.get(flow.ckey) is flow

    # -- limits ----------------------------------------------------------------------------

    def _victim(self, q: deque[Flow], pending: bool) -> Flow | None:
        """The least recently active live flow of a queue (CLOCK), or None when it is empty."""
        return clock_victim(q, self._live, pending)

    def _evict_one(self) -> None:
        """At the flow limit: drop the least recently active flow, done ones first."""
        self.evictions += 1
        flow = self._victim(self._done_q, False)
        if flow is None:
            flow = self._victim(self._pending_q, True)
            if flow is None:  # cannot happen while count > 0; never loop forever
                self.count = len({id(f) for f in self.flows.values()})
                return
            self._end(flow, END_EVICTED)
        self._drop(flow)

    def _shed(self) -> None:
        """Over max_pending_memory: evict flows without a verdict, least recently active first,
        down to 90% of the budget."""
        target = self.limits.max_pending_memory * 0.9
        while self.held > target:
            flow = self._victim(self._pending_q, True)
            if flow is None:
                break
            self.counters.evicted_memory += 1
            self.evictions += 1
            self._end(flow, END_EVICTED)
            self._drop(flow)

    def _compact_pending(self) -> None:
        """Forget stale entries (flows gone or done), keeping the order; amortized O(1)."""
        live = self._live
        self._pending_q = deque(f for f in self._pending_q if not f.done and live(f))

    def _compact_done(self) -> None:
        live = self._live
        self._done_q = deque(f for f in self._done_q if live(f))

    def sweep_interval(self) -> float:
        # Often enough that closed connections leave about CLOSED_GRACE after their last packet:
        # memory then follows the connections in flight, not the length of the capture.
        return min(CLOSED_GRACE, self.limits.idle_timeout / 4)

    def sweep(self, now: float) -> None:
        """Forget closed connections past their grace period and, every :data:`IDLE_SCAN`
        (or a quarter of the idle timeout, if shorter), expire idle ones.

        The caller calls it every :meth:`sweep_interval` seconds of capture time, on the first
        frame past each deadline (``Analyzer``): a schedule that depends on the frames' times
        only, so each flow-hash partition of a capture sweeps when the whole capture would."""
        closed_before = now - CLOSED_GRACE
        q = self._closed_q
        live = self._live
        while q and q[0][0] < closed_before:
            flow = q.popleft()[1]
            if not live(flow):
                continue  # gone already (a new connection on its ports, evicted, expired)
            if flow.done and flow.last < closed_before:
                self._drop(flow)
            else:
                q.append((flow.last, flow))  # seen since: a grace after its last packet
        if now < self._next_idle_scan:
            return
        self._next_idle_scan = now + min(IDLE_SCAN, self.limits.idle_timeout / 4)
        idle_before = now - self.limits.idle_timeout
        seen = set()
        for flow in list(self.flows.values()):
            if id(flow) in seen:
                continue
            seen.add(id(flow))
            if flow.last < idle_before or (flow.closed and flow.done and flow.last < closed_before):
                self._end(flow, END_IDLE)
                self._drop(flow)
        self._compact_pending()
        self._compact_done()

    def finish_all(self) -> None:
        """End of input: every connection still open is decided with what was captured."""
        seen = set()
        for flow in list(self.flows.values()):
            if id(flow) not in seen:
                seen.add(id(flow))
                self._end(flow, END_EOF)
        self.flows.clear()
        self.count = 0
        self._pending_q.clear()
        self._done_q.clear()
        self._closed_q.clear()
