"""``--anonymize`` and ``--redact``: keyed pseudonyms that stay consistent within one bundle.

Both use HMAC-SHA256 under a key drawn at random for each bundle and never written anywhere:
the same input always gets the same pseudonym inside the bundle (so the files still agree with
each other, and an offer still links to the session it resumes), but nobody can recompute a
pseudonym from a guessed address or session id.

* :class:`Anonymizer` maps client IP addresses to pseudonyms: IPv4 into ``10.0.0.0/8``, IPv6
  into ``fd00::/8``, never equal to an address of the input. Server addresses are kept. An
  address that is a client in one connection and a server in another (loopback captures) is
  replaced only where it is the client.
* :class:`Redactor` maps session ids, tickets, PSK identities and ticket key names to short
  keyed hashes (``r:`` and 12 hex digits); a session id issued in a ServerHello and the same id
  offered later get the same hash, so "which offer resumed which session" survives.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from dataclasses import replace

from tlssniff.analysis.findings import Finding
from tlssniff.analysis.verdict import ConnectionVerdict

REDACTED_FIELDS = (
    "session_id", "issued_session_id", "ticket_hash", "issued_ticket_hash", "psk_identity_hash",
    "ticket_key_name", "issued_ticket_key_name", "psk_key_name",
)


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"1.2.3.4:443"`` / ``"[::1]:443"`` -> (address text, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def pack_ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def join_endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class Anonymizer:
    """Consistent pseudonyms for client addresses (text and packed forms)."""

    def __init__(self, clients: set[str], servers: set[str], key: bytes | None = None) -> None:
        """``clients``/``servers``: the address texts of the input (no ports)."""
        self.key = key or secrets.token_bytes(32)
        self.servers = set(servers)
        self.clients = set(clients)
        taken = {pack_ip(a) for a in clients | servers}
        self.text: dict[str, str] = {}
        self.packed: dict[bytes, bytes] = {}
        for addr in sorted(clients):
            raw = pack_ip(addr)
            new = self._pseudonym(raw, taken)
            taken.add(new)
            self.packed[raw] = new
            self.text[addr] = socket.inet_ntop(
                socket.AF_INET6 if len(new) == 16 else socket.AF_INET, new)

    def _pseudonym(self, raw: bytes, taken: set[bytes]) -> bytes:
        counter = 0
        while True:
            digest = hmac.new(self.key, raw + counter.to_bytes(4, "big"), hashlib.sha256).digest()
            if len(raw) == 4:
                new = b"\x0a" + digest[:3]
                if new[3] in (0, 255):  # keep clear of network/broadcast-looking addresses
                    counter += 1
                    continue
            else:
                new = b"\xfd\x00" + b"\0" * 6 + digest[:8]
            if new not in taken:
                return new
            counter += 1

    def endpoint(self, endpoint: str) -> str:
        """A client ``ip:port`` with its pseudonym address (the port is kept)."""
        ip, port = split_endpoint(endpoint)
        new = self.text.get(ip)
        return endpoint if new is None else join_endpoint(new, port)

    def address(self, ip: str) -> str:
        return self.text.get(ip, ip)

    def leaks(self) -> set[str]:
        """Client addresses that are not also server addresses: these must not appear at all."""
        return self.clients - self.servers


class Redactor:
    """Short keyed hashes for session ids, tickets, PSK identities and ticket key names."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def value(self, kind: str, text: str | None) -> str | None:
        """``kind`` groups the values that must link: "sid" (offered and issued session ids),
        "tkt" (ticket hashes, offered and issued), "psk", "keyname"."""
        if not text:
            return text
        digest = hmac.new(self.key, kind.encode() + b"\0" + text.encode(), hashlib.sha256)
        return "r:" + digest.hexdigest()[:12]

    def raw(self, kind: str, data: bytes) -> bytes:
        """Keyed replacement bytes of the same length (for packets): equal inputs, equal output."""
        out = b""
        counter = 0
        while len(out) < len(data):
            out += hmac.new(self.key, kind.encode() + counter.to_bytes(4, "big") + data,
                            hashlib.sha256).digest()
            counter += 1
        return out[: len(data)]


_FIELD_KIND = {
    "session_id": "sid", "issued_session_id": "sid",
    "ticket_hash": "tkt", "issued_ticket_hash": "tkt",
    "psk_identity_hash": "psk",
    "ticket_key_name": "keyname", "issued_ticket_key_name": "keyname", "psk_key_name": "keyname",
}


