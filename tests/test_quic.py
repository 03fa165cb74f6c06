"""QUIC: Initial keys and packet protection against the RFC vectors, CRYPTO reassembly, and
real captures (aioquic made here, and the public QUIC captures of several stacks)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tests.conftest import CAPTURES, PUBLIC, REPO, analyze_jsonl, assert_verdicts
from tlssniff.quic import packet as qp
from tlssniff.quic.connection import CryptoStream, QuicConnection, is_initial
from tlssniff.quic.crypto import VERSION_1, VERSION_2, initial_keys
from tlssniff.tls.messages import DecodeError

DCID = bytes.fromhex("8394c8f03e515708")  # RFC 9001 Appendix A


def test_rfc9001_a1_initial_keys():
    c, s = initial_keys(VERSION_1, DCID)
    assert (c.key.hex(), c.iv.hex(), c.hp.hex()) == (
        "1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c",
        "9f50449e04a0e810283a1e9933adedd2")
    assert (s.key.hex(), s.iv.hex(), s.hp.hex()) == (
        "cf3a5331653c364c88f0f379b6067e37", "0ac1493ca1905853b0bba03e",
        "c206b8d9b9f0f37644430b490eeaa314")


def test_rfc9001_a2_client_header_protection_mask():
    c, _ = initial_keys(VERSION_1, DCID)
    assert c.mask(bytes.fromhex("d1b1c98dd7689fb8ec11d242b123dc9b"))[:5].hex() == "437b9aec36"


# RFC 9001 A.3: the server's Initial, protected.
SERVER_INITIAL = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee"
)
SERVER_PAYLOAD = bytes.fromhex(
    "02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739"
    "88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94"
    "0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00"
    "020304"
)


def test_rfc9001_a3_server_initial_opens():
    _, s = initial_keys(VERSION_1, DCID)
    [pkt] = qp.split_datagram(SERVER_INITIAL)
    assert pkt.kind == qp.INITIAL and pkt.scid == bytes.fromhex("f067a5502a4262b5")
    pn, payload = qp.unprotect(SERVER_INITIAL, pkt, s, -1)
    assert pn == 1 and payload == SERVER_PAYLOAD
    crypto, close = qp.initial_frames(payload)
    assert close is None and crypto[0][0] == 0 and crypto[0][1][0] == 2  # a ServerHello


def test_rfc9001_a3_wrong_keys_do_not_open():
    c, _ = initial_keys(VERSION_1, DCID)
    [pkt] = qp.split_datagram(SERVER_INITIAL)
    assert qp.unprotect(SERVER_INITIAL, pkt, c, -1) is None


def test_rfc9001_a4_retry():
    retry = bytes.fromhex("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba")
    [pkt] = qp.split_datagram(retry)
    assert pkt.kind == qp.RETRY and pkt.scid == bytes.fromhex("f067a5502a4262b5")
    assert pkt.token == b"token"


def test_rfc9369_a1_v2_keys_and_mask():
    c, s = initial_keys(VERSION_2, DCID)
    assert (c.key.hex(), c.iv.hex(), c.hp.hex()) == (
        "8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f",
        "45b95e15235d6f45a6b19cbcb0294ba9")
    assert (s.key.hex(), s.iv.hex(), s.hp.hex()) == (
        "82db637861d55e1d011f19ea71d5d2a7", "dd13c276499c0249d3310652",
        "edf6d05c83121201b436e16877593c3a")
    assert c.mask(bytes.fromhex("ffe67b6abcdb4298b485dd04de806071"))[:5].hex() == "94a0c95e80"


def test_unknown_version_has_no_keys():
    assert initial_keys(0x1A2A3A4A, DCID) is None


# -- building Initials (test side only; the same cryptography primitives) --------------------

def varint(v: int) -> bytes:
    if v < 64:
        return bytes([v])
    if v < 16384:
        return (0x4000 | v).to_bytes(2, "big")
    return (0x80000000 | v).to_bytes(4, "big")


def protect_initial(version: int, dcid: bytes, scid: bytes, pn: int, payload: bytes,
                    client: bool, keys_dcid: bytes | None = None) -> bytes:
    c, s = initial_keys(version, keys_dcid or dcid)
    k = c if client else s
    ptype = 1 if version == VERSION_2 else 0
    payload = payload + b"\x00" * max(0, 20 - len(payload))
    length = 2 + len(payload) + 16
    header = bytes([0xC0 | ptype << 4 | 0x01]) + version.to_bytes(4, "big") + bytes([len(dcid)]) + dcid
    header += bytes([len(scid)]) + scid + varint(0) + varint(length) + pn.to_bytes(2, "big")
    nonce = (int.from_bytes(k.iv, "big") ^ pn).to_bytes(12, "big")
    ct = AESGCM(k.key).encrypt(nonce, payload, header)
    pn_off = len(header) - 2
    sample = ct[2:18]
    mask = k.mask(sample)
    out = bytearray(header + ct)
    out[0] ^= mask[0] & 0x0F
    for i in range(2):
        out[pn_off + i] ^= mask[1 + i]
    return bytes(out)


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def test_crypto_stream_out_of_order_and_overlapping():
    s = CryptoStream(1000)
    assert s.add(10, b"klmno") == b""
    assert s.add(5, b"fghijk") == b""
    assert s.add(0, b"abcdefg") == b"abcdefghijklmno"
    assert s.add(3, b"def") == b""  # retransmission
    assert s.add(15, b"pq") == b"pq"


def test_crypto_stream_bounded():
    s = CryptoStream(10)
    with pytest.raises(DecodeError):
        s.add(100, b"x" * 11)


def _client_hello_body() -> bytes:
    """A real TLS 1.3 ClientHello handshake message from OpenSSL (memory BIO)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="quic.test")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    rec = out.read()
    assert rec[0] == 22
    return rec[5:]  # the handshake message inside the first record


