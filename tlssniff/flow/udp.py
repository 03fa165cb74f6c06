"""The UDP side of the pipeline: a bounded flow table whose flows are QUIC or DTLS handshakes.

A UDP flow is its two endpoints. The first datagrams of a flow are looked at (a QUIC client
Initial that opens with the keys of its own Destination Connection ID, or a DTLS ClientHello);
the side that sent it is the client. A flow that shows neither within ``DETECT_DATAGRAMS``
datagrams (DNS, RTP, ...) is marked done, and its later datagrams cost one dictionary lookup,
as do those of a flow whose handshake verdict is known. Memory is bounded like the TCP table's,
with the same :class:`~tlssniff.flow.limits.Limits` and the same CLOCK victim search
(:mod:`tlssniff.flow.eviction`): ``max_flows`` flows, done flows evicted before flows still
in their handshake, least recently active first (down to 90% of the limit), idle flows expired.
"""

from __future__ import annotations

from typing import Callable

from collections import deque

from tlssniff.capture.decode import DPORT, DST, PAYLOAD, SPORT, SRC
from tlssniff.dtls.connection import DtlsConnection, is_client_hello
from tlssniff.flow.eviction import clock_victim
from tlssniff.flow.limits import END_DONE, END_EOF, END_EVICTED, END_IDLE, Limits
from tlssniff.quic.connection import QuicConnection, is_initial

# Datagrams of an unrecognised flow looked at before it is given up on (WebRTC sends STUN
# before the DTLS ClientHello on the same ports).
DETECT_DATAGRAMS = 16


class UdpFlow:
    __slots__ = ("a_ip", "a_port", "b_ip", "b_port", "client_is_a", "ts", "last", "stamp", "app",
                 "done", "tries", "frame")

    def __init__(self, key: tuple, ts: float, frame: int = 0):
        self.a_ip, self.a_port, self.b_ip, self.b_port = key
        self.frame = frame  # the frame that made it (its place in the table, for merges)
        self.client_is_a = True
        self.ts = ts
        self.last = ts
        self.stamp = ts  # ``last`` when the flow last went to the back of its eviction queue
        self.app: QuicConnection | DtlsConnection | None = None
        self.done = False
        self.tries = 0

    @property
    def client(self) -> tuple:
        return (self.a_ip, self.a_port) if self.client_is_a else (self.b_ip, self.b_port)

    @property
    def server(self) -> tuple:
        return (self.b_ip, self.b_port) if self.client_is_a else (self.a_ip, self.a_port)


