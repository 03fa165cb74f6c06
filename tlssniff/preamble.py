"""TLS after a preamble: proxies, the PROXY protocol, RDP and banners in front of TLS (sans-IO).

:class:`Preamble` is fed both directions' bytes before the TLS starts and says where each side's
TLS begins. The known preambles are parsed for what they are; beyond them a ClientHello is
searched for in the first ``SCAN_BYTES`` of the client's stream:

| kind | the client's preamble | the server's preamble | reference |
|---|---|---|---|
| proxy-v1 | ``PROXY TCP4|TCP6|UNKNOWN ... CRLF`` (at most 107 bytes) | none | haproxy proxy-protocol.txt §2.1 |
| proxy-v2 | 12-byte signature, 4-byte header, addresses and TLVs | none | proxy-protocol.txt §2.2 |
| http-connect | ``CONNECT host:port HTTP/1.x`` and its headers | a ``2xx`` status line and headers | RFC 9110 §9.3.6 |
| socks4, socks4a | ``04 01 port ip user 00`` (4a: ip ``0.0.0.x`` and ``host 00``) | 8 bytes, code ``5a`` | SOCKS 4 / 4A |
| socks5 | greeting, username/password (RFC 1929), ``05 01 00 atyp addr port`` | method, auth status, reply ``05 00`` | RFC 1928 |
| rdp | TPKT + X.224 Connection Request | TPKT + X.224 Connection Confirm | MS-RDPBCGR §2.2.1.1-2 |
| banner | none: the server spoke first (a banner) | the server's bytes before the ClientHello | |
| prefix | any bytes, then a ClientHello within ``SCAN_BYTES`` | the server's bytes before its ServerHello | |

The PROXY protocol header carries the address of the client the balancer accepted: it becomes
``proxied_client`` (formatted here from the parsed address, never copied from the wire).

Bounds: a parsed preamble is given up on beyond ``MAX_PREAMBLE`` bytes (HTTP headers), the
search for an unknown preamble's ClientHello beyond ``SCAN_BYTES`` of the client's stream or as
soon as the server answers the client's first bytes; the server's ServerHello after a banner is
searched for in its first ``SCAN_BYTES`` after the ClientHello. Memory held: the buffered
preamble bytes only (at most ``MAX_HELD`` per direction).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

SCAN_BYTES: Final = 512  # of the client's stream: where a ClientHello after unknown bytes may start
MAX_PREAMBLE: Final = 8 * 1024  # a known preamble (CONNECT and its headers) longer than this: not one
MAX_HELD: Final = 64 * 1024  # bytes buffered per direction while the other side's preamble is read

WAIT: Final = 0
UPGRADED: Final = 1  # the client's TLS starts: ``tls_bytes`` holds its first bytes
GIVE_UP: Final = 2

NEED: Final = -1  # a parse needs more bytes
BAD: Final = -2  # the bytes are not (or refuse) the protocol

PROXY_V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
_HTTP_METHODS: Final = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"DELETE ", b"PATCH ")
_STATUS_2XX: Final = re.compile(rb"HTTP/1\.[01] 2\d\d[ \r\n]")
_PROXY_V1: Final = re.compile(
    rb"PROXY (?:(TCP4|TCP6) ([0-9A-Fa-f.:]{2,45}) ([0-9A-Fa-f.:]{2,45}) (\d{1,5}) (\d{1,5})|UNKNOWN[^\r\n]*)\r\n"
)


def looks_like_client_hello(data: bytes, pos: int = 0) -> bool:
    """A TLS handshake record holding a ClientHello starts at ``pos`` (6 bytes needed)."""
    return (len(data) >= pos + 6 and data[pos] == 0x16 and data[pos + 1] == 3
            and data[pos + 2] <= 4 and data[pos + 5] == 1)


def find_client_hello(data: bytes, start: int = 0, end: int = SCAN_BYTES) -> int:
    """Offset of the first ClientHello record header in ``data[start:end]`` (it may run past
    ``end``), or -1."""
    pos = data.find(b"\x16\x03", start, end)
    while pos >= 0:
        if looks_like_client_hello(data, pos):
            return pos
        pos = data.find(b"\x16\x03", pos + 1, end)
    return -1


def _is_record_start(data: bytes | bytearray, pos: int) -> bool:
    """A TLS record a server starts its answer with: a ServerHello, or an alert."""
    if len(data) < pos + 6 or data[pos + 1] != 3 or data[pos + 2] > 4:
        return False
    if data[pos] == 0x16:
        return data[pos + 5] == 2
    return data[pos] == 0x15 and data[pos + 3] == 0 and data[pos + 4] in (2, 26)


def _find_server_record(buf: bytearray) -> int:
    """Offset of the first ServerHello or alert record header in ``buf``, or -1."""
    pos = 0
    n = len(buf)
    while pos < n:
        if _is_record_start(buf, pos):
            return pos
        hs = buf.find(b"\x16\x03", pos + 1)
        al = buf.find(b"\x15\x03", pos + 1)
        if hs < 0 or 0 <= al < hs:
            hs = al
        if hs < 0:
            return -1
        pos = hs
    return -1


def client_hint(data: bytes) -> str | None:
    """The preamble a client's first bytes (that are neither TLS nor a STARTTLS protocol) may be,
    or None for "not TLS" (decided on these bytes alone)."""
    b0 = data[0]
    if b0 == 0x50 and data[:6] == b"PROXY "[: len(data)]:
        return "proxy-v1"
    if b0 == 0x0D and data[:12] == PROXY_V2_SIGNATURE[: len(data)]:
        return "proxy-v2"
    if b0 == 0x43 and data[:8] == b"CONNECT "[: len(data)]:
        return "http-connect"
    if b0 == 4 and len(data) >= 2 and data[1] == 1:
        return "socks4"
    if b0 == 5 and len(data) >= 2 and 1 <= data[1] <= 16:
        return "socks5"
    if b0 == 3 and len(data) >= 6 and data[1] == 0 and data[5] == 0xE0:
        return "rdp"
    if 20 <= b0 <= 24 and len(data) >= 2 and data[1] == 3:
        return None  # a TLS record that is not a ClientHello: broken or mid-stream TLS, no preamble
    if find_client_hello(data) >= 0:
        return "prefix"
    if len(data) >= SCAN_BYTES or data[:4] == b"SSH-" or data.startswith(_HTTP_METHODS):
        return None  # plainly something else: decided on the first segment
    return "prefix"


def server_hint(data: bytes) -> str | None:
    """A server that spoke first (not a STARTTLS greeting): a banner, unless plainly not."""
    if data[:4] == b"SSH-":
        return None
    return "banner"


class Preamble:
    """One TCP connection's bytes before its TLS: where each side's TLS starts."""

    __slots__ = ("protocol", "proxied_client", "cbuf", "sbuf", "client_end", "server_end",
                 "tls_bytes", "upgraded", "synced")

    def __init__(self, hint: str):
        self.protocol = hint  # refined by the parse (socks4 -> socks4a)
        self.proxied_client: str | None = None
        self.cbuf = bytearray()
        self.sbuf = bytearray()
        self.client_end = NEED  # the length of the client's preamble once known
        self.server_end = NEED if hint not in ("proxy-v1", "proxy-v2") else 0
        self.tls_bytes = b""
        self.upgraded = False
        self.synced = False  # the server's TLS start is known (after the upgrade)

    def held(self) -> int:
        return len(self.cbuf) + len(self.sbuf)

    # -- before the client's TLS ---------------------------------------------------------------

    def feed(self, from_client: bool, data: bytes) -> int:
        """WAIT, UPGRADED (``tls_bytes`` is the client's first TLS bytes) or GIVE_UP."""
        if not from_client:
            if self.protocol == "prefix":
                if self.cbuf:
                    return GIVE_UP  # the server answered the client's bytes: no ClientHello came
                return WAIT
            if self.protocol == "banner":
                return WAIT  # a banner is not kept: the client's first bytes decide
            buf = self.sbuf
            buf += data
            if len(buf) > MAX_HELD:
                return GIVE_UP
            if self.server_end == NEED:
                self.server_end = self._server_preamble()
                if self.server_end == BAD:
                    return GIVE_UP
            return WAIT
        buf = self.cbuf
        buf += data
        if len(buf) > MAX_HELD:
            return GIVE_UP
        end = self.client_end
        if end == NEED:
            end = self.client_end = self._client_preamble()
            if end == BAD:
                return GIVE_UP
            if end == NEED:
                return WAIT
        if len(buf) < end + 6:
            return WAIT
        if not looks_like_client_hello(bytes(buf[end : end + 6])):
            return GIVE_UP  # the upgrade went somewhere else than TLS
        self.tls_bytes = bytes(buf[end:])
        self.upgraded = True
        self.cbuf = bytearray()
        return UPGRADED

    # -- after it: the server's TLS start -------------------------------------------------------

    def server_tls(self, data: bytes) -> bytes:
        """The server's bytes after the client's TLS started, minus the server's own preamble:
        what goes to the TLS tracker (b"" while the server's preamble is still being read)."""
        buf = self.sbuf
        buf += data
        if self.protocol in ("banner", "prefix"):
            pos = _find_server_record(buf)
            if pos < 0:
                if len(buf) <= SCAN_BYTES:
                    return b""
                pos = 0  # no TLS within the bound: the tracker reads what the server sent
            out = bytes(buf[pos:])
            self.sbuf = bytearray()
            self.synced = True
            return out
        end = self.server_end
        if end == NEED:
            end = self.server_end = self._server_preamble()
        if end == NEED:
            if len(buf) > MAX_PREAMBLE:
                end = 0
            else:
                return b""
        if end == BAD:
            end = 0  # the client went on regardless: let the tracker read the rest
        out = bytes(buf[end:])
        self.sbuf = bytearray()
        self.synced = True
        return out

    # -- per protocol ----------------------------------------------------------------------------

    def _client_preamble(self) -> int:
        """The length of the client's preamble, NEED or BAD."""
        buf = bytes(self.cbuf[:MAX_PREAMBLE + 1])
        kind = self.protocol
        if kind == "proxy-v1":
            return self._proxy_v1(buf)
        if kind == "proxy-v2":
            return self._proxy_v2(buf)
        if kind == "http-connect":
            end = _header_end(buf)
            if end == NEED and len(buf) > MAX_PREAMBLE:
                return BAD
            return end
        if kind == "socks4":
            return self._socks4(buf)
        if kind == "socks5":
            return _socks5_client(buf)
        if kind == "rdp":
            return _tpkt(buf, 0xE0)
        if kind == "banner":
            return 0 if looks_like_client_hello(buf) else NEED if len(buf) < 6 else BAD
        pos = find_client_hello(buf)  # prefix
        if pos >= 0:
            return pos
        return BAD if len(buf) >= SCAN_BYTES else NEED

    def _server_preamble(self) -> int:
        buf = bytes(self.sbuf[:MAX_PREAMBLE + 1])
        kind = self.protocol
        if kind == "http-connect":
            if len(buf) >= 13 and not _STATUS_2XX.match(buf):
                return BAD  # 407, 403, 502...: no tunnel
            end = _header_end(buf)
            return BAD if end == NEED and len(buf) > MAX_PREAMBLE else end
        if kind == "socks4" or kind == "socks4a":
            if len(buf) < 8:
                return NEED
            return 8 if buf[0] == 0 and buf[1] == 0x5A else BAD
        if kind == "socks5":
            return _socks5_server(buf)
        if kind == "rdp":
            return _tpkt(buf, 0xD0)
        return 0

    def _proxy_v1(self, buf: bytes) -> int:
        nl = buf.find(b"\n", 0, 108)
        if nl < 0:
            return NEED if len(buf) < 108 else BAD
        m = _PROXY_V1.match(buf, 0, nl + 1)
        if m is None:
            return BAD
        if m.group(1):
            try:
                ip = ipaddress.ip_address(m.group(2).decode())
            except ValueError:
                return BAD
            port = int(m.group(4))
            if port > 65535 or (ip.version == 4) != (m.group(1) == b"TCP4"):
                return BAD
            self.proxied_client = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        return m.end()

    def _proxy_v2(self, buf: bytes) -> int:
        if len(buf) < 16:
            return NEED if PROXY_V2_SIGNATURE.startswith(buf[:12]) else BAD
        if buf[:12] != PROXY_V2_SIGNATURE or buf[12] >> 4 != 2:
            return BAD
        length = buf[14] << 8 | buf[15]
        end = 16 + length
        if len(buf) < end:
            return NEED if end <= MAX_PREAMBLE else BAD
        command, family = buf[12] & 0xF, buf[13] >> 4
        if command == 1:  # PROXY (0 is LOCAL: the balancer's own health check, no client)
            if family == 1 and length >= 12:  # AF_INET: src, dst, sport, dport
                ip4 = ipaddress.IPv4Address(buf[16:20])
                self.proxied_client = f"{ip4}:{buf[24] << 8 | buf[25]}"
            elif family == 2 and length >= 36:  # AF_INET6
                ip6 = ipaddress.IPv6Address(buf[16:32])
                self.proxied_client = f"[{ip6}]:{buf[48] << 8 | buf[49]}"
        return end  # TLVs (ALPN, authority, CRC32C, SSL...) are inside ``length``: skipped

    def _socks4(self, buf: bytes) -> int:
        if len(buf) < 9:
            return NEED
        nul = buf.find(b"\x00", 8, 8 + 256)
        if nul < 0:
            return NEED if len(buf) < 8 + 256 else BAD
        if buf[4] == 0 and buf[5] == 0 and buf[6] == 0 and buf[7] != 0:  # SOCKS 4A: a host name
            self.protocol = "socks4a"
            host_end = buf.find(b"\x00", nul + 1, nul + 1 + 256)
            if host_end < 0:
                return NEED if len(buf) < nul + 257 else BAD
            return host_end + 1
        return nul + 1


def _header_end(buf: bytes) -> int:
    """The end of an HTTP header block (after its empty line), or NEED."""
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    end = buf.find(b"\n\n")
    return end + 2 if end >= 0 else NEED


def _tpkt(buf: bytes, code: int) -> int:
    """One TPKT packet (RFC 1006) holding an X.224 TPDU of ``code`` (CR 0xE0, CC 0xD0)."""
    if len(buf) < 6:
        return NEED
    if buf[0] != 3 or buf[1] != 0 or buf[5] & 0xF0 != code:
        return BAD
    length = buf[2] << 8 | buf[3]
    if length < 7:
        return BAD
    return length if len(buf) >= length else NEED


def _socks5_client(buf: bytes) -> int:
    """Greeting, optional RFC 1929 username/password, then the CONNECT request."""
    if len(buf) < 2:
        return NEED
    pos = 2 + buf[1]
    if len(buf) <= pos:
        return NEED
    if buf[pos] == 1:  # username/password subnegotiation (RFC 1929 §2)
        if len(buf) < pos + 2:
            return NEED
        plen_at = pos + 2 + buf[pos + 1]
        if len(buf) <= plen_at:
            return NEED
        pos = plen_at + 1 + buf[plen_at]
        if len(buf) <= pos:
            return NEED
    return _socks5_address(buf, pos, request=True)


def _socks5_server(buf: bytes) -> int:
    if len(buf) < 2:
        return NEED
    if buf[0] != 5 or buf[1] not in (0, 2):
        return BAD  # 0xff: no acceptable method; GSSAPI: encapsulated, not read here
    pos = 2
    if buf[1] == 2:
        if len(buf) < 4:
            return NEED
        if buf[3] != 0:
            return BAD  # authentication failed
        pos = 4
    return _socks5_address(buf, pos, request=False)


def _socks5_address(buf: bytes, pos: int, request: bool) -> int:
    """A request (``05 01 00``) or reply (``05 00 00``) with its address, from ``pos``."""
    if len(buf) < pos + 5:
        return NEED
    if buf[pos] != 5 or buf[pos + 1] != (1 if request else 0) or buf[pos + 2] != 0:
        return BAD
    atyp = buf[pos + 3]
    if atyp == 1:
        end = pos + 4 + 4 + 2
    elif atyp == 4:
        end = pos + 4 + 16 + 2
    elif atyp == 3:
        end = pos + 5 + buf[pos + 4] + 2
    else:
        return BAD
    return end if len(buf) >= end else NEED
