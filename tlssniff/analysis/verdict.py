"""The per-connection verdict: what the client offered and how the server answered.

The field names of :meth:`ConnectionVerdict.to_dict` are a public interface (users script
against the JSONL output); add fields, never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from json.encoder import encode_basestring_ascii as _json_string  # C; what json.dumps uses
from typing import Final


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


RESUMED_HANDSHAKES: Final = frozenset({Handshake.SESSION_ID, Handshake.TICKET, Handshake.PSK})


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


@dataclass(slots=True, init=False)
class ConnectionVerdict:
    """One TLS connection as tlssniff saw it."""

    ts: float  # first packet of the connection, epoch seconds
    client: str  # "ip:port", IPv6 in brackets
    server: str
    transport: str = "tcp"
    starttls: str | None = None  # the plaintext protocol upgraded to TLS ("smtp", "imap", ...)
    preamble: str | None = None  # what came before the TLS ("proxy-v2", "socks5", ...: verdicts.md)
    proxied_client: str | None = None  # "ip:port" of the client a PROXY protocol header named
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
    # TLS 1.3 ticket key name (cluster diagnostics): the first 16 bytes (hex) of the first PSK
    # identity when it is long enough to be a ticket in the RFC 5077 §4 layout (OpenSSL,
    # GnuTLS, nginx, haproxy); an inference from the layout, like ticket_key_name.
    psk_key_name: str | None = None

    def __init__(
        self,
        ts: float,
        client: str,
        server: str,
        transport: str = "tcp",
        starttls: str | None = None,
        preamble: str | None = None,
        proxied_client: str | None = None,
        sni: str | None = None,
        alpn: str | None = None,
        alpn_offered: list[str] | None = None,
        version: str | None = None,
        cipher: str | None = None,
        offered: Offered = Offered.NONE,
        handshake: Handshake = Handshake.UNKNOWN,
        hrr: bool = False,
        early_data: EarlyData = EarlyData.NONE,
        established: bool = False,
        note: Note | None = None,
        alert: str | None = None,
        session_id: str | None = None,
        ticket_len: int = 0,
        psk_identities: int = 0,
        issued_session_id: str | None = None,
        issued_ticket: bool = False,
        ticket_lifetime: int | None = None,
        frames: list[int] | None = None,
        capture: str | None = None,
        ja4: str | None = None,
        ja4_base: str | None = None,
        ticket_key_name: str | None = None,
        ticket_hash: str | None = None,
        psk_identity_hash: str | None = None,
        issued_ticket_key_name: str | None = None,
        issued_ticket_hash: str | None = None,
        client_hello_ts: float | None = None,
        server_hello_ts: float | None = None,
        handshake_end_ts: float | None = None,
        psk_key_name: str | None = None,
    ) -> None:
        # Written out rather than generated by @dataclass: a compiled (setup.py) __init__
        # is a tenth of the generated one's cost, and one is made per connection.
        self.ts = ts
        self.client = client
        self.server = server
        self.transport = transport
        self.starttls = starttls
        self.preamble = preamble
        self.proxied_client = proxied_client
        self.sni = sni
        self.alpn = alpn
        self.alpn_offered = [] if alpn_offered is None else alpn_offered
        self.version = version
        self.cipher = cipher
        self.offered = offered
        self.handshake = handshake
        self.hrr = hrr
        self.early_data = early_data
        self.established = established
        self.note = note
        self.alert = alert
        self.session_id = session_id
        self.ticket_len = ticket_len
        self.psk_identities = psk_identities
        self.issued_session_id = issued_session_id
        self.issued_ticket = issued_ticket
        self.ticket_lifetime = ticket_lifetime
        self.frames = [] if frames is None else frames
        self.capture = capture
        self.ja4 = ja4
        self.ja4_base = ja4_base
        self.ticket_key_name = ticket_key_name
        self.ticket_hash = ticket_hash
        self.psk_identity_hash = psk_identity_hash
        self.issued_ticket_key_name = issued_ticket_key_name
        self.issued_ticket_hash = issued_ticket_hash
        self.client_hello_ts = client_hello_ts
        self.server_hello_ts = server_hello_ts
        self.handshake_end_ts = handshake_end_ts
        self.psk_key_name = psk_key_name

    def __reduce__(self) -> tuple:
        """Pickled by its fields in __init__ order (``--jobs`` workers send verdicts home)."""
        return (ConnectionVerdict, tuple([getattr(self, name) for name in _FIELDS]))

    @property
    def resumed(self) -> bool:
        return self.handshake in RESUMED_HANDSHAKES

    @property
    def refused(self) -> bool:
        """A resumption offer the server answered with a full handshake."""
        return self.offered is not Offered.NONE and self.handshake is Handshake.FULL

    def to_dict(self) -> dict:
        return {
            "ts": _usec(self.ts) / 1_000_000,
            "client": self.client,
            "server": self.server,
            "transport": self.transport,
            "starttls": self.starttls,
            "preamble": self.preamble,
            "proxied_client": self.proxied_client,
            "sni": self.sni,
            "version": self.version,
            "offered": VALUE[self.offered],
            "handshake": VALUE[self.handshake],
            "resumed": self.resumed,
            "hrr": self.hrr,
            "early_data": VALUE[self.early_data],
            "established": self.established,
            "alpn": self.alpn,
            "alpn_offered": self.alpn_offered,
            "cipher": self.cipher,
            "note": VALUE[self.note] if self.note else None,
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
            "psk_key_name": self.psk_key_name,
        }

    def to_json_line(self) -> str:
        """``json.dumps(self.to_dict())`` with compact separators and a newline, built directly:
        the JSONL output writes one per connection (compiled: 2.0 µs against 10.8 µs for the
        dict and the encoder, verdicts of captures/demo.pcapng). tests/test_native.py holds the
        two to the same text."""
        # Strings tlssniff makes itself (endpoints, names, hex, fingerprints) need no escaping;
        # the ones from the wire or the user (SNI, ALPN, capture path) go through the encoder.
        # Runs of fields that are mostly null or few-valued come as one piece each (a constant,
        # or a table's text with the keys in it): the line was ~80 pieces, each a call and a
        # copy (compiled: the build alone was 6,100 instructions a line; callgrind, the first
        # 300,000 frames of bench/out/handshakes.pcap, ``analyze -f jsonl``).
        if (self.starttls is None and self.preamble is None and self.proxied_client is None
                and self.transport == "tcp"):
            head = _TCP_PLAIN
        else:
            head = (f'"transport":"{self.transport}","starttls":{_own(self.starttls)},'
                    f'"preamble":{_own(self.preamble)},"proxied_client":{_own(self.proxied_client)},')
        if (self.ticket_key_name is None and self.ticket_hash is None
                and self.psk_identity_hash is None and self.issued_ticket_key_name is None
                and self.issued_ticket_hash is None):
            hashes = _NO_HASHES
        else:
            hashes = (
                f'"ticket_key_name":{_own(self.ticket_key_name)},"ticket_hash":{_own(self.ticket_hash)},'
                f'"psk_identity_hash":{_own(self.psk_identity_hash)},'
                f'"issued_ticket_key_name":{_own(self.issued_ticket_key_name)},'
                f'"issued_ticket_hash":{_own(self.issued_ticket_hash)},'
            )
        alpn_offered = self.alpn_offered
        if not alpn_offered:
            offered_text = "[]"
        elif len(alpn_offered) == 1:
            offered_text = "[" + _wire_text(alpn_offered[0]) + "]"
        else:
            offered_text = "[" + ",".join([_wire_text(a) for a in alpn_offered]) + "]"
        frames = self.frames
        if len(frames) == 2:
            frames_text = f"[{frames[0]},{frames[1]}]"
        else:
            frames_text = "[" + ",".join([str(f) for f in frames]) + "]"
        return (
            f'{{"ts":{_ts_text(self.ts)},"client":"{self.client}","server":"{self.server}",'
            f'{head}"sni":{_wire_text(self.sni)},"version":{_own_name(self.version)},'
            f'{_outcome_text(self.offered, self.handshake, self.hrr, self.early_data, self.established)}'
            f'"alpn":{_wire_text(self.alpn)},"alpn_offered":{offered_text},'
            f'"cipher":{_own_name(self.cipher)},'
            f'"note":{"null" if self.note is None else _NOTE_TEXT[self.note]},'
            f'"alert":{_own_name(self.alert)},"session_id":{_own(self.session_id)},'
            f'"ticket_len":{self.ticket_len},"psk_identities":{self.psk_identities},'
            f'"issued_session_id":{_own(self.issued_session_id)},'
            f'"issued_ticket":{"true" if self.issued_ticket else "false"},'
            f'"ticket_lifetime":{"null" if self.ticket_lifetime is None else self.ticket_lifetime},'
            f'"frames":{frames_text},'
            f'"capture":{_capture_text(self.capture)},"ja4":{_own_name(self.ja4)},"ja4_base":{_own_name(self.ja4_base)},'
            f'{hashes}'
            f'"client_hello_ts":{_opt_ts_text(self.client_hello_ts)},'
            f'"server_hello_ts":{_opt_ts_text(self.server_hello_ts)},'
            f'"handshake_end_ts":{_opt_ts_text(self.handshake_end_ts)},'
            f'"psk_key_name":{_own(self.psk_key_name)}}}\n'
        )


# Every field is an __init__ parameter, in field order.
_FIELDS: Final = tuple([f.name for f in fields(ConnectionVerdict)])

# The string value of every verdict enum member: ``member.value`` goes through the enum
# descriptor machinery, a dict lookup does not.
VALUE: Final[dict[Enum, str]] = {m: m.value for e in (Handshake, Offered, EarlyData, Note) for m in e}
_BOOL: Final = {True: "true", False: "false"}

# to_json_line's constant runs (see there).
_TCP_PLAIN: Final = '"transport":"tcp","starttls":null,"preamble":null,"proxied_client":null,'
_NO_HASHES: Final = ('"ticket_key_name":null,"ticket_hash":null,"psk_identity_hash":null,'
                     '"issued_ticket_key_name":null,"issued_ticket_hash":null,')
_NOTE_TEXT: Final[dict[Note, str]] = {m: f'"{m.value}"' for m in Note}


def _outcome_text(offered: Offered, handshake: Handshake, hrr: bool, early_data: EarlyData,
                  established: bool) -> str:
    """The JSON text from ``"offered"`` to ``"established"`` (with its comma), by a table of
    the few combinations seen (bounded: 4 x 5 x 2 x 3 x 2)."""
    key = (offered, handshake, hrr, early_data, established)
    text = _OUTCOME_TEXT.get(key)
    if text is None:
        text = _OUTCOME_TEXT[key] = (
            f'"offered":"{VALUE[offered]}","handshake":"{VALUE[handshake]}",'
            f'"resumed":{_BOOL[handshake in RESUMED_HANDSHAKES]},"hrr":{_BOOL[hrr]},'
            f'"early_data":"{VALUE[early_data]}","established":{_BOOL[established]},'
        )
    return text


_OUTCOME_TEXT: Final[dict[tuple[Offered, Handshake, bool, EarlyData, bool], str]] = {}


def _usec(x: float) -> int:
    """Timestamps are reported to the microsecond (what pcap records; pcapng may carry more)."""
    return int(x * 1_000_000 + 0.5)


def _ts(x: float | None) -> float | None:
    return None if x is None else _usec(x) / 1_000_000


def _ts_text(x: float) -> str:
    """The JSON text of ``_usec(x) / 1e6``: the digits ``repr`` gives that float, without the
    float-to-decimal conversion (for timestamps below 2**33 s, where a microsecond step is
    more than a float's spacing, the shortest repr is exactly these digits)."""
    us = _usec(x)
    sign = ""
    if us < 0:
        sign, us = "-", -us
    sec = us // 1_000_000
    # ``%``, not ``us - sec * 1_000_000``: compiled, a product with a factor of 2**30 or more
    # leaves the machine int (mypyc's overflow check is conservative) and boxes both sides;
    # that made this function 2,600 instructions a call (callgrind, the first 300,000 frames
    # of bench/out/handshakes.pcap, `tlssniff analyze -f jsonl`).
    frac = us % 1_000_000
    if sec >= 1 << 33 or (not sec and frac and frac < 100):  # repr's exponent notation ranges
        return repr(us / 1_000_000) if not sign else repr(-us / 1_000_000)
    if sign:
        head = f"-{sec}."
    else:
        # Consecutive timestamps share their second: its text is made once (compiled, the
        # four timestamps of a line cost 1,800 instructions each before, two int-to-text
        # conversions and a four-piece build; callgrind, the first 300,000 frames of
        # bench/out/handshakes.pcap, ``analyze -f jsonl``).
        last = _LAST_SECOND
        if last.sec != sec:
            last.sec = sec
            last.text = f"{sec}."
        head = last.text
    if not frac:
        return head + "0"
    # The six digits without their trailing zeros, from two tables of three digits: no
    # int-to-text conversion, no slice, no loop (compiled: 1,150 instructions a call before, a
    # loop of divisions, ``str`` and a slice; callgrind, the first 300,000 frames of
    # bench/out/handshakes.pcap, ``analyze -f jsonl``).
    # One build of three pieces, not two concatenations (300 instructions each).
    low = frac % 1000
    if not low:
        return f"{head}{_DIGITS_TRIMMED[frac // 1000]}"
    return f"{head}{_DIGITS[frac // 1000]}{_DIGITS_TRIMMED[low]}"


class _Second:
    """The text of the last whole second :func:`_ts_text` wrote (``"1700000000."``)."""

    def __init__(self) -> None:
        self.sec = -1
        self.text = ""


_LAST_SECOND: Final = _Second()

# "000" .. "999", and the same without trailing zeros ("120" -> "12", "000" -> ""): the
# fraction digits of _ts_text, three at a time (made once, never changed).
_DIGITS: Final[list[str]] = [f"{i:03d}" for i in range(1000)]
_DIGITS_TRIMMED: Final[list[str]] = [d.rstrip("0") for d in _DIGITS]




def _opt_ts_text(x: float | None) -> str:
    return "null" if x is None else _ts_text(x)


def _own(s: str | None) -> str:
    """A string tlssniff made (no quote, backslash or control character can be in it)."""
    return "null" if s is None else f'"{s}"'


def _own_name(s: str | None) -> str:
    """``_own`` of a value few connections differ in (version, cipher, JA4, alert): each
    quoted once (a dict lookup instead of building the text)."""
    if s is None:
        return "null"
    text = _OWN_TEXT.get(s)
    if text is None:
        if len(_OWN_TEXT) >= 4096:
            _OWN_TEXT.clear()
        text = _OWN_TEXT[s] = f'"{s}"'
    return text


_OWN_TEXT: Final[dict[str, str]] = {}


def _opt(s: str | None) -> str:
    return "null" if s is None else _json_string(s)


def _encoded_once(table: dict[str, str], s: str | None) -> str:
    """``_opt`` of a value that recurs, encoded once and kept in ``table`` (bounded: cleared
    at 4,096 entries). A dict lookup instead of a call of the encoder: 700 instructions a
    value (callgrind, the first 300,000 frames of bench/out/handshakes.pcap)."""
    if s is None:
        return "null"
    text = table.get(s)
    if text is None:
        if len(table) >= 4096:
            table.clear()
        text = table[s] = _json_string(s)
    return text


def _wire_text(s: str | None) -> str:
    """A value from the wire that recurs (SNI, ALPN names)."""
    return _encoded_once(_WIRE_TEXT, s)


_WIRE_TEXT: Final[dict[str, str]] = {}


def _capture_text(s: str | None) -> str:
    """A capture path: the same few paths on every line."""
    return _encoded_once(_CAPTURE_TEXT, s)


_CAPTURE_TEXT: Final[dict[str, str]] = {}
