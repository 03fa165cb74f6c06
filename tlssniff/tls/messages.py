"""Handshake message structures and their bounds-checked parsers (sans-IO, pure functions).

Each ``parse_*`` takes the body of one complete handshake message and returns a frozen value or
raises :class:`DecodeError`; nothing here reads past the end of its input or trusts a length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tlssniff.tls.wire import (
    EXT_ALPN,
    EXT_EARLY_DATA,
    EXT_KEY_SHARE,
    EXT_KEY_SHARE_DRAFT,
    EXT_PRE_SHARED_KEY,
    EXT_SERVER_NAME,
    EXT_SESSION_TICKET,
    EXT_SIGNATURE_ALGORITHMS,
    EXT_SUPPORTED_VERSIONS,
    HRR_RANDOM,
    HS_CLIENT_HELLO,
    HS_NEW_SESSION_TICKET,
    HS_SERVER_HELLO,
    SNI_HOST_NAME,
    SSL2_MT_CLIENT_HELLO,
    TLS13_DRAFT_HI,
    TLS13_EXPERIMENT_HI,
    TLS13_FB_HI,
    is_tls13,
)


# (kind, start, end) of a secret inside a message body: see secret_spans.
Spans = list[tuple[str, int, int]]


class DecodeError(ValueError):
    """The peer's bytes do not parse as the TLS structure they claim to be (the remote's fault)."""


# Hello values are plain slotted dataclasses, not frozen ones: a frozen dataclass's __init__
# costs ~3 µs more per hello (object.__setattr__ per field), on a path run per connection.
# Treat them as immutable all the same. Their __init__ is written out (init=False): compiled
# (setup.py) it costs a tenth of the one @dataclass generates.
@dataclass(slots=True, init=False)
class ClientHello:
    legacy_version: int
    session_id: bytes
    # The cipher_suites list as on the wire (two bytes a suite): ``cipher_suites`` reads it.
    # Only JA4 needs the numbers, once per distinct hello shape (its cache is keyed on these
    # bytes): making the tuple of every hello was 4% of the instructions of the first 300,000
    # frames of bench/out/handshakes.pcap (callgrind, ``analyze -f jsonl``), its JA4 key 2%.
    cipher_bytes: bytes
    extension_types: tuple[int, ...]
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    supported_versions: tuple[int, ...] = ()
    # None: no SessionTicket extension; b"": the empty extension (asks for a ticket)
    ticket: bytes | None = None
    psk_identities: tuple[bytes, ...] = ()
    early_data: bool = False
    key_share_groups: tuple[int, ...] = ()
    sslv2: bool = False
    # For the JA4 fingerprint (tlssniff.tls.ja4): signature_algorithms in wire order, as on
    # the wire (``signature_algorithms`` reads it), and the first ALPN value's raw bytes
    # (``alpn`` is decoded text).
    sigalg_bytes: bytes = b""
    alpn_first: bytes = b""

    def __init__(
        self,
        legacy_version: int,
        session_id: bytes,
        cipher_suites: tuple[int, ...],
        extension_types: tuple[int, ...],
        sni: str | None = None,
        alpn: tuple[str, ...] = (),
        supported_versions: tuple[int, ...] = (),
        ticket: bytes | None = None,
        psk_identities: tuple[bytes, ...] = (),
        early_data: bool = False,
        key_share_groups: tuple[int, ...] = (),
        sslv2: bool = False,
        signature_algorithms: tuple[int, ...] = (),
        alpn_first: bytes = b"",
        cipher_bytes: bytes | None = None,
        sigalg_bytes: bytes | None = None,
    ) -> None:
        """``cipher_bytes``/``sigalg_bytes``: the lists as on the wire (the parser's), instead
        of ``cipher_suites``/``signature_algorithms``."""
        self.legacy_version = legacy_version
        self.session_id = session_id
        self.cipher_bytes = _pack_u16s(cipher_suites) if cipher_bytes is None else cipher_bytes
        self.extension_types = extension_types
        self.sni = sni
        self.alpn = alpn
        self.supported_versions = supported_versions
        self.ticket = ticket
        self.psk_identities = psk_identities
        self.early_data = early_data
        self.key_share_groups = key_share_groups
        self.sslv2 = sslv2
        self.sigalg_bytes = _pack_u16s(signature_algorithms) if sigalg_bytes is None else sigalg_bytes
        self.alpn_first = alpn_first

    @property
    def cipher_suites(self) -> tuple[int, ...]:
        return _u16s(self.cipher_bytes, 0, len(self.cipher_bytes))

    @property
    def signature_algorithms(self) -> tuple[int, ...]:
        return _u16s(self.sigalg_bytes, 0, len(self.sigalg_bytes))

    @property
    def offers_tls13(self) -> bool:
        return any(is_tls13(v) for v in self.supported_versions)


@dataclass(slots=True, init=False)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    extension_types: tuple[int, ...] = ()
    selected_version: int | None = None
    psk_selected: bool = False
    alpn: str | None = None
    ticket_ext: bool = False  # the server will send a NewSessionTicket (RFC 5077 §3.2)
    key_share_group: int | None = None
    is_hrr: bool = False
    # Derived once here: the tracker asks for them on every record of the connection.
    version: int = field(init=False)
    tls13: bool = field(init=False)

    def __init__(
        self,
        legacy_version: int,
        random: bytes,
        session_id: bytes,
        cipher_suite: int,
        extension_types: tuple[int, ...] = (),
        selected_version: int | None = None,
        psk_selected: bool = False,
        alpn: str | None = None,
        ticket_ext: bool = False,
        key_share_group: int | None = None,
        is_hrr: bool = False,
    ) -> None:
        self.legacy_version = legacy_version
        self.random = random
        self.session_id = session_id
        self.cipher_suite = cipher_suite
        self.extension_types = extension_types
        self.selected_version = selected_version
        self.psk_selected = psk_selected
        self.alpn = alpn
        self.ticket_ext = ticket_ext
        self.key_share_group = key_share_group
        self.is_hrr = is_hrr
        self.version = selected_version if selected_version is not None else legacy_version
        self.tls13 = is_tls13(self.version)


@dataclass(frozen=True, slots=True)
class NewSessionTicket:
    lifetime_hint: int
    ticket: bytes = field(repr=False)


class Reader:
    """A bounds-checked cursor over one structure (aioquic's Buffer idea, minimal)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise DecodeError(f"needs {n} bytes, {self.end - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        if self.pos >= self.end:
            raise DecodeError("needs 1 byte, 0 left")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise DecodeError(f"needs 2 bytes, {self.end - self.pos} left")
        v = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return v

    def u24(self) -> int:
        return (self.u8() << 16) | self.u16()

    def u32(self) -> int:
        return (self.u16() << 16) | self.u16()

    def vector(self, length_size: int) -> bytes:
        n = self.u8() if length_size == 1 else self.u16() if length_size == 2 else self.u24()
        return self.take(n)

    def sub(self, length_size: int) -> Reader:
        """A reader over the next length-prefixed vector; advances past it."""
        n = self.u8() if length_size == 1 else self.u16()
        if self.pos + n > self.end:
            raise DecodeError(f"vector of {n} bytes, {self.end - self.pos} left")
        r = Reader(self.data, self.pos, self.pos + n)
        self.pos += n
        return r


def _parse_sni(r: Reader) -> str | None:
    names = r.sub(2)
    while names.remaining():
        kind = names.u8()
        name = names.vector(2)
        if kind == SNI_HOST_NAME:
            return name.decode("ascii", "replace")
    return None


def _parse_alpn_list(r: Reader) -> tuple[str, ...]:
    protos = r.sub(2)
    out = []
    while protos.remaining():
        out.append(protos.vector(1).decode("ascii", "replace"))
    return tuple(out)


def _parse_psk_identities(r: Reader, spans: Spans | None = None) -> tuple[bytes, ...]:
    ids = r.sub(2)
    out = []
    while ids.remaining():
        start = ids.pos + 2
        identity = ids.vector(2)
        out.append(identity)
        if spans is not None:
            spans.append(("psk", start, start + len(identity)))
        ids.take(4)  # obfuscated_ticket_age
    if not out:
        raise DecodeError("pre_shared_key with no identity")
    return tuple(out)


def _u16(data: bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise DecodeError(f"needs 2 bytes at offset {pos}, {end - pos} left")
    return (data[pos] << 8) | data[pos + 1]




def _pack_u16s(values: tuple[int, ...]) -> bytes:
    return b"".join([v.to_bytes(2, "big") for v in values])


def _u16s(data: bytes, pos: int, length: int) -> tuple[int, ...]:
    if length % 2:
        raise DecodeError("odd length in a list of 16-bit values")
    if pos + length > len(data):
        raise DecodeError(f"list of {length} bytes runs past the message")
    # A comprehension rather than struct: compiled (setup.py) it is a C loop.
    return tuple([data[i] << 8 | data[i + 1] for i in range(pos, pos + length, 2)])


def parse_client_hello(body: bytes, spans: Spans | None = None) -> ClientHello:
    # Hand-written offset arithmetic rather than the Reader: this runs once per connection and
    # was the costliest function of a handshake-heavy capture (bench/bench.py, cProfile).
    # Every length is checked against the end of its enclosing structure.
    n = len(body)
    if n < 35:
        raise DecodeError(f"ClientHello of {n} bytes")
    legacy_version = (body[0] << 8) | body[1]
    sid_len = body[34]
    pos = 35 + sid_len
    if sid_len > 32 or pos > n:
        raise DecodeError(f"session id of {sid_len} bytes")
    session_id = body[35:pos]
    if spans is not None and sid_len:
        spans.append(("sid", 35, pos))
    cs_len = _u16(body, pos, n)
    pos += 2
    if pos + cs_len > n:
        raise DecodeError(f"cipher suites of {cs_len} bytes, {n - pos} left")
    if cs_len % 2:
        raise DecodeError("odd length in a list of 16-bit values")
    cipher_bytes = body[pos : pos + cs_len]
    pos += cs_len
    if pos >= n:
        raise DecodeError("no compression methods")
    pos += 1 + body[pos]
    if pos > n:
        raise DecodeError("compression methods past the end")
    sni = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    ticket = None
    psk: tuple[bytes, ...] = ()
    early = False
    groups: tuple[int, ...] = ()
    sigalgs = b""
    alpn_first = b""
    types = []
    if pos < n:  # extensions are optional before TLS 1.3
        end = pos + 2 + _u16(body, pos, n)
        pos += 2
        if end != n:
            raise DecodeError(f"extensions end at {end}, the hello at {n}")
        while pos < end:
            if pos + 4 > end:
                raise DecodeError("extension header cut short")
            etype = (body[pos] << 8) | body[pos + 1]
            eend = pos + 4 + ((body[pos + 2] << 8) | body[pos + 3])
            pos += 4
            if eend > end:
                raise DecodeError(f"extension {etype} runs past the extensions")
            types.append(etype)
            if etype == EXT_SERVER_NAME:
                # server_name_list<2>: one entry of type host_name(0) in practice (RFC 6066 §3)
                if eend - pos >= 5 and body[pos + 2] == 0:
                    nlen = (body[pos + 3] << 8) | body[pos + 4]
                    if pos + 5 + nlen > eend:
                        raise DecodeError("server name runs past its extension")
                    sni = body[pos + 5 : pos + 5 + nlen].decode("ascii", "replace")
                elif eend > pos:
                    sni = _parse_sni(Reader(body, pos, eend))
            elif etype == EXT_ALPN:
                # protocol_name_list<2>: each name a <1..255> vector (RFC 7301 §3.1)
                lend = pos + 2 + _u16(body, pos, eend)
                if lend != eend:
                    raise DecodeError("ALPN list length does not match its extension")
                k = pos + 2
                names = []
                while k < lend:
                    nxt = k + 1 + body[k]
                    if nxt > lend:
                        raise DecodeError("ALPN name runs past the list")
                    names.append(body[k + 1 : nxt].decode("ascii", "replace"))
                    k = nxt
                alpn = tuple(names)
                if alpn:
                    alpn_first = body[pos + 3 : pos + 3 + body[pos + 2]]
            elif etype == EXT_SIGNATURE_ALGORITHMS and pos + 2 <= eend:  # JA4 only: a bad list is not an error here
                slen = (body[pos] << 8) | body[pos + 1]
                if pos + 2 + slen <= eend and not slen % 2:
                    sigalgs = body[pos + 2 : pos + 2 + slen]
            elif etype == EXT_SUPPORTED_VERSIONS:
                if pos >= eend or pos + 1 + body[pos] > eend:
                    raise DecodeError("supported_versions cut short")
                versions = _u16s(body, pos + 1, body[pos])
            elif etype == EXT_SESSION_TICKET:
                ticket = body[pos:eend]
                if spans is not None and eend > pos:
                    spans.append(("tkt", pos, eend))
            elif etype == EXT_PRE_SHARED_KEY:
                psk = _parse_psk_identities(Reader(body, pos, eend), spans)
            elif etype == EXT_EARLY_DATA:
                early = True
            elif etype == EXT_KEY_SHARE or etype == EXT_KEY_SHARE_DRAFT:
                kend = pos + 2 + _u16(body, pos, eend)
                if kend > eend:
                    raise DecodeError("key_share list runs past its extension")
                k = pos + 2
                gs = []
                while k < kend:
                    if k + 4 > kend:
                        raise DecodeError("key_share entry cut short")
                    gs.append((body[k] << 8) | body[k + 1])
                    k += 4 + ((body[k + 2] << 8) | body[k + 3])
                if k != kend:
                    raise DecodeError("key_share entry runs past the list")
                groups = tuple(gs)
            pos = eend
    return ClientHello(
        legacy_version=legacy_version,
        session_id=session_id,
        cipher_suites=(),
        extension_types=tuple(types),
        sni=sni,
        alpn=alpn,
        # GREASE (RFC 8701) filtered by its low nibbles only, as the JSON output always has
        supported_versions=tuple(v for v in versions if v & 0x0F0F != 0x0A0A),
        ticket=ticket,
        psk_identities=psk,
        early_data=early,
        key_share_groups=groups,
        alpn_first=alpn_first,
        cipher_bytes=cipher_bytes,
        sigalg_bytes=sigalgs,
    )


def parse_sslv2_client_hello(record: bytes) -> ClientHello:
    """An SSL 2.0-compatible ClientHello (RFC 5246 Appendix E.2); ``record`` excludes the 2-byte header."""
    r = Reader(record)
    if r.u8() != SSL2_MT_CLIENT_HELLO:
        raise DecodeError("SSLv2 record is not a CLIENT-HELLO")
    version = r.u16()
    spec_len, sid_len, challenge_len = r.u16(), r.u16(), r.u16()
    if spec_len % 3:
        raise DecodeError("SSLv2 cipher spec length not a multiple of 3")
    specs = r.take(spec_len)
    session_id = r.take(sid_len)
    r.take(challenge_len)
    suites = tuple(
        (specs[i + 1] << 8) | specs[i + 2] for i in range(0, spec_len, 3) if specs[i] == 0
    )
    return ClientHello(
        legacy_version=version,
        session_id=session_id,
        cipher_suites=suites,
        extension_types=(),
        sslv2=True,
    )


def parse_server_hello(body: bytes, spans: Spans | None = None) -> ServerHello:
    # Offset arithmetic like parse_client_hello, for the same reason (once per connection).
    n = len(body)
    if n < 38:
        raise DecodeError(f"ServerHello of {n} bytes")
    legacy_version = (body[0] << 8) | body[1]
    random = body[2:34]
    if (legacy_version >> 8 == TLS13_DRAFT_HI or legacy_version >> 8 == TLS13_FB_HI) and (legacy_version & 0xFF) < 22:
        # TLS 1.3 drafts before 22 (0x7fNN, and Facebook's 0xfbNN numbered after the draft):
        # version field, no session id, no compression method
        session_id = b""
        cipher = (body[34] << 8) | body[35]
        pos = 36
    else:
        sid_len = body[34]
        pos = 35 + sid_len
        if sid_len > 32 or pos + 3 > n:
            raise DecodeError(f"session id of {sid_len} bytes in a ServerHello of {n}")
        session_id = body[35:pos]
        if spans is not None and sid_len:
            spans.append(("sid", 35, pos))
        cipher = (body[pos] << 8) | body[pos + 1]
        pos += 3  # cipher suite and compression method
    selected = None
    psk = False
    alpn = None
    ticket_ext = False
    group = None
    types = []
    if pos < n:
        end = pos + 2 + _u16(body, pos, n)
        pos += 2
        if end != n:
            raise DecodeError(f"extensions end at {end}, the hello at {n}")
        while pos < end:
            if pos + 4 > end:
                raise DecodeError("extension header cut short")
            etype = (body[pos] << 8) | body[pos + 1]
            eend = pos + 4 + ((body[pos + 2] << 8) | body[pos + 3])
            pos += 4
            if eend > end:
                raise DecodeError(f"extension {etype} runs past the extensions")
            types.append(etype)
            if etype == EXT_SUPPORTED_VERSIONS:
                selected = _u16(body, pos, eend)
            elif etype == EXT_PRE_SHARED_KEY:
                psk = True
            elif etype == EXT_ALPN:
                protos = _parse_alpn_list(Reader(body, pos, eend))
                alpn = protos[0] if protos else None
            elif etype == EXT_SESSION_TICKET:
                ticket_ext = True
            elif (etype == EXT_KEY_SHARE or etype == EXT_KEY_SHARE_DRAFT) and eend - pos >= 2:
                group = (body[pos] << 8) | body[pos + 1]
            pos = eend
    hi = legacy_version >> 8
    if selected is None and (hi == TLS13_DRAFT_HI or hi == TLS13_EXPERIMENT_HI or hi == TLS13_FB_HI):
        selected = legacy_version
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher,
        extension_types=tuple(types),
        selected_version=selected,
        psk_selected=psk,
        alpn=alpn,
        ticket_ext=ticket_ext,
        key_share_group=group,
        is_hrr=random == HRR_RANDOM,
    )


def parse_new_session_ticket(body: bytes, spans: Spans | None = None) -> NewSessionTicket:
    """TLS <= 1.2 NewSessionTicket (RFC 5077 §3.3), the only kind sent in the clear."""
    r = Reader(body)
    lifetime = r.u32()
    ticket = r.vector(2)
    if spans is not None and ticket:
        spans.append(("tkt", 6, 6 + len(ticket)))
    return NewSessionTicket(lifetime_hint=lifetime, ticket=ticket)


def secret_spans(mtype: int, body: bytes) -> Spans:
    """Where the values that identify a session lie in one handshake message's ``body``:
    ``(kind, start, end)`` for the session id of a hello (``"sid"``), the session ticket
    (``"tkt"``) and PSK identities (``"psk"``) of a ClientHello, the ticket of a
    NewSessionTicket. Found by the parsers above on their own walk (report redaction uses it);
    a malformed message gives the spans read before the fault."""
    spans: Spans = []
    try:
        if mtype == HS_CLIENT_HELLO:
            parse_client_hello(body, spans)
        elif mtype == HS_SERVER_HELLO:
            parse_server_hello(body, spans)
        elif mtype == HS_NEW_SESSION_TICKET:
            parse_new_session_ticket(body, spans)
    except DecodeError:
        pass
    return spans