def test_client_hello_split_over_initials_out_of_order():
    ch = _client_hello_body()
    dcid, scid = b"\x11" * 8, b"\x22" * 4
    third = len(ch) // 3
    parts = [(0, ch[:third]), (third, ch[third : 2 * third]), (2 * third, ch[2 * third :])]
    dgrams = [protect_initial(VERSION_1, dcid, scid, pn, crypto_frame(off, data), True)
              for pn, (off, data) in zip((0, 1, 2), reversed(parts))]
    assert all(is_initial(d) for d in dgrams)
    q = QuicConnection(VERSION_1, dcid, 65536)
    for i, d in enumerate(dgrams):
        q.datagram(True, d, i + 1)
    assert q.opened == 3
    [hello] = q.tracker.client_hellos
    assert hello.sni == "quic.test" and hello.offers_tls13
    assert q.tracker.ch_frame == 3  # the frame that completed it


def test_server_initial_with_crypto_alert_is_server_alert():
    ch = _client_hello_body()
    dcid = b"\x33" * 8
    q = QuicConnection(VERSION_1, dcid, 65536)
    q.datagram(True, protect_initial(VERSION_1, dcid, b"", 0, crypto_frame(0, ch), True), 1)
    close = b"\x1c" + varint(0x128) + varint(6) + varint(0)  # handshake_failure (40)
    q.datagram(False, protect_initial(VERSION_1, b"", b"\x44" * 4, 0, close, False, keys_dcid=dcid), 2)
    assert q.tracker.alert == (2, 40) and q.tracker.alert_from_server


def test_garbage_is_not_quic():
    assert not is_initial(b"\x00" * 1200)
    assert not is_initial(b"\xc0\x1a\x2a\x3a\x4a" + b"\x00" * 50)  # a version without keys
    with pytest.raises(DecodeError):
        qp.split_datagram(b"\xc0\x00\x00\x00\x01\x30")


# -- captures --------------------------------------------------------------------------------

AIOQUIC = CAPTURES / "quic" / "aioquic.pcap"


def test_aioquic_capture_matches_clients_reports():
    truth = [json.loads(line) for line in (CAPTURES / "quic" / "aioquic.truth.jsonl").read_text().splitlines()]
    records = analyze_jsonl(AIOQUIC)
    assert_verdicts(records, truth)
    assert all(r["transport"] == "quic" and r["established"] for r in records)
    stories = {t["story"].split(";")[0].split(" (")[0] for t in truth}
    assert any("0-RTT" in s for s in stories) and any("Retry" in s for s in stories)


