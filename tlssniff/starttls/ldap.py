"""LDAP: an ExtendedRequest for ``1.3.6.1.4.1.1466.20037`` (RFC 4511 §4.14)."""

from __future__ import annotations

from typing import Optional

from tlssniff.starttls.base import MAX_PENDING, State

_LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def opens(data: bytes) -> bool:
    return data[:1] == b"0"  # 0x30: a BER SEQUENCE, an LDAPMessage


def client_unit(state: State, buf: bytearray) -> Optional[int]:
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
        state.upgrade = "ldap"
    return hdr + length
