"""The sans-IO TLS layer on real handshakes made by OpenSSL through Python's ssl memory BIOs.

No pcap and no TCP here: the recorded bytes go straight into the tracker, whole, byte by byte,
and re-fragmented into tiny records, and must give the client's own verdict every time.
"""

from __future__ import annotations

import os
import random

import pytest

from tlssniff.analysis.classify import classify
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.testing import handshakes as hs
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.messages import parse_client_hello, parse_server_hello
from tlssniff.tls.records import HANDSHAKE, RecordStream

SCENARIOS = sorted(hs.SCENARIOS)


@pytest.fixture(scope="module")
def servers():
    """Two server 'members' per kind: the second has other ticket keys and another cache."""
    return {
        "plain": (hs.server_context(), hs.server_context()),
        "no_ticket": (hs.server_context(no_ticket=True), hs.server_context(no_ticket=True)),
        "hrr": (hs.server_context(hrr=True), hs.server_context(hrr=True)),
    }


def _server_for(kind, servers):
    if kind in hs.HRR_SCENARIOS:
        return servers["hrr"]
    if kind.startswith("tls12_sid"):
        return servers["no_ticket"]
    return servers["plain"]


@pytest.fixture(scope="module")
def transcripts(servers):
    """scenario -> (chunks, truth), each made by a real handshake."""
    out = {}
    for kind in SCENARIOS:
        own, foreign = _server_for(kind, servers)
        profile, presents, _ = hs.SCENARIOS[kind]
        session = None
        if presents:
            source = hs.SESSION_SOURCE[kind]
            maker = own if presents == "own" else foreign
            session = hs.run_scenario(source, maker, sni="resume.example", alpn=True).session
        conn = hs.run_scenario(kind, own, session=session, sni="resume.example", alpn=True)
        out[kind] = (conn.transcript.chunks, conn.transcript.truth)
    return out


def _verdict(chunks, piece: int | None = None) -> ConnectionVerdict:
    t = HandshakeTracker()
    for direction, data in chunks:
        feed = t.client_data if direction == "c" else t.server_data
        if piece is None:
            feed(data)
        else:
            for i in range(0, len(data), piece):
                feed(data[i : i + piece])
    t.finish()
    return classify(t, ConnectionVerdict(ts=0.0, client="c:1", server="s:2"))


def _check(v: ConnectionVerdict, truth: dict) -> None:
    got = {
        "version": v.version, "offered": v.offered.value, "handshake": v.handshake.value,
        "resumed": v.resumed, "hrr": v.hrr, "early_data": v.early_data.value, "sni": v.sni,
    }
    want = {k: truth[k] for k in got}
    assert got == want


@pytest.mark.parametrize("kind", SCENARIOS)
def test_real_handshake_verdict(transcripts, kind):
    chunks, truth = transcripts[kind]
    v = _verdict(chunks)
    _check(v, truth)
    assert v.note is None
    assert v.established


@pytest.mark.parametrize("kind", SCENARIOS)
def test_byte_by_byte_gives_the_same_verdict(transcripts, kind):
    chunks, truth = transcripts[kind]
    _check(_verdict(chunks, piece=1), truth)


def _refragment(data: bytes, size: int) -> bytes:
    """Split every plaintext handshake record into records of ``size`` bytes (RFC 5246 §6.2.1
    lets a message span records); stops at the first non-handshake record."""
    out, pos = bytearray(), 0
    while pos + 5 <= len(data) and data[pos] == 22:
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        body = data[pos + 5 : pos + 5 + length]
        for i in range(0, len(body), size):
            part = body[i : i + size]
            out += data[pos : pos + 3] + len(part).to_bytes(2, "big") + part
        pos += 5 + length
    return bytes(out + data[pos:])


@pytest.mark.parametrize("kind", SCENARIOS)
def test_messages_spanning_tiny_records(transcripts, kind):
    chunks, truth = transcripts[kind]
    # Only the first flight of each side is plaintext throughout (before any CCS).
    firsts = {"c": False, "s": False}
    new = []
    for direction, data in chunks:
        if not firsts[direction]:
            data = _refragment(data, 7)
            firsts[direction] = True
        new.append((direction, data))
    _check(_verdict(new), truth)


