"""STARTTLS: a plaintext protocol session that upgrades to TLS in the same TCP stream (sans-IO).

:class:`StartTls` is fed both directions' plaintext and says where the client's TLS begins: the
bytes right after the client's upgrade request, once they are a ClientHello. The server's
answer to the request (``220 Ready``, ``+OK``, ``S``, an LDAP ExtendedResponse, ...) always
comes before the client's ClientHello (the client waits for it), so from then on everything the
server sends is TLS; MySQL sends no answer at all.

Recognised, on any port (by content, as plain TLS is):

| protocol | the client's upgrade request | reference |
|---|---|---|
| smtp | ``STARTTLS`` | RFC 3207 |
| imap | ``<tag> STARTTLS`` | RFC 9051 §6.2.1 |
| pop3 | ``STLS`` | RFC 2595 §4 |
| ftp | ``AUTH TLS`` / ``AUTH SSL`` | RFC 4217 §4 |
| irc | ``STARTTLS`` (IRCv3 ``tls``, reply 670) | ircv3 |
| nntp | ``STARTTLS`` | RFC 4642 |
| xmpp | ``<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`` | RFC 6120 §5.4 |
| ldap | ExtendedRequest ``1.3.6.1.4.1.1466.20037`` | RFC 4511 §4.14 |
| postgresql | SSLRequest (length 8, code 80877103) | PostgreSQL protocol §53.2.10 |
| mysql | SSLRequest: a 32-byte handshake response with CLIENT_SSL | MySQL protocol |

Memory is bounded: at most ``MAX_PLAINTEXT`` bytes of plaintext are read before giving up, and
only an incomplete line or message (at most ``MAX_PENDING`` bytes) is held.
"""

from __future__ import annotations

import re

MAX_PLAINTEXT = 64 * 1024  # both directions together, before the session is given up on
MAX_PENDING = 8 * 1024  # an incomplete line / message held per direction

WAIT = 0  # nothing decided yet: feed more
UPGRADED = 1  # the client's TLS starts: ``tls_bytes`` holds its first bytes
GIVE_UP = 2  # not (or no longer) a STARTTLS candidate

_PG_SSL_REQUEST = bytes.fromhex("0000000804d2162f")
_LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
_IRC_COMMANDS = (b"CAP ", b"NICK ", b"PASS ", b"USER ", b"STARTTLS")
_XMPP_STARTTLS = re.compile(rb"<starttls\b[^>]*?(/>|>\s*</starttls\s*>)")

_TEXT_COMMANDS = (
    (re.compile(rb"^STARTTLS\s*$", re.I), "starttls"),  # smtp, irc or nntp: told by the server
    (re.compile(rb"^\S+ STARTTLS\s*$", re.I), "imap"),
    (re.compile(rb"^STLS\s*$", re.I), "pop3"),
    (re.compile(rb"^AUTH (TLS|SSL|TLS-C|TLS-P)\s*$", re.I), "ftp"),
)


def _looks_like_client_hello(data: bytes) -> bool | None:
    """True/False once 6 bytes tell, None before."""
    if len(data) < 6:
        if (data and data[0] != 0x16) or (len(data) >= 2 and data[1] != 3):
            return False
        return None
    return data[0] == 0x16 and data[1] == 3 and data[2] <= 4 and data[5] == 1


def server_greeting(data: bytes) -> str | None:
    """The protocol a server's first bytes announce, if it is one that can upgrade to TLS."""
    if data[:4] in (b"220 ", b"220-"):
        return "smtp"  # or ftp: the client's request tells
    if data[:4] == b"* OK" or data[:9] == b"* PREAUTH":
        return "imap"
    if data[:3] == b"+OK":
        return "pop3"
    if data[:4] in (b"200 ", b"201 "):
        return "nntp"
    if data[:1] == b":" or data[:6] == b"NOTICE":
        return "irc"
    if len(data) >= 5 and data[3] == 0 and data[4] == 10 and (data[0] | data[1] << 8 | data[2] << 16) <= 0xFFFF:
        return "mysql"  # protocol 10 greeting (packet length, sequence 0, version byte 10)
    return None


def client_opening(data: bytes) -> str | None:
    """The protocol a client's first bytes announce (client-speaks-first protocols)."""
    if data[:1] == b"\x00":
        return "postgresql" if _PG_SSL_REQUEST.startswith(data[:8]) else None
    if data[:1] == b"0":  # 0x30: a BER SEQUENCE, an LDAPMessage
        return "ldap"
    stripped = data.lstrip()
    if stripped[:5] == b"<?xml" or stripped[:14] == b"<stream:stream":
        return "xmpp"
    if any(stripped[: len(c)].upper() == c for c in _IRC_COMMANDS):
        return "irc"
    return None