UDP_TRUTH = json.loads((REPO / "tests" / "data" / "public_udp_truth.json").read_text())


@pytest.mark.parametrize("name", sorted(n for n in UDP_TRUTH if "/quic/" in n))
def test_public_quic_capture(name):
    records = analyze_jsonl(PUBLIC / name)
    assert_verdicts([r for r in records if r["transport"] != "tcp"], UDP_TRUTH[name])
    for r in records:
        if r["transport"] != "tcp":
            assert r["transport"] == "quic"


# -- several Retries -------------------------------------------------------------------------

def _retry(dcid: bytes, scid: bytes, token: bytes = b"tok") -> bytes:
    """A v1 Retry packet (RFC 9000 §17.2.5); the integrity tag is not checked by an observer."""
    return (b"\xf0" + VERSION_1.to_bytes(4, "big") + bytes([len(dcid)]) + dcid + bytes([len(scid)])
            + scid + token + b"\x5a" * 16)


def _server_hello_body() -> bytes:
    ext = (b"\x00\x2b\x00\x02\x03\x04"  # supported_versions: TLS 1.3
           + b"\x00\x33\x00\x24\x00\x1d\x00\x20" + b"\x77" * 32)  # key_share x25519
    body = b"\x03\x03" + b"\x42" * 32 + b"\x00" + b"\x13\x01" + b"\x00" + len(ext).to_bytes(2, "big") + ext
    return b"\x02" + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize("late_retry_first", [False, True])
def test_several_retries_the_client_follows_one(late_retry_first):
    """A server answers the original Initial and its retransmission with a Retry each (new SCIDs
    S1, S2); the client follows the first it got (RFC 9000 §17.2.5.2), whichever the capture
    shows first: the Initials that follow open with its keys, the handshake is read whole."""
    ch, sh = _client_hello_body(), _server_hello_body()
    d0, cscid, s1, s2 = b"\x10" * 8, b"\xc1" * 8, b"\x51" * 8, b"\x52" * 8
    followed = s1
    q = QuicConnection(VERSION_1, d0, 65536)
    q.datagram(True, protect_initial(VERSION_1, d0, cscid, 0, crypto_frame(0, ch), True), 1)
    q.datagram(True, protect_initial(VERSION_1, d0, cscid, 1, crypto_frame(0, ch), True), 2)
    if late_retry_first:  # the capture holds S2's Retry first, the client had followed S1's
        q.datagram(False, _retry(cscid, s2), 3)
        q.datagram(False, _retry(cscid, s1), 4)
    else:
        q.datagram(False, _retry(cscid, s1), 3)
    q.datagram(True, protect_initial(VERSION_1, followed, cscid, 2, crypto_frame(0, ch), True), 5)
    if not late_retry_first:
        q.datagram(False, _retry(cscid, s2), 6)  # late: answers the retransmitted Initial
    q.datagram(False, protect_initial(VERSION_1, cscid, followed, 0, crypto_frame(0, sh), False,
                                      keys_dcid=followed), 7)
    assert q.retries == 2 and q.undecryptable == 0
    assert q.tracker.server_hello is not None and q.tracker.server_hello.tls13
    assert len(q.tracker.client_hellos) == 1  # the ClientHello again after the Retry: read once


def test_two_retries_capture_matches_clients_report():
    """aioquic: the server sent two Retries (its first Initial reached it twice), the client
    followed the first; the second comes after the client's new Initial in the capture
    (scripts/make_quic_retries_capture.py). Following the last Retry loses the ServerHello."""
    truth = [json.loads(line) for line in
             (CAPTURES / "quic" / "aioquic-retries.truth.jsonl").read_text().splitlines()]
    records = analyze_jsonl(CAPTURES / "quic" / "aioquic-retries.pcap")
    assert_verdicts(records, truth)
    assert [r["established"] for r in records] == [True]
