"""PostgreSQL: the SSLRequest message (length 8, code 80877103; protocol §53.2.10)."""

from __future__ import annotations

from typing import Optional

from tlssniff.starttls.base import State

_PG_SSL_REQUEST = bytes.fromhex("0000000804d2162f")


def opens(data: bytes) -> bool:
    return data[:1] == b"\x00" and _PG_SSL_REQUEST.startswith(data[:8])


def client_unit(state: State, buf: bytearray) -> Optional[int]:
    if len(buf) < 8:
        return 0
    if bytes(buf[:8]) == _PG_SSL_REQUEST:
        state.upgrade = "postgresql"
        return 8
    return None  # a startup message in the clear: no TLS on this connection