class StartTls:
    """Watches one TCP session's plaintext for the upgrade to TLS."""

    __slots__ = ("protocol", "hint", "pending", "seen", "irc", "upgrade", "tls_bytes")

    def __init__(self, hint: str):
        self.hint = hint  # what the first bytes announced
        self.protocol: str | None = None  # what the upgrade proved
        self.pending = (bytearray(), bytearray())  # client, server: an incomplete unit
        self.seen = 0
        self.irc = hint == "irc"
        self.upgrade: str | None = None  # an upgrade request was seen: the client's TLS is next
        self.tls_bytes = b""

    def feed(self, from_client: bool, data: bytes) -> int:
        """WAIT, UPGRADED (``protocol`` and ``tls_bytes`` set) or GIVE_UP."""
        self.seen += len(data)
        if self.seen > MAX_PLAINTEXT:
            return GIVE_UP
        if not from_client:
            if self.upgrade is None:
                self._server(data)
            return WAIT  # the answer to the upgrade request: not kept
        buf = self.pending[0]
        buf += data
        while True:
            if self.upgrade is not None:
                ch = _looks_like_client_hello(bytes(buf[:6]))
                if ch is None:
                    return WAIT
                if ch:
                    self.protocol = self.upgrade
                    self.tls_bytes = bytes(buf)
                    buf.clear()
                    return UPGRADED
                self.upgrade = None  # refused upgrade: the session goes on in plaintext
            used = self._client_unit(buf)
            if used is None:
                return GIVE_UP
            if used == 0:
                if len(buf) > MAX_PENDING:
                    return GIVE_UP
                return WAIT
            del buf[:used]

    # -- per protocol ------------------------------------------------------------------------

    def _server(self, data: bytes) -> None:
        if self.irc:
            return
        buf = self.pending[1]
        buf += data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_PENDING:
                    buf.clear()
                return
            line = bytes(buf[:nl])
            del buf[: nl + 1]
            if line[:1] == b":" or b" 670 " in line:
                self.irc = True  # an IRC prefix, or IRCv3's RPL_STARTTLS
                buf.clear()
                return

    def _client_unit(self, buf: bytearray) -> int | None:
        """Consume one client unit (line, message, packet); returns its length, 0 for more bytes,
        None when the bytes are not the protocol announced. Sets ``upgrade`` on the request."""
        hint = self.hint
        if hint == "postgresql":
            if len(buf) < 8:
                return 0
            if bytes(buf[:8]) == _PG_SSL_REQUEST:
                self.upgrade = "postgresql"
                return 8
            return None  # a startup message in the clear: no TLS on this connection
        if hint == "ldap":
            return self._ldap(buf)
        if hint == "mysql":
            return self._mysql(buf)
        if hint == "xmpp":
            m = _XMPP_STARTTLS.search(buf)
            if m is None:
                if len(buf) > MAX_PENDING:
                    keep = len(buf) - 64  # a request split across segments is kept whole
                    return keep
                return 0
            self.upgrade = "xmpp"
            end = m.end()
            while end < len(buf) and buf[end] in b" \t\r\n":
                end += 1
            return end
        nl = buf.find(b"\n")
        if nl < 0:
            return 0
        line = bytes(buf[:nl]).rstrip(b"\r")
        up = line.upper()
        if any(up.startswith(c) for c in (b"NICK ", b"USER ", b"CAP ")):
            self.irc = True
        for pattern, name in _TEXT_COMMANDS:
            if pattern.match(line):
                if name == "starttls":
                    name = "irc" if self.irc else "nntp" if hint == "nntp" else "smtp"
                elif name == "ftp" and hint != "smtp":
                    continue
                self.upgrade = name
                break
        return nl + 1

    def _ldap(self, buf: bytearray) -> int | None:
        if len(buf) < 2:
            return 0
        if buf[0] != 0x30:
            return None
        n = buf[1]
        if n < 0x80:
            hdr, length = 2, n
        else:
            k = n & 0x7F
            if not 1 <= k <= 4:
                return None
            if len(buf) < 2 + k:
                return 0
            hdr, length = 2 + k, int.from_bytes(buf[2 : 2 + k], "big")
        if length > MAX_PENDING:
            return None
        if len(buf) < hdr + length:
            return 0
        msg = bytes(buf[hdr : hdr + length])
        if b"\x77" in msg[:8] and _LDAP_STARTTLS_OID in msg:  # [APPLICATION 23] ExtendedRequest
            self.upgrade = "ldap"
        return hdr + length

    def _mysql(self, buf: bytearray) -> int | None:
        if len(buf) < 4:
            return 0
        length = buf[0] | buf[1] << 8 | buf[2] << 16
        if length > MAX_PENDING:
            return None
        if len(buf) < 4 + length:
            return 0
        if length == 32 and buf[3] == 1 and (buf[4] | buf[5] << 8) & 0x0800:
            self.upgrade = "mysql"  # CLIENT_SSL in the capability flags: SSLRequest
        return 4 + length
