"""The per-connection verdict: what the client offered and how the server answered.

The field names of :meth:`ConnectionVerdict.to_dict` are a public interface (users script
against the JSONL output); add fields, never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Handshake(str, Enum):
    """How the handshake ran, as the wire proves it."""

    FULL = "full"  # a new session was negotiated (whatever the client offered)
    SESSION_ID = "session_id"  # TLS <= 1.2 abbreviated handshake on a cached session id
    TICKET = "ticket"  # TLS <= 1.2 abbreviated handshake on an RFC 5077 ticket
    PSK = "psk"  # TLS 1.3 resumption: the ServerHello carries pre_shared_key
    UNKNOWN = "unknown"  # the capture does not prove either way (see ``note``)


class Offered(str, Enum):
    """What the client presented for resumption in its (last) ClientHello."""

    NONE = "none"
    SESSION_ID = "session_id"
    TICKET = "ticket"
    PSK = "psk"


class EarlyData(str, Enum):
    """0-RTT: the client's early_data extension and what the wire proves about it."""

    NONE = "none"  # not offered
    OFFERED = "offered"  # offered; the server's answer is encrypted (PSK accepted)
    REJECTED = "rejected"  # offered, and the PSK was refused or a HelloRetryRequest followed


RESUMED_HANDSHAKES = frozenset({Handshake.SESSION_ID, Handshake.TICKET, Handshake.PSK})


class Note(str, Enum):
    """Why a verdict is ``unknown`` (or incomplete): said, never guessed."""

    MISSING_START = "missing_start"  # the capture starts after the ClientHello
    NO_SERVER_HELLO = "no_server_hello"  # ClientHello seen, the server's answer not
    SERVER_HELLO_ONLY = "server_hello_only"  # TLS <= 1.2: nothing after the ServerHello
    SERVER_ALERT = "server_alert"  # the server answered the ClientHello with an alert
    GAP = "gap"  # bytes missing from the capture inside the handshake
    MALFORMED = "malformed"  # the handshake bytes do not parse as TLS
    OVERSIZED = "oversized"  # a handshake message larger than the buffering limit
    EVICTED = "evicted"  # dropped from the flow table before a verdict
    SSLV2 = "sslv2"  # an SSL 2.0 handshake: no resumption semantics tlssniff reads


@dataclass(slots=True)
class ConnectionVerdict:
    """One TLS connection as tlssniff saw it."""

    ts: float  # first packet of the connection, epoch seconds
    client: str  # "ip:port", IPv6 in brackets
    server: str
    transport: str = "tcp"
    starttls: str | None = None  # the plaintext protocol upgraded to TLS ("smtp", "imap", ...)
    sni: str | None = None
    alpn: str | None = None  # selected by the server when visible, else None
    alpn_offered: list[str] = field(default_factory=list)
    version: str | None = None  # negotiated: TLSv1.0 .. TLSv1.3
    cipher: str | None = None
    offered: Offered = Offered.NONE
    handshake: Handshake = Handshake.UNKNOWN
    hrr: bool = False
    early_data: EarlyData = EarlyData.NONE
    established: bool = False
    note: Note | None = None
    alert: str | None = None  # first alert seen in the clear, e.g. "fatal:handshake_failure"
    session_id: str | None = None  # client's legacy session id (hex), when non-empty
    ticket_len: int = 0  # length of the ticket the client presented
    psk_identities: int = 0
    issued_session_id: str | None = None  # TLS <= 1.2: the id a full handshake issued
    issued_ticket: bool = False  # TLS <= 1.2: NewSessionTicket seen in the clear
    ticket_lifetime: int | None = None  # its lifetime hint, seconds
    frames: list[int] = field(default_factory=list)  # frame numbers of CH, SH (evidence)
    capture: str | None = None  # the file it came from
    # Session linking and client fingerprints (analysis/diagnostics.py, docs/diagnostics.md).
    # Hashes are the first 16 hex digits of a SHA-256: enough to link, too short to replay.
    ja4: str | None = None  # JA4 of the (first) ClientHello
    ja4_base: str | None = None  # the same without resumption-dependent extensions (tls/ja4.py)
    ticket_key_name: str | None = None  # the first 16 bytes (hex) of the ticket presented
    ticket_hash: str | None = None
    psk_identity_hash: str | None = None  # TLS 1.3: the first pre_shared_key identity
    issued_ticket_key_name: str | None = None  # TLS <= 1.2 NewSessionTicket in the clear
    issued_ticket_hash: str | None = None
    client_hello_ts: float | None = None  # capture time of the ClientHello
    server_hello_ts: float | None = None
    handshake_end_ts: float | None = None  # the last handshake bytes tlssniff read

    @property
    def resumed(self) -> bool:
        return self.handshake in RESUMED_HANDSHAKES

    @property
    def refused(self) -> bool:
        """A resumption offer the server answered with a full handshake."""
        return self.offered is not Offered.NONE and self.handshake is Handshake.FULL

    def to_dict(self) -> dict:
        return {
            "ts": round(self.ts, 6),
            "client": self.client,
            "server": self.server,
            "transport": self.transport,
            "starttls": self.starttls,
            "sni": self.sni,
            "version": self.version,
            "offered": self.offered.value,
            "handshake": self.handshake.value,
            "resumed": self.resumed,
            "hrr": self.hrr,
            "early_data": self.early_data.value,
            "established": self.established,
            "alpn": self.alpn,
            "alpn_offered": self.alpn_offered,
            "cipher": self.cipher,
            "note": self.note.value if self.note else None,
            "alert": self.alert,
            "session_id": self.session_id,
            "ticket_len": self.ticket_len,
            "psk_identities": self.psk_identities,
            "issued_session_id": self.issued_session_id,
            "issued_ticket": self.issued_ticket,
            "ticket_lifetime": self.ticket_lifetime,
            "frames": self.frames,
            "capture": self.capture,
            "ja4": self.ja4,
            "ja4_base": self.ja4_base,
            "ticket_key_name": self.ticket_key_name,
            "ticket_hash": self.ticket_hash,
            "psk_identity_hash": self.psk_identity_hash,
            "issued_ticket_key_name": self.issued_ticket_key_name,
            "issued_ticket_hash": self.issued_ticket_hash,
            "client_hello_ts": _ts(self.client_hello_ts),
            "server_hello_ts": _ts(self.server_hello_ts),
            "handshake_end_ts": _ts(self.handshake_end_ts),
        }


def _ts(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
