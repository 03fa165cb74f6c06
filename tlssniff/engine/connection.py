"""The TLS application of a TCP flow: finds TLS by content, feeds the tracker, yields a verdict."""

from __future__ import annotations

from typing import Final, cast

from tlssniff import preamble as pa
from tlssniff import starttls as st
from tlssniff.flow.table import Flow, FlowTable
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.records import MAX_RECORD

DETECT: Final = 0
TLS: Final = 1
NOT_TLS: Final = 2
MIDSTREAM_TLS: Final = 3
PLAINTEXT: Final = 4  # a plaintext protocol that may upgrade to TLS (STARTTLS): tlssniff/starttls/
PREAMBLE: Final = 5  # a proxy, PROXY protocol, RDP or banner before the TLS: preamble.py


def sniff(data: bytes) -> int | None:
    """What a direction's first bytes are: ClientHello (TLS), other TLS records (MIDSTREAM_TLS),
    something else (NOT_TLS), or None when more bytes are needed to tell."""
    if len(data) < 11:
        if data and (data[0] < 20 or data[0] > 24) and not data[0] & 0x80:
            return NOT_TLS
        return None
    b0 = data[0]
    # Record header (type 22, version 3.x), handshake type 1, then the hello's own version 3.x.
    if b0 == 0x16 and data[1] == 3 and data[2] <= 4 and data[5] == 1 and data[9] == 3:
        return TLS
    if b0 & 0x80 and data[2] == 1 and data[3] in (0, 3) and data[4] <= 4:
        return TLS  # SSL 2.0-compatible ClientHello (RFC 5246 Appendix E.2)
    if 20 <= b0 <= 24 and data[1] == 3 and data[2] <= 4:
        if ((data[3] << 8) | data[4]) <= MAX_RECORD:
            return MIDSTREAM_TLS
    return NOT_TLS


