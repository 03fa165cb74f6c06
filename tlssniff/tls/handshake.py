"""Per-connection handshake tracker (sans-IO): both directions' events in, handshake facts out.

The tracker records what was said in the clear and nothing else; turning facts into a verdict is
the analysis layer's job (:mod:`tlssniff.analysis.classify`). ``done`` turns true as soon as the
rest of the connection cannot change the facts, so the flow layer can stop feeding it.
"""

from __future__ import annotations

from typing import Final

from tlssniff.tls import records as rec
from tlssniff.tls.messages import (
    ClientHello,
    DecodeError,
    NewSessionTicket,
    ServerHello,
    parse_client_hello,
    parse_new_session_ticket,
    parse_server_hello,
    parse_sslv2_client_hello,
)
from tlssniff.tls.wire import (
    AFTER_SH_ALERT,
    AFTER_SH_CCS,
    AFTER_SH_ENCRYPTED,
    ALERT_FATAL,
    ALERT_LEVEL_NAMES,
    ALERT_NAMES,
    HS_CLIENT_HELLO,
    HS_HELLO_RETRY_REQUEST_DRAFT,
    HS_NEW_SESSION_TICKET,
    HS_SERVER_HELLO,
)

# A connection that has not finished its handshake this many records after the ServerHello (or
# before one) is given up on: its facts are as complete as they will get.
MAX_RECORDS_AFTER_SERVER_HELLO: Final = 64
MAX_RECORDS_BEFORE_SERVER_HELLO: Final = 1024


