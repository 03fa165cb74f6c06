"""XMPP: ``<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`` (RFC 6120 §5.4)."""

from __future__ import annotations

import re
from typing import Optional

from tlssniff.starttls.base import MAX_PENDING, State

_XMPP_STARTTLS = re.compile(rb"<starttls\b[^>]*?(/>|>\s*</starttls\s*>)")


def opens(data: bytes) -> bool:
    stripped = data.lstrip()
    return stripped[:5] == b"<?xml" or stripped[:14] == b"<stream:stream"


def client_unit(state: State, buf: bytearray) -> Optional[int]:
    m = _XMPP_STARTTLS.search(buf)
    if m is None:
        if len(buf) > MAX_PENDING:
            return len(buf) - 64  # a request split across segments is kept whole
        return 0
    state.upgrade = "xmpp"
    end = m.end()
    while end < len(buf) and buf[end] in b" \t\r\n":
        end += 1
    return end