class TlsApp:
    """Attached by the flow table to every new TCP connection."""

    __slots__ = ("flow", "tracker", "state", "head", "done", "end_reason", "max_message",
                 "plain", "starttls", "pre", "preamble", "proxied_client", "heard_client")

    def __init__(self, flow: Flow, max_message: int):
        self.flow = flow
        self.tracker: HandshakeTracker | None = None
        self.state = DETECT
        self.head = b""  # the first few bytes, while too few to tell what they are
        self.done = False
        self.end_reason: int | None = None  # an END_* of flow/limits.py
        self.max_message = max_message
        self.plain: st.StartTls | None = None  # while in the plaintext phase of a STARTTLS candidate
        self.starttls: str | None = None  # the protocol upgraded to TLS
        self.pre: pa.Preamble | None = None  # a preamble being read (then the server's, after it)
        self.preamble: str | None = None  # the preamble the TLS came after
        self.proxied_client: str | None = None  # the client a PROXY protocol header named
        self.heard_client = False  # the client spoke during a STARTTLS candidate's plaintext

    def data(self, from_client: bool, data: bytes, frame: int, ts: float = 0.0) -> None:
        if self.state == DETECT:
            data = self._detect(from_client, data)
            if self.state != TLS:
                if self.state == PLAINTEXT:
                    self._plaintext(from_client, data, frame, ts)
                elif self.state == PREAMBLE:
                    self._preamble(from_client, data, frame, ts)
                return
            from_client = True
        elif self.state == PLAINTEXT:
            self._plaintext(from_client, data, frame, ts)
            return
        elif self.state == PREAMBLE:
            self._preamble(from_client, data, frame, ts)
            return
        t = self.tracker
        assert t is not None  # state TLS
        if from_client:
            t.client_data(data, frame, ts)
        else:
            pre = self.pre
            if pre is not None:  # the server's own preamble (a proxy's answer, a banner) first
                data = pre.server_tls(data)
                if pre.synced:
                    self.pre = None
                if not data:
                    return
            t.server_data(data, frame, ts)
        if t.done:
            self.done = True

    def _detect(self, from_client: bool, data: bytes) -> bytes:
        flow = self.flow
        if not from_client and not flow.midstream:
            # The server spoke first: not TLS, but perhaps a protocol that upgrades to it.
            hint = st.server_greeting(data)
            if hint is not None:
                self._start_plaintext(hint)
            else:
                banner = pa.server_hint(data)  # a banner, then perhaps the client's TLS
                if banner is None:
                    self._give_up(NOT_TLS)
                else:
                    self._start_preamble(banner)
            return data
        if self.head:
            data = self.head + data
        kind = sniff(data)
        if kind is None:
            self.head = data[:16]
            return data
        self.head = b""
        if kind == TLS:
            if not from_client:
                flow.swap_roles()
            self.state = TLS
            self.tracker = HandshakeTracker(self.max_message)
        elif kind == MIDSTREAM_TLS and flow.midstream:
            # The capture starts after the ClientHello: report the connection, guess nothing.
            if flow.client_port < 1024 <= flow.server_port or (
                flow.client_port < flow.server_port and flow.server_port >= 1024
            ):
                flow.swap_roles()
            self._give_up(MIDSTREAM_TLS)
        else:
            hint = None if flow.midstream else st.client_opening(data)
            if hint is not None:
                self._start_plaintext(hint)
            else:
                pre = None if flow.midstream else pa.client_hint(data)
                if pre is None:
                    self._give_up(NOT_TLS)
                else:
                    self._start_preamble(pre)
        return data

    def _start_plaintext(self, hint: str) -> None:
        self.state = PLAINTEXT
        self.plain = st.StartTls(hint)

    def _start_preamble(self, kind: str) -> None:
        self.state = PREAMBLE
        self.pre = pa.Preamble(kind)

    def _preamble(self, from_client: bool, data: bytes, frame: int, ts: float) -> None:
        """A preamble before the TLS: the client's TLS starts after its own, the server's after
        its answer (both in preamble.py)."""
        pre = self.pre
        assert pre is not None  # state PREAMBLE
        result = pre.feed(from_client, data)
        if result == pa.WAIT:
            return
        if result == pa.GIVE_UP:
            self.pre = None
            self._give_up(NOT_TLS)
            return
        self.preamble = pre.protocol
        self.proxied_client = pre.proxied_client
        self.state = TLS
        t = self.tracker = HandshakeTracker(self.max_message)
        t.client_data(pre.tls_bytes, frame, ts)
        server = pre.server_tls(b"")  # what the server sent after its preamble, if anything
        if pre.synced:
            self.pre = None
        if server:
            t.server_data(server, frame, ts)
        if t.done:
            self.done = True

    def _plaintext(self, from_client: bool, data: bytes, frame: int, ts: float) -> None:
        """STARTTLS: plaintext until the client's upgrade request; its next bytes start TLS."""
        plain = self.plain
        assert plain is not None  # state PLAINTEXT
        if from_client and not self.heard_client:
            self.heard_client = True
            if pa.looks_like_client_hello(data):
                # The server's greeting was a banner: the client answered it with TLS (465).
                self.plain = None
                self._start_preamble("banner")
                self._preamble(True, data, frame, ts)
                return
        result = plain.feed(from_client, data)
        if result == st.WAIT:
            return
        self.plain = None
        if result == st.GIVE_UP:
            self._give_up(NOT_TLS)
            return
        self.starttls = plain.protocol
        self.state = TLS
        t = self.tracker = HandshakeTracker(self.max_message)
        t.client_data(plain.tls_bytes, frame)
        if t.done:
            self.done = True

    def _give_up(self, state: int) -> None:
        self.state = state
        self.done = True

    def held(self) -> int:
        """Bytes this connection buffers, charged to the flow table's pending-memory budget."""
        t = self.tracker
        pre = self.pre
        return (len(self.head) + (t.client.held() + t.server.held() if t is not None else 0)
                + (pre.held() if pre is not None else 0))

    def finish(self, reason: int) -> None:
        self.end_reason = reason
        if self.tracker is not None:
            self.tracker.finish()
        self.done = True


class TlsFlowTable(FlowTable):
    """The flow table of the pipeline, whose apps are all :class:`TlsApp` (its factory's): the
    app is called directly instead of through the ``App`` protocol's Python-level method calls
    (compiled: no boxing of the frame number and time, no argument parsing, no bound method
    for ``held``; 2.2% of the instructions of the first 300,000 frames of
    bench/out/handshakes.pcap, callgrind, ``analyze -f jsonl``)."""

    def _deliver(self, flow: Flow, from_client: bool, data: bytes, frame: int, ts: float) -> bool:
        app = flow.app
        if type(app) is not TlsApp:
            return super()._deliver(flow, from_client, data, frame, ts)
        tls = cast(TlsApp, app)
        tls.data(from_client, data, frame, ts)
        return tls.done

    def _app_held(self, flow: Flow) -> int:
        app = flow.app
        if type(app) is not TlsApp:
            return super()._app_held(flow)
        return cast(TlsApp, app).held()
