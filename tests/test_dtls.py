"""DTLS: fragment reassembly by message_seq and fragment_offset, HelloVerifyRequest, and every
DTLS connection of the public captures (1.0, 1.2, 1.3 with HRR, WebRTC with STUN)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import PUBLIC, REPO, analyze_jsonl, assert_verdicts
from tlssniff.dtls.connection import DtlsConnection, is_client_hello, strip_cookie
from tlssniff.tls.messages import DecodeError

UDP_TRUTH = json.loads((REPO / "tests" / "data" / "public_udp_truth.json").read_text())


def _record(ctype: int, body: bytes, version: int = 0xFEFD, epoch: int = 0, seq: int = 0) -> bytes:
    return (bytes([ctype]) + version.to_bytes(2, "big") + epoch.to_bytes(2, "big")
            + seq.to_bytes(6, "big") + len(body).to_bytes(2, "big") + body)


def _fragment(mtype: int, body: bytes, mseq: int, off: int, n: int) -> bytes:
    frag = body[off : off + n]
    return (bytes([mtype]) + len(body).to_bytes(3, "big") + mseq.to_bytes(2, "big")
            + off.to_bytes(3, "big") + len(frag).to_bytes(3, "big") + frag)


def _client_hello(session_id: bytes = b"", cookie: bytes = b"") -> bytes:
    ext = (0x0023).to_bytes(2, "big") + b"\x00\x00"  # empty SessionTicket
    return (b"\xfe\xfd" + b"\x01" * 32 + bytes([len(session_id)]) + session_id
            + bytes([len(cookie)]) + cookie + b"\x00\x02\xc0\x2b" + b"\x01\x00"
            + len(ext).to_bytes(2, "big") + ext)


def _server_hello(session_id: bytes) -> bytes:
    return (b"\xfe\xfd" + b"\x02" * 32 + bytes([len(session_id)]) + session_id + b"\xc0\x2b\x00"
            + b"\x00\x00")


def test_strip_cookie():
    body = _client_hello(b"\xaa" * 4, b"\xcc" * 5)
    tls = strip_cookie(body)
    assert len(tls) == len(body) - 6  # the cookie and its length byte
    with pytest.raises(DecodeError):
        strip_cookie(body[:36])


def test_fragments_out_of_order_and_repeated_then_resumption():
    sid = b"\x5a" * 32
    ch = _client_hello(sid, b"\xc0" * 16)
    d = DtlsConnection(65536)
    frags = [_fragment(1, ch, 1, off, 20) for off in range(0, len(ch), 20)]
    first = _record(22, frags[0])
    assert is_client_hello(first)
    for f in [frags[0], *reversed(frags[1:]), frags[1]]:  # out of order, one repeated
        d.datagram(True, _record(22, f), 5)
    [hello] = d.tracker.client_hellos
    assert hello.session_id == sid and hello.ticket == b""
    # The server resumes: ServerHello echoing the id, then ChangeCipherSpec (RFC 6347 §4.2.4).
    sh = _server_hello(sid)
    d.datagram(False, _record(22, _fragment(2, sh, 1, 0, len(sh))) + _record(20, b"\x01"), 6)
    d.datagram(True, _record(20, b"\x01") + _record(22, b"x" * 40, epoch=1), 7)
    t = d.tracker
    assert t.server_hello.session_id == sid and t.established and d.done
    from tlssniff.analysis.classify import classify
    from tlssniff.analysis.verdict import ConnectionVerdict

    v = classify(t, ConnectionVerdict(ts=0, client="c", server="s", transport="udp"))
    assert (v.offered.value, v.handshake.value, v.version) == ("session_id", "session_id", "DTLSv1.2")


def test_stun_on_the_same_ports_is_ignored():
    d = DtlsConnection(65536)
    assert d.datagram(True, b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\x00" * 12, 1) is False
    assert d.tracker.error is None


def test_oversized_message_is_reported():
    d = DtlsConnection(1000)
    d.datagram(True, _record(22, b"\x01" + (5000).to_bytes(3, "big") + b"\x00\x00" + b"\x00" * 3
                             + (10).to_bytes(3, "big") + b"z" * 10), 1)
    assert d.tracker.error == "oversized"


@pytest.mark.parametrize("name", sorted(n for n in UDP_TRUTH if "/quic/" not in n))
def test_public_dtls_capture(name):
    records = analyze_jsonl(PUBLIC / name)
    assert_verdicts(records, UDP_TRUTH[name])
    assert all(r["transport"] == "udp" for r in records)