class UdpTable:
    """Flows keyed by (src ip, src port, dst ip, dst port) in both orientations."""

    def __init__(self, on_done: Callable[[UdpFlow], None], limits: Limits):
        self.on_done = on_done
        self.limits = limits
        self.flows: dict[tuple, UdpFlow] = {}
        self.count = 0  # flows created
        self.quic = 0
        self.dtls = 0
        self.evicted = 0
        self.idle_expired = 0
        self.evictions = 0  # _evict runs (flow-hash partitions are exact only without)
        self._pending_q: deque[UdpFlow] = deque()  # flows not done (and stale entries)
        self._done_q: deque[UdpFlow] = deque()  # done flows (and stale entries)

    def datagram(self, ts: float, d: tuple, frame_no: int) -> bool:
        """One decoded UDP datagram ``(proto, src, dst, sport, dport, ..., payload)``; True when it
        belonged to a handshake still being read."""
        key = (d[SRC], d[SPORT], d[DST], d[DPORT])
        flow = self.flows.get(key)
        if flow is not None:
            flow.last = ts
            if flow.done:
                return False
        else:
            flow = UdpFlow(key, ts, frame_no)
            self.flows[key] = flow
            self.flows[(d[DST], d[DPORT], d[SRC], d[SPORT])] = flow
            self.count += 1
            self._pending_q.append(flow)
            if len(self.flows) > 2 * self.limits.max_flows:
                self._evict()
        payload = d[PAYLOAD]
        if flow.app is not None:
            flow.app.tracker.last_ts = ts  # the tracker's clock (HandshakeTracker.last_ts)
        from_a = key[0] == flow.a_ip and key[1] == flow.a_port
        app = flow.app
        if app is None:
            app = self._detect(flow, from_a, payload, frame_no)  # feeds the datagram
            if app is None:
                return False
            hs = True
        else:
            hs = app.datagram(from_a == flow.client_is_a, payload, frame_no)
        if app.done:
            self._end(flow, END_DONE)
        return hs

    def _detect(self, flow: UdpFlow, from_a: bool, payload: bytes, frame_no: int):
        """The app for a flow whose first handshake datagram this is (fed to it), else None."""
        flow.tries += 1
        app: QuicConnection | DtlsConnection | None = None
        if is_initial(payload):
            # Only a client Initial opens with the keys of its own DCID (RFC 9001 §5.2).
            version = int.from_bytes(payload[1:5], "big")
            dcid = bytes(payload[6 : 6 + payload[5]])
            q = QuicConnection(version, dcid, self.limits.max_message)
            q.tracker.last_ts = flow.last
            q.datagram(True, payload, frame_no)
            if q.opened:
                app = q
                self.quic += 1
        elif is_client_hello(payload):
            d = DtlsConnection(self.limits.max_message)
            d.tracker.last_ts = flow.last
            d.datagram(True, payload, frame_no)
            app = d
            self.dtls += 1
        if app is None:
            if flow.tries >= DETECT_DATAGRAMS:
                self._mark_done(flow)
            return None
        flow.client_is_a = from_a
        flow.ts = flow.last
        flow.app = app
        return app

    def _mark_done(self, flow: UdpFlow) -> None:
        flow.done = True
        flow.stamp = flow.last
        self._done_q.append(flow)

    def _end(self, flow: UdpFlow, reason: int) -> None:
        if flow.done:
            return
        self._mark_done(flow)
        if flow.app is not None:
            flow.app.finish(reason)
            self.on_done(flow)

    def _drop(self, flow: UdpFlow) -> None:
        self.flows.pop((flow.a_ip, flow.a_port, flow.b_ip, flow.b_port), None)
        self.flows.pop((flow.b_ip, flow.b_port, flow.a_ip, flow.a_port), None)

    def sweep(self, ts: float) -> None:
        """Expire flows idle for idle_timeout; the Analyzer calls it with the TCP table's."""
        limit = ts - self.limits.idle_timeout
        for flow in {id(f): f for f in self.flows.values()}.values():
            if flow.last < limit:
                if not flow.done and flow.app is not None:
                    self.idle_expired += 1
                self._end(flow, END_IDLE)
                self._drop(flow)
        live = self._live
        self._pending_q = deque(f for f in self._pending_q if not f.done and live(f))
        self._done_q = deque(f for f in self._done_q if live(f))

    def _live(self, flow: UdpFlow) -> bool:
        return self.flows.get((flow.a_ip, flow.a_port, flow.b_ip, flow.b_port)) is flow

    def _evict(self) -> None:
        """At the flow limit: down to 90% of it, done flows first, least recently active first
        (CLOCK, as the TCP table)."""
        self.evictions += 1
        target = int(self.limits.max_flows * 0.9)
        n = len(self.flows) // 2
        while n > target:
            flow = clock_victim(self._done_q, self._live, False)
            if flow is None:
                flow = clock_victim(self._pending_q, self._live, True)
                if flow is None:
                    break
                if flow.app is not None:
                    self.evicted += 1
                self._end(flow, END_EVICTED)
            self._drop(flow)
            n -= 1

    def finish_all(self) -> None:
        for flow in {id(f): f for f in self.flows.values()}.values():
            self._end(flow, END_EOF)
        self.flows.clear()
        self._pending_q.clear()
        self._done_q.clear()