class HandshakeTracker:
    """Feeds both directions of one connection through record streams and keeps the facts."""

    __slots__ = (
        "client",
        "server",
        "client_hellos",
        "server_hello",
        "hrr",
        "after_sh",
        "ticket",
        "client_ccs",
        "server_ccs",
        "client_encrypted_after_sh",
        "alert",
        "alert_from_server",
        "error",
        "error_detail",
        "sslv2_server",
        "done",
        "ch_frame",
        "sh_frame",
        "ch_ts",
        "sh_ts",
        "last_ts",
        "_records_at_sh",
    )

    def __init__(self, max_message: int = rec.DEFAULT_MAX_MESSAGE):
        self.client = rec.RecordStream(max_message)
        self.server = rec.RecordStream(max_message)
        self.client_hellos: list[ClientHello] = []
        self.server_hello: ServerHello | None = None  # the final (non-HRR) ServerHello
        self.hrr = False
        self.after_sh: int | None = None
        self.ticket: NewSessionTicket | None = None
        self.client_ccs = False
        self.server_ccs = False
        self.client_encrypted_after_sh = False
        self.alert: tuple[int | None, int | None] | None = None
        self.alert_from_server = False
        self.error: str | None = None  # "malformed" or "oversized"
        self.error_detail: str | None = None
        self.sslv2_server = False
        self.done = False
        self.ch_frame = 0
        self.sh_frame = 0
        # Capture time (epoch seconds) of the ClientHello, the ServerHello and the last bytes fed
        # (the handshake's end once ``done``): session ages and overlaps (analysis.diagnostics).
        self.ch_ts = 0.0
        self.sh_ts = 0.0
        self.last_ts = 0.0
        self._records_at_sh = 0

    # -- input -----------------------------------------------------------------------------

    def client_data(self, data: bytes, frame: int = 0, ts: float = 0.0) -> None:
        if self.done:
            return
        self.last_ts = ts
        try:
            events = self.client.feed(data)
        except DecodeError as err:
            self._fail(err)
            return
        self.client_events(events, frame)

    def client_events(self, events: list[rec.Event], frame: int = 0) -> None:
        """The client's record-layer events (``records.RecordStream`` kinds), from any record
        layer: TLS records, DTLS records, QUIC packets."""
        if self.done:
            return
        for kind, a, b in events:
            if kind == rec.HANDSHAKE:
                if a == HS_CLIENT_HELLO and b is not None:
                    if len(self.client_hellos) < 2:
                        self._client_hello(b, frame)
            elif kind == rec.CCS:
                self.client_ccs = True
            elif kind == rec.APPLICATION_DATA or kind == rec.ENCRYPTED_HANDSHAKE:
                if self.server_hello is not None:
                    self.client_encrypted_after_sh = True
            elif kind == rec.ALERT:
                self._alert(a, b, from_server=False)
            elif kind == rec.SSLV2_CLIENT_HELLO:
                try:
                    self.client_hellos.append(parse_sslv2_client_hello(a))
                    self.ch_frame = self.ch_frame or frame
                except DecodeError as err:
                    self._fail(err)
            if self.done:
                return
        self._check_done()

    def server_data(self, data: bytes, frame: int = 0, ts: float = 0.0) -> None:
        if self.done:
            return
        self.last_ts = ts
        try:
            events = self.server.feed(data)
        except DecodeError as err:
            self._fail(err)
            return
        self.server_events(events, frame)

    def server_events(self, events: list[rec.Event], frame: int = 0) -> None:
        """The server's record-layer events, as :meth:`client_events`."""
        if self.done:
            return
        for kind, a, b in events:
            if kind == rec.HANDSHAKE:
                if a == HS_SERVER_HELLO and b is not None:
                    self._server_hello(b, frame)
                elif a == HS_HELLO_RETRY_REQUEST_DRAFT:
                    self.hrr = True
                    self._set_tls13_rules()
                elif self.server_hello is not None:
                    if self.after_sh is None:
                        self.after_sh = a
                    if a == HS_NEW_SESSION_TICKET and b is not None:
                        try:
                            self.ticket = parse_new_session_ticket(b)
                        except DecodeError as err:
                            self._fail(err)
            elif kind == rec.CCS:
                self.server_ccs = True
                if self.server_hello is not None and self.after_sh is None:
                    self.after_sh = AFTER_SH_CCS
            elif kind == rec.APPLICATION_DATA or kind == rec.ENCRYPTED_HANDSHAKE:
                if self.server_hello is not None and self.after_sh is None:
                    self.after_sh = AFTER_SH_ENCRYPTED
            elif kind == rec.ALERT:
                if self.server_hello is not None and self.after_sh is None:
                    self.after_sh = AFTER_SH_ALERT
                self._alert(a, b, from_server=True)
            elif kind == rec.SSLV2_OTHER:
                self.sslv2_server = True
                self.done = True
            if self.done:
                return
        self._check_done()

    def handshake_bytes(self, from_client: bool, data: bytes, frame: int = 0) -> None:
        """Handshake-layer bytes that come without TLS records (QUIC CRYPTO frames, reassembled
        DTLS messages): split into messages by the same stream code and fed as events."""
        if self.done:
            return
        try:
            events = (self.client if from_client else self.server).handshake_bytes(data)
        except DecodeError as err:
            self._fail(err)
            return
        if from_client:
            self.client_events(events, frame)
        else:
            self.server_events(events, frame)

    def fail(self, err: DecodeError) -> None:
        """A record layer outside this module (QUIC, DTLS) found the peer's bytes malformed."""
        self._fail(err)

    def finish(self) -> None:
        """The connection ended (or the capture did): nothing more will come."""
        self.done = True

    # -- internals -------------------------------------------------------------------------

    def _client_hello(self, body: bytes, frame: int) -> None:
        try:
            self.client_hellos.append(parse_client_hello(body))
        except DecodeError as err:
            self._fail(err)
            return
        if not self.ch_frame:
            self.ch_frame = frame
            self.ch_ts = self.last_ts

    def _server_hello(self, body: bytes, frame: int) -> None:
        try:
            sh = parse_server_hello(body)
        except DecodeError as err:
            self._fail(err)
            return
        if sh.tls13:
            self._set_tls13_rules()
        if sh.is_hrr:
            self.hrr = True
            return
        if self.server_hello is None:
            self.server_hello = sh
            self.sh_frame = frame
            self.sh_ts = self.last_ts
            self._records_at_sh = self.client.records + self.server.records

    def _set_tls13_rules(self) -> None:
        """TLS 1.3: ChangeCipherSpec is a compatibility no-op; plaintext handshake stays plaintext."""
        for stream in (self.client, self.server):
            stream.encrypt_after_ccs = False
            stream.encrypted = False

    def _alert(self, level: int | None, desc: int | None, from_server: bool) -> None:
        if self.alert is None:
            self.alert = (level, desc)
            self.alert_from_server = from_server
        if level == ALERT_FATAL or level is None and not self._handshake_complete():
            # A fatal alert (or an encrypted one mid-handshake) ends the handshake.
            self.done = True

    def _fail(self, err: DecodeError) -> None:
        self.error = "oversized" if isinstance(err, rec.OversizedMessage) else "malformed"
        self.error_detail = str(err)
        self.done = True

    def _handshake_complete(self) -> bool:
        sh = self.server_hello
        if sh is None:
            return False
        if sh.tls13:
            return self.client_encrypted_after_sh
        return self.client_ccs and self.server_ccs

    def _check_done(self) -> None:
        if self._handshake_complete():
            self.done = True
            return
        records = self.server.records + self.client.records
        if self.server_hello is None:
            if records > MAX_RECORDS_BEFORE_SERVER_HELLO:
                self.done = True
        elif records - self._records_at_sh > MAX_RECORDS_AFTER_SERVER_HELLO:
            self.done = True

    # -- derived facts ---------------------------------------------------------------------

    @property
    def established(self) -> bool:
        """Both sides finished the handshake and no fatal alert came first."""
        fatal = self.alert is not None and self.alert[0] == ALERT_FATAL
        return self._handshake_complete() and not fatal

    def alert_text(self) -> str | None:
        alert = self.alert
        if alert is None:
            return None
        level: int | None = alert[0]
        desc: int | None = alert[1]
        if level is None:
            return "encrypted"
        lvl = ALERT_LEVEL_NAMES.get(level, str(level))
        name = ALERT_NAMES.get(desc, str(desc)) if desc is not None else str(desc)
        return f"{lvl}:{name}"
