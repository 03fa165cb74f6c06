"""JA4 fingerprint of a ClientHello (FoxIO's JA4, BSD 3-Clause; the client part of JA4+).

    t13d1516h2_8daaf6152771_e5627efa2ab1
    a: transport, version, SNI, cipher count, extension count, ALPN  _  b: ciphers  _  c: extensions

Implemented from the specification (github.com/FoxIO-LLC/ja4, ``technical_details/JA4.md``):

- GREASE values (RFC 8701) are ignored everywhere: in counts, lists and versions.
- version: the highest value of ``supported_versions`` when present, else the ClientHello's
  ``legacy_version`` (the record-layer version is ignored): ``13 12 11 10 s3 s2``, DTLS ``d1 d2
  d3``, anything else ``00``.
- ``d`` when the ClientHello carries a server_name extension, else ``i``.
- counts: two digits, capped at 99; the extension count includes SNI and ALPN.
- ALPN: first and last character of the first ALPN value (one character: used twice); ``00``
  without one; when either end byte is not ASCII alphanumeric, the first hex digit of the first
  byte and the last hex digit of the last byte.
- b: sha256 of the sorted, comma-joined 4-hex-digit cipher suites, first 12 hex characters.
- c: the same over the sorted extensions without SNI (0000) and ALPN (0010), then ``_`` and the
  signature algorithms in wire order (no ``_`` when there are none).
- b or c of an empty list is ``000000000000``.

A pure function of the parsed :class:`~tlssniff.tls.messages.ClientHello`, computed once per
connection.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Final

from tlssniff.tls.messages import ClientHello
from tlssniff.tls.wire import (
    DTLS10,
    DTLS12,
    DTLS13,
    EXT_EARLY_DATA,
    EXT_PADDING,
    EXT_PRE_SHARED_KEY,
    EXT_SESSION_TICKET,
    SSL2,
    SSL3,
    TLS10,
    TLS11,
    TLS12,
    TLS13,
    is_grease,
)

_VERSIONS: Final = {
    TLS13: "13",
    TLS12: "12",
    TLS11: "11",
    TLS10: "10",
    SSL3: "s3",
    SSL2: "s2",
    DTLS10: "d1",
    DTLS12: "d2",
    DTLS13: "d3",
}

_EMPTY: Final = "000000000000"


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def alpn_chars(first: bytes) -> str:
    """The two ALPN characters of JA4_a for the first ALPN value's raw bytes."""
    if not first:
        return "00"
    a, z = first[0], first[-1]
    if _alnum(a) and _alnum(z):
        return chr(a) + chr(z)
    return f"{a >> 4:x}{z & 0x0F:x}"


def _hash12(text: str) -> str:
    return sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY


# Extensions a client adds or drops depending on whether it resumes (and padding, whose presence
# depends on the hello's length, so on the ticket's): left out of :func:`ja4_base`.
RESUMPTION_EXTENSIONS: Final = frozenset({EXT_PADDING, EXT_SESSION_TICKET, EXT_PRE_SHARED_KEY, EXT_EARLY_DATA})
_NONE: Final[frozenset[int]] = frozenset()


def ja4_parts(
    ch: ClientHello, transport: str = "tcp", ignore: frozenset[int] = _NONE
) -> tuple[str, list[str], list[str], list[str]]:
    """JA4_a, the sorted ciphers, the sorted extensions (no SNI/ALPN) and the signature
    algorithms, as the raw (``JA4_r``) form lists them."""
    proto = "q" if "quic" in transport else "d" if "dtls" in transport else "t"
    versions = [v for v in ch.supported_versions if not is_grease(v)]
    if versions:
        version = max(versions)
        if version >= 0xFE00:  # DTLS counts down: the highest version is the smallest number
            version = min(versions)
    else:
        version = ch.legacy_version
    ciphers = sorted(f"{c:04x}" for c in ch.cipher_suites if not is_grease(c))
    exts = [e for e in ch.extension_types if not is_grease(e) and e not in ignore]
    sni = "d" if 0 in exts else "i"
    ext_list = sorted(f"{e:04x}" for e in exts if e not in (0x0000, 0x0010))
    sigalgs = [f"{s:04x}" for s in ch.signature_algorithms if not is_grease(s)]
    alpn = alpn_chars(ch.alpn_first)
    a = (
        f"{proto}{_VERSIONS.get(version, '00')}{sni}"
        f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{alpn}"
    )
    return a, ciphers, ext_list, sigalgs


# A client population sends the same hello shape again and again: JA4 depends only on these
# fields, so a small cache turns ~15 µs of hashing per connection into one dict lookup.
_CACHE: Final[dict[tuple, str]] = {}
_CACHE_MAX: Final = 4096


def ja4(ch: ClientHello, transport: str = "tcp", ignore: frozenset[int] = _NONE) -> str:
    """The JA4 fingerprint, e.g. ``t13d1516h2_8daaf6152771_e5627efa2ab1``."""
    key = (
        ignore, transport, ch.legacy_version, ch.supported_versions, ch.sni is not None,
        ch.cipher_bytes, ch.extension_types, ch.alpn_first, ch.sigalg_bytes,
    )
    fp = _CACHE.get(key)
    if fp is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        fp = _CACHE[key] = _ja4(ch, transport, ignore)
    return fp


def ja4_base(ch: ClientHello, transport: str = "tcp") -> str:
    """tlssniff's client-population key: JA4 computed without :data:`RESUMPTION_EXTENSIONS`, so
    one client's fresh and resuming ClientHellos agree (JA4 itself differs between them: a
    presented ticket or PSK adds an extension, and often padding). Not a JA4 value."""
    return ja4(ch, transport, RESUMPTION_EXTENSIONS)


_PAIRS: Final[dict[tuple, tuple[str, str]]] = {}


def ja4_pair(ch: ClientHello, transport: str = "tcp") -> tuple[str, str]:
    """``(ja4(ch), ja4_base(ch))`` with one cache lookup: the per-connection call."""
    key = (
        transport, ch.legacy_version, ch.supported_versions, ch.sni is not None,
        ch.cipher_bytes, ch.extension_types, ch.alpn_first, ch.sigalg_bytes,
    )
    pair = _PAIRS.get(key)
    if pair is None:
        if len(_PAIRS) >= _CACHE_MAX:
            _PAIRS.clear()
        pair = _PAIRS[key] = (_ja4(ch, transport), _ja4(ch, transport, RESUMPTION_EXTENSIONS))
    return pair


def _ja4(ch: ClientHello, transport: str, ignore: frozenset[int] = _NONE) -> str:
    a, ciphers, exts, sigalgs = ja4_parts(ch, transport, ignore)
    c_text = ",".join(exts)
    if sigalgs:
        c_text += "_" + ",".join(sigalgs)
    return f"{a}_{_hash12(','.join(ciphers))}_{_hash12(c_text) if exts else _EMPTY}"


def ja4_raw(ch: ClientHello, transport: str = "tcp") -> str:
    """``JA4_r``: the same with the lists in clear instead of hashed."""
    a, ciphers, exts, sigalgs = ja4_parts(ch, transport)
    c_text = ",".join(exts)
    if sigalgs:
        c_text += "_" + ",".join(sigalgs)
    return f"{a}_{','.join(ciphers)}_{c_text}"