def verdict_dict(v: ConnectionVerdict, anon: Anonymizer | None, redact: Redactor | None) -> dict:
    """``v.to_dict()`` with pseudonyms applied (the handshakes.jsonl line)."""
    d = v.to_dict()
    if anon is not None:
        d["client"] = anon.endpoint(d["client"])
    if redact is not None:
        for name, kind in _FIELD_KIND.items():
            if d.get(name):
                d[name] = redact.value(kind, d[name])
    return d


# Address-looking tokens in free text: IPv4 dotted quads and runs of hex digits and colons
# (IPv6, possibly with an embedded IPv4 tail); each is parsed before it is replaced.
_ADDRESS = re.compile(r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}"
                      r"|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
                      r"(?:\d{1,3}(?:\.\d{1,3}){3})?)(?!\w|\.\d|:[0-9A-Fa-f]*:)")
_HEX = re.compile(r"[0-9A-Fa-f]{16,}")


class Scrubber:
    """``--anonymize`` and ``--redact`` applied to free text and nested structures (finding
    messages, evidence notes, details, diagnostics), dictionary keys included.

    Client addresses that are not also server addresses (:meth:`Anonymizer.leaks`) are replaced
    wherever they appear in a string, in any spelling (``fd00::1``, ``[fd00::1]:443``); an
    address that is both keeps the older rule (replaced when a whole string is its client
    endpoint). Session ids, ticket hashes, PSK identity hashes and ticket key names of
    ``verdicts`` are replaced by their :class:`Redactor` values wherever they appear."""

    def __init__(self, anon: Anonymizer | None, redact: Redactor | None,
                 verdicts: list[ConnectionVerdict]) -> None:
        self.anon = anon
        self.leaks: dict[str, str] = {}
        if anon is not None:
            for ip in anon.leaks():
                self.leaks[ipaddress.ip_address(ip).compressed] = anon.text[ip]
        self.secrets: dict[str, str] = {}
        if redact is not None:
            for v in verdicts:
                d = v.to_dict()
                for name, kind in _FIELD_KIND.items():
                    value = d.get(name)
                    if isinstance(value, str) and value:
                        self.secrets[value.lower()] = redact.value(kind, value) or ""

    @property
    def active(self) -> bool:
        return bool(self.leaks or self.secrets or self.anon is not None)

    def text(self, s: str) -> str:
        if self.leaks and (":" in s or "." in s):
            s = _ADDRESS.sub(self._address, s)
        if self.secrets and len(s) >= 16:
            s = _HEX.sub(lambda m: self.secrets.get(m.group(0).lower(), m.group(0)), s)
        return s

    def _address(self, m: re.Match) -> str:
        token = m.group(0)
        try:
            key = ipaddress.ip_address(token).compressed
        except ValueError:
            return token
        return self.leaks.get(key, token)

    def __call__(self, obj):
        if not self.active:
            return obj
        if isinstance(obj, dict):
            return {self(k) if isinstance(k, str) else k: self(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self(x) for x in obj)
        if isinstance(obj, str):
            return self.text(scrub(obj, self.anon))
        return obj

    def finding(self, f: Finding) -> Finding:
        """A copy of ``f`` to publish: client endpoints as pseudonyms, text scrubbed."""
        if not self.active:
            return f
        ev = [replace(e, client=self.anon.endpoint(e.client) if self.anon else e.client,
                      why=self.text(e.why) if e.why else e.why) for e in f.evidence]
        return replace(f, servers=[self.text(x) for x in f.servers], message=self.text(f.message),
                       details=self(f.details), evidence=ev)


def scrub(obj, anon: Anonymizer | None):
    """Replace client endpoints/addresses inside findings' details (strings equal to one)."""
    if anon is None:
        return obj
    if isinstance(obj, dict):
        return {k: scrub(v, anon) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(scrub(x, anon) for x in obj)
    if isinstance(obj, str):
        if obj in anon.text:
            return anon.text[obj]
        if ":" in obj and obj[-1:].isdigit():
            try:
                ip, _port = split_endpoint(obj)
                ipaddress.ip_address(ip)
            except ValueError:
                return obj
            if ip in anon.text and ip not in anon.servers:
                return anon.endpoint(obj)
    return obj
