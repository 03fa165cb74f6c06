"""MySQL: an SSLRequest, a 32-byte handshake response with CLIENT_SSL (MySQL protocol); the
server sends no answer, the ClientHello follows at once."""

from __future__ import annotations

from typing import Optional

from tlssniff.starttls.base import MAX_PENDING, State


def greets(data: bytes) -> bool:
    # protocol 10 greeting (packet length, sequence 0, version byte 10)
    return len(data) >= 5 and data[3] == 0 and data[4] == 10 and (data[0] | data[1] << 8 | data[2] << 16) <= 0xFFFF


def client_unit(state: State, buf: bytearray) -> Optional[int]:
    if len(buf) < 4:
        return 0
    length = buf[0] | buf[1] << 8 | buf[2] << 16
    if length > MAX_PENDING:
        return None
    if len(buf) < 4 + length:
        return 0
    if length == 32 and buf[3] == 1 and (buf[4] | buf[5] << 8) & 0x0800:
        state.upgrade = "mysql"  # CLIENT_SSL in the capability flags: SSLRequest
    return 4 + length
