"""STARTTLS: a plaintext protocol session that upgrades to TLS in the same TCP stream.

One module per protocol (:mod:`.text` for the line-based ones, :mod:`.xmpp`, :mod:`.ldap`,
:mod:`.postgresql`, :mod:`.mysql`), one :data:`PROTOCOLS` registry that both sides read:

* the passive detector (sans-IO): :func:`server_greeting` / :func:`client_opening` name the
  protocol the first bytes announce, and :class:`StartTls`, fed both directions' plaintext,
  says where the client's TLS begins: the bytes right after the client's upgrade request, once
  they are a ClientHello. The server's answer to the request (``220 Ready``, ``+OK``, ``S``, an
  LDAP ExtendedResponse, ...) always comes before the client's ClientHello (the client waits
  for it), so from then on everything the server sends is TLS; MySQL sends no answer at all.
* the probe (``tlssniff probe --starttls``): :data:`PROBE_PROTOCOLS`, each entry's
  ``negotiate`` and ``default_port``.

Adding a protocol: one module (detectors, ``client_unit``, optionally ``negotiate``) and one
line in :data:`PROTOCOLS`; a capture in captures/starttls/ proves it.

Memory is bounded: at most :data:`MAX_PLAINTEXT` bytes of plaintext are read before giving up,
and only an incomplete line or message (at most :data:`MAX_PENDING` bytes) is held.
"""

from __future__ import annotations

from typing import Optional

from tlssniff.starttls import ldap, mysql, postgresql, text, xmpp
from tlssniff.starttls.base import (
    MAX_PENDING,
    MAX_PLAINTEXT,
    LineIO,
    StartTlsFailure,
    StartTlsProtocol,
)
from tlssniff.tls.wire import CT_HANDSHAKE, HS_CLIENT_HELLO

__all__ = [
    "GIVE_UP",
    "MAX_PENDING",
    "MAX_PLAINTEXT",
    "PROBE_PROTOCOLS",
    "PROTOCOLS",
    "UPGRADED",
    "WAIT",
    "LineIO",
    "StartTls",
    "StartTlsFailure",
    "StartTlsProtocol",
    "client_opening",
    "server_greeting",
]

P = StartTlsProtocol
# Detectors are tried in this order (they are disjoint; the order is the documented one).
PROTOCOLS: dict[str, StartTlsProtocol] = {p.name: p for p in (
    P("smtp", 25, "RFC 3207", text.client_unit, greets=text.smtp_greets, negotiate=text.smtp_negotiate),
    P("imap", 143, "RFC 9051 §6.2.1", text.client_unit, greets=text.imap_greets, negotiate=text.imap_negotiate),
    P("pop3", 110, "RFC 2595 §4", text.client_unit, greets=text.pop3_greets, negotiate=text.pop3_negotiate),
    P("ftp", 21, "RFC 4217 §4", text.client_unit, negotiate=text.ftp_negotiate),  # greets as smtp
    P("nntp", 119, "RFC 4642", text.client_unit, greets=text.nntp_greets),
    P("irc", 6667, "IRCv3 tls", text.client_unit, greets=text.irc_greets, opens=text.irc_opens),
    P("xmpp", 5222, "RFC 6120 §5.4", xmpp.client_unit, opens=xmpp.opens),
    P("ldap", 389, "RFC 4511 §4.14", ldap.client_unit, opens=ldap.opens),
    P("postgresql", 5432, "PostgreSQL protocol §53.2.10", postgresql.client_unit, opens=postgresql.opens),
    P("mysql", 3306, "MySQL protocol", mysql.client_unit, greets=mysql.greets),
)}
del P

#: The protocols ``tlssniff probe --starttls`` can speak, in the registry's order.
PROBE_PROTOCOLS: tuple[str, ...] = tuple(n for n, p in PROTOCOLS.items() if p.negotiate is not None)

_GREETS = tuple((p.name, p.greets) for p in PROTOCOLS.values() if p.greets is not None)
_OPENS = tuple((p.name, p.opens) for p in PROTOCOLS.values() if p.opens is not None)

WAIT = 0  # nothing decided yet: feed more
UPGRADED = 1  # the client's TLS starts: ``tls_bytes`` holds its first bytes
GIVE_UP = 2  # not (or no longer) a STARTTLS candidate


def _looks_like_client_hello(data: bytes) -> bool | None:
    """True/False once 6 bytes tell, None before."""
    if len(data) < 6:
        if (data and data[0] != CT_HANDSHAKE) or (len(data) >= 2 and data[1] != 3):
            return False
        return None
    return data[0] == CT_HANDSHAKE and data[1] == 3 and data[2] <= 4 and data[5] == HS_CLIENT_HELLO


def server_greeting(data: bytes) -> str | None:
    """The protocol a server's first bytes announce, if it is one that can upgrade to TLS."""
    for name, greets in _GREETS:
        if greets(data):
            return name
    return None


def client_opening(data: bytes) -> str | None:
    """The protocol a client's first bytes announce (client-speaks-first protocols)."""
    for name, opens in _OPENS:
        if opens(data):
            return name
    return None


class StartTls:
    """Watches one TCP session's plaintext for the upgrade to TLS."""

    __slots__ = ("protocol", "hint", "pending", "seen", "irc", "upgrade", "tls_bytes", "_unit")

    def __init__(self, hint: str):
        self.hint = hint  # what the first bytes announced
        self.protocol: str | None = None  # what the upgrade proved
        self.pending = (bytearray(), bytearray())  # client, server: an incomplete unit
        self.seen = 0
        self.irc = hint == "irc"
        self.upgrade: Optional[str] = None  # an upgrade request was seen: the client's TLS is next
        self.tls_bytes = b""
        proto = PROTOCOLS.get(hint)
        self._unit = text.client_unit if proto is None else proto.client_unit

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
            used = self._unit(self, buf)
            if used is None:
                return GIVE_UP
            if used == 0:
                if len(buf) > MAX_PENDING:
                    return GIVE_UP
                return WAIT
            del buf[:used]

    def _server(self, data: bytes) -> None:
        """The server's lines, read only to tell IRC from SMTP/NNTP (they share STARTTLS)."""
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
            if text.server_line_is_irc(line):
                self.irc = True
                buf.clear()
                return
