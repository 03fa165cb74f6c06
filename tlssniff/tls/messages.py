"""Handshake message structures and their bounds-checked parsers (sans-IO, pure functions).

Each ``parse_*`` takes the body of one complete handshake message and returns a frozen value or
raises :class:`DecodeError`; nothing here reads past the end of its input or trusts a length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum


class DecodeError(ValueError):
    """The peer's bytes do not parse as the TLS structure they claim to be (the remote's fault)."""


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23
    HEARTBEAT = 24


class HandshakeType(IntEnum):
    HELLO_REQUEST = 0
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    HELLO_VERIFY_REQUEST = 3
    NEW_SESSION_TICKET = 4
    END_OF_EARLY_DATA = 5
    HELLO_RETRY_REQUEST_DRAFT = 6  # TLS 1.3 drafts <= 21 had a message of its own
    ENCRYPTED_EXTENSIONS = 8
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_VERIFY = 15
    CLIENT_KEY_EXCHANGE = 16
    FINISHED = 20
    CERTIFICATE_STATUS = 22


class ExtensionType(IntEnum):
    SERVER_NAME = 0
    SUPPORTED_GROUPS = 10
    ALPN = 16
    SESSION_TICKET = 35
    PRE_SHARED_KEY = 41
    EARLY_DATA = 42
    SUPPORTED_VERSIONS = 43
    KEY_SHARE = 51
    KEY_SHARE_DRAFT = 40  # TLS 1.3 drafts <= 22


# RFC 8446 §4.1.3: a ServerHello with this random is a HelloRetryRequest.
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

TLS13 = 0x0304

_VERSION_NAMES = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}


def version_name(code: int) -> str:
    """Wire version to the name users know; TLS 1.3 drafts and experiments keep their number."""
    name = _VERSION_NAMES.get(code)
    if name:
        return name
    if code >> 8 == 0x7F:
        return f"TLSv1.3-draft{code & 0xFF}"
    if code >> 8 == 0x7E:  # BoringSSL's pre-RFC "TLS 1.3 experiment" code points
        return f"TLSv1.3-experiment{code & 0xFF}"
    if code >> 8 == 0xFB:  # Facebook's pre-RFC code points (0xfb17: draft 23)
        return f"TLSv1.3-fb{code & 0xFF}"
    return f"0x{code:04x}"


def is_tls13(code: int) -> bool:
    """True for TLS 1.3 and its drafts and experiments (all share TLS 1.3's resumption rules)."""
    return code == TLS13 or code >> 8 in (0x7F, 0x7E, 0xFB)


def _is_grease(code: int) -> bool:
    return code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    session_id: bytes
    cipher_suites: tuple[int, ...]
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

    @property
    def offers_tls13(self) -> bool:
        return any(is_tls13(v) for v in self.supported_versions)


@dataclass(frozen=True, slots=True)
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

    @property
    def version(self) -> int:
        return self.selected_version if self.selected_version is not None else self.legacy_version

    @property
    def tls13(self) -> bool:
        return is_tls13(self.version)


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


def _u16_list(r: Reader) -> tuple[int, ...]:
    raw = r.take(r.remaining())
    if len(raw) % 2:
        raise DecodeError("odd length in a list of 16-bit values")
    return struct.unpack(f">{len(raw) // 2}H", raw)


def _parse_extensions(r: Reader) -> list[tuple[int, Reader]]:
    if r.remaining() == 0:  # extensions are optional before TLS 1.3
        return []
    exts = r.sub(2)
    out = []
    while exts.remaining():
        etype = exts.u16()
        out.append((etype, exts.sub(2)))
    if r.remaining():
        raise DecodeError(f"{r.remaining()} bytes after the extensions")
    return out


def _parse_sni(r: Reader) -> str | None:
    names = r.sub(2)
    while names.remaining():
        kind = names.u8()
        name = names.vector(2)
        if kind == 0:
            return name.decode("ascii", "replace")
    return None


def _parse_alpn_list(r: Reader) -> tuple[str, ...]:
    protos = r.sub(2)
    out = []
    while protos.remaining():
        out.append(protos.vector(1).decode("ascii", "replace"))
    return tuple(out)


def _parse_psk_identities(r: Reader) -> tuple[bytes, ...]:
    ids = r.sub(2)
    out = []
    while ids.remaining():
        out.append(ids.vector(2))
        ids.take(4)  # obfuscated_ticket_age
    if not out:
        raise DecodeError("pre_shared_key with no identity")
    return tuple(out)


def parse_client_hello(body: bytes) -> ClientHello:
    r = Reader(body)
    legacy_version = r.u16()
    r.take(32)  # random
    session_id = r.vector(1)
    if len(session_id) > 32:
        raise DecodeError(f"session id of {len(session_id)} bytes")
    suites_raw = r.vector(2)
    if len(suites_raw) % 2:
        raise DecodeError("odd cipher suite list length")
    cipher_suites = struct.unpack(f">{len(suites_raw) // 2}H", suites_raw)
    r.vector(1)  # compression methods
    sni = None
    alpn: tuple[str, ...] = ()
    versions: tuple[int, ...] = ()
    ticket = None
    psk: tuple[bytes, ...] = ()
    early = False
    groups: tuple[int, ...] = ()
    types = []
    for etype, ext in _parse_extensions(r):
        types.append(etype)
        if etype == ExtensionType.SERVER_NAME and ext.remaining():
            sni = _parse_sni(ext)
        elif etype == ExtensionType.ALPN:
            alpn = _parse_alpn_list(ext)
        elif etype == ExtensionType.SUPPORTED_VERSIONS:
            versions = _u16_list(ext.sub(1))
        elif etype == ExtensionType.SESSION_TICKET:
            ticket = ext.take(ext.remaining())
        elif etype == ExtensionType.PRE_SHARED_KEY:
            psk = _parse_psk_identities(ext)
        elif etype == ExtensionType.EARLY_DATA:
            early = True
        elif etype in (ExtensionType.KEY_SHARE, ExtensionType.KEY_SHARE_DRAFT):
            shares = ext.sub(2)
            gs = []
            while shares.remaining():
                gs.append(shares.u16())
                shares.vector(2)
            groups = tuple(gs)
    return ClientHello(
        legacy_version=legacy_version,
        session_id=session_id,
        cipher_suites=cipher_suites,
        extension_types=tuple(types),
        sni=sni,
        alpn=alpn,
        supported_versions=tuple(v for v in versions if not _is_grease(v)),
        ticket=ticket,
        psk_identities=psk,
        early_data=early,
        key_share_groups=groups,
    )


def parse_sslv2_client_hello(record: bytes) -> ClientHello:
    """An SSL 2.0-compatible ClientHello (RFC 5246 Appendix E.2); ``record`` excludes the 2-byte header."""
    r = Reader(record)
    if r.u8() != 1:
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


def parse_server_hello(body: bytes) -> ServerHello:
    r = Reader(body)
    legacy_version = r.u16()
    random = r.take(32)
    if legacy_version >> 8 == 0x7F and (legacy_version & 0xFF) < 22:
        # TLS 1.3 drafts before 22: version field, no session id, no compression method
        session_id = b""
        cipher = r.u16()
    else:
        session_id = r.vector(1)
        if len(session_id) > 32:
            raise DecodeError(f"session id of {len(session_id)} bytes")
        cipher = r.u16()
        r.u8()  # compression method
    selected = None
    psk = False
    alpn = None
    ticket_ext = False
    group = None
    types = []
    for etype, ext in _parse_extensions(r):
        types.append(etype)
        if etype == ExtensionType.SUPPORTED_VERSIONS:
            selected = ext.u16()
        elif etype == ExtensionType.PRE_SHARED_KEY:
            psk = True
        elif etype == ExtensionType.ALPN:
            protos = _parse_alpn_list(ext)
            alpn = protos[0] if protos else None
        elif etype == ExtensionType.SESSION_TICKET:
            ticket_ext = True
        elif etype in (ExtensionType.KEY_SHARE, ExtensionType.KEY_SHARE_DRAFT) and ext.remaining() >= 2:
            group = ext.u16()
    if legacy_version >> 8 in (0x7F, 0x7E, 0xFB) and selected is None:
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


def parse_new_session_ticket(body: bytes) -> NewSessionTicket:
    """TLS <= 1.2 NewSessionTicket (RFC 5077 §3.3), the only kind sent in the clear."""
    r = Reader(body)
    lifetime = r.u32()
    ticket = r.vector(2)
    return NewSessionTicket(lifetime_hint=lifetime, ticket=ticket)