def test_tls13_echoes_the_session_id_without_resuming(transcripts):
    """RFC 8446 §4.1.3: the echo is compatibility mode, not resumption."""
    chunks, _ = transcripts["tls13_full"]
    client = RecordStream().feed(chunks[0][1])
    server = RecordStream().feed(next(d for s, d in chunks if s == "s"))
    ch = parse_client_hello(next(b for k, t, b in client if k == HANDSHAKE and t == 1))
    sh = parse_server_hello(next(b for k, t, b in server if k == HANDSHAKE and t == 2))
    assert len(ch.session_id) == 32 and sh.session_id == ch.session_id
    v = _verdict(chunks)
    assert (v.offered.value, v.handshake.value, v.resumed) == ("none", "full", False)


def test_tls12_ticket_with_session_id_is_ticket(transcripts):
    """RFC 5077 §3.4: the client sends a session id with its ticket; accepted => ticket."""
    chunks, _ = transcripts["tls12_ticket_resume"]
    v = _verdict(chunks)
    assert v.session_id and v.ticket_len > 0
    assert (v.offered.value, v.handshake.value) == ("ticket", "ticket")


def test_tls12_capture_cut_after_server_hello_is_unknown(transcripts):
    """A missing Certificate is not proof of resumption: the capture may just stop."""
    chunks, _ = transcripts["tls12_full"]
    server_flight = next(d for s, d in chunks if s == "s")
    sh_len = 5 + int.from_bytes(server_flight[3:5], "big")
    v = _verdict([chunks[0], ("s", server_flight[:sh_len])])
    assert (v.handshake.value, v.note.value) == ("unknown", "server_hello_only")


def test_tls12_issued_session_and_ticket_recorded(transcripts):
    chunks, _ = transcripts["tls12_full"]
    v = _verdict(chunks)
    assert v.handshake.value == "full"
    assert v.issued_ticket and v.ticket_lifetime and v.ticket_lifetime > 0


def test_no_server_answer(transcripts):
    chunks, _ = transcripts["tls13_full"]
    v = _verdict(chunks[:1])
    assert (v.handshake.value, v.note.value) == ("unknown", "no_server_hello")
    assert v.sni == "resume.example"


def test_declared_16mb_client_hello_is_oversized_not_buffered():
    t = HandshakeTracker()
    record = bytes([22, 3, 1, 0, 8]) + bytes([1, 0xFF, 0xFF, 0xFF]) + b"\x03\x03\x00\x00"
    t.client_data(record)
    assert t.done and t.error == "oversized"
    v = classify(t, ConnectionVerdict(ts=0, client="c", server="s"))
    assert v.note.value == "oversized"


@pytest.mark.parametrize(
    "garbage",
    [
        bytes([22, 3, 1, 0, 0]),  # zero-length handshake record
        bytes([22, 3, 1, 0xFF, 0xFF]) + b"x" * 10,  # record longer than TLS allows
        bytes([99, 3, 1, 0, 1, 0]),  # no such content type
        bytes([22, 3, 1, 0, 6]) + bytes([1, 0, 0, 2, 3, 3]),  # hello cut inside its body
    ],
)
def test_malformed_records_end_the_connection_quietly(garbage):
    t = HandshakeTracker()
    t.client_data(garbage)
    t.finish()
    v = classify(t, ConnectionVerdict(ts=0, client="c", server="s"))
    assert v.handshake.value == "unknown"
    assert v.note.value in ("malformed", "no_server_hello")


def test_client_hello_cut_anywhere_with_junk_never_raises(transcripts):
    """mitmproxy's contract: a parse either succeeds, needs more, or is a reported error."""
    rng = random.Random(7)
    ch = transcripts["tls13_psk_resume"][0][0][1]
    for cut in range(len(ch)):
        t = HandshakeTracker()
        t.client_data(ch[:cut] + os.urandom(rng.randrange(0, 40)))
        t.server_data(os.urandom(rng.randrange(0, 40)))
        t.finish()
        classify(t, ConnectionVerdict(ts=0, client="c", server="s"))
