"""Pre-RFC TLS 1.3 (drafts 0x7fNN, Facebook's 0xfbNN, BoringSSL's experiments 0x7eNN): the
ServerHello in the layout of its draft, and the verdict the draft's ServerHello proves
(pre_shared_key present: psk; absent: full), as RFC 8446 §4.2.11 decides for TLS 1.3.
The public captures hold drafts 14, 16, 19 and 23 and experiment 1 (test_public_captures)."""

from __future__ import annotations

import struct

import pytest

from tlssniff.analysis.classify import classify
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.tls.handshake import HandshakeTracker


def _record(ct: int, body: bytes, version: int = 0x0301) -> bytes:
    return struct.pack("!BHH", ct, version, len(body)) + body


def _hs(t: int, body: bytes) -> bytes:
    return bytes([t]) + len(body).to_bytes(3, "big") + body


def _ext(t: int, data: bytes) -> bytes:
    return struct.pack("!HH", t, len(data)) + data


def _client_hello(exts: bytes) -> bytes:
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    return _record(22, _hs(1, body + struct.pack("!H", len(exts)) + exts))


def _sh_draft(version: int, exts: bytes) -> bytes:
    """Drafts before 22: version, random, cipher suite, extensions (no session id, no
    compression method)."""
    body = struct.pack("!H", version) + b"\x22" * 32 + b"\x13\x01" + struct.pack("!H", len(exts)) + exts
    return _record(22, _hs(2, body))


def _sh_late(selected: int, exts: bytes) -> bytes:
    """Drafts 22 and later: RFC 8446's layout, the version in supported_versions."""
    e = _ext(43, struct.pack("!H", selected)) + exts
    body = b"\x03\x03" + b"\x22" * 32 + b"\x20" + b"\x33" * 32 + b"\x13\x01\x00"
    return _record(22, _hs(2, body + struct.pack("!H", len(e)) + e), 0x0303)


KEY_SHARE_DRAFT = _ext(40, b"\x00\x1d\x00\x20" + b"\x44" * 32)
KEY_SHARE = _ext(51, b"\x00\x1d\x00\x20" + b"\x44" * 32)
PSK = _ext(41, b"\x00\x00")
ENCRYPTED = _record(23, b"\x55" * 40)


def _verdict(*server: bytes, client_exts: bytes = b"") -> ConnectionVerdict:
    t = HandshakeTracker()
    t.client_data(_client_hello(client_exts))
    for data in server:
        t.server_data(data)
    t.client_data(ENCRYPTED)
    return classify(t, ConnectionVerdict(0.0, "192.0.2.1:1", "192.0.2.2:443"))


@pytest.mark.parametrize("sh, version, handshake", [
    (_sh_draft(0x7F0E, KEY_SHARE_DRAFT), "TLSv1.3-draft14", "full"),
    (_sh_draft(0x7F0E, KEY_SHARE_DRAFT + PSK), "TLSv1.3-draft14", "psk"),
    (_sh_draft(0x7F0E, PSK), "TLSv1.3-draft14", "psk"),  # psk_ke: no key share at all
    (_sh_draft(0x7F12, KEY_SHARE_DRAFT + PSK), "TLSv1.3-draft18", "psk"),
    (_sh_draft(0xFB14, KEY_SHARE_DRAFT), "TLSv1.3-fb20", "full"),  # Facebook, draft-20 layout
    (_sh_draft(0xFB14, KEY_SHARE_DRAFT + PSK), "TLSv1.3-fb20", "psk"),
    (_sh_late(0xFB17, KEY_SHARE), "TLSv1.3-fb23", "full"),
    (_sh_late(0xFB1A, KEY_SHARE + PSK), "TLSv1.3-fb26", "psk"),
    (_sh_late(0x7F17, KEY_SHARE + PSK), "TLSv1.3-draft23", "psk"),
    (_sh_late(0x7E02, KEY_SHARE + PSK), "TLSv1.3-experiment2", "psk"),
])
def test_draft_server_hello_decides(sh, version, handshake):
    v = _verdict(sh + ENCRYPTED)
    assert (v.version, v.handshake.value, v.note) == (version, handshake, None)


def test_draft_hello_retry_request_message_then_server_hello():
    """Drafts before 22 had a HelloRetryRequest message of its own (type 6)."""
    hrr = _record(22, _hs(6, b"\x7f\x0e" + b"\x00\x04\x00\x28\x00\x00"))
    v = _verdict(hrr, _sh_draft(0x7F0E, KEY_SHARE_DRAFT) + ENCRYPTED)
    assert (v.version, v.handshake.value, v.hrr) == ("TLSv1.3-draft14", "full", True)
