"""Capture file readers: real captures against capinfos/dpkt, and hand-made files for every format
detail, every kind of damage and every error."""

from __future__ import annotations

import builtins

import gzip
import os
import struct
from pathlib import Path

import dpkt
import pytest

from tests.conftest import PUBLIC
from tlssniff.capture import files as files_mod
from tlssniff.capture import open_capture
from tlssniff.errors import CaptureError

ZEEK = PUBLIC / "zeek"
needs_corpus = pytest.mark.usefixtures()  # the corpus ships in captures/public

# Frames per file, from `capinfos -M -c -T -r FILE` (Wireshark 4.x).
FRAME_COUNTS = {
    "ftp/ftp-auth-tls.pcap": 84,
    "globus-url-copy-bad-encoding.pcap": 61,
    "globus-url-copy.pcap": 61,
    "http/connect-with-header.pcap": 58,
    "ldap/ldap-starttls.pcap": 28,
    "modbus/modbus-and-non-modbus-p502.pcap": 86,
    "mysql/encrypted.pcap": 18,
    "mysql/tls-12-amazon-rds.pcap": 25,
    "mysql/tls-13-amazon-rds.pcap": 33,
    "postgresql/psql-aws-ssl-preferred.pcap": 28,
    "postgresql/psql-aws-ssl-require-15432.pcap": 30,
    "postgresql/psql-aws-ssl-require.pcap": 30,
    "pppoe-over-qinq.pcap": 86,
    "quic/383379789-decrypt-crash.pcap": 9,
    "quic/chromium-115.0.5790.110-api-cirrus-com.pcap": 19,
    "quic/chromium-115.0.5790.110-google-de-fragmented.pcap": 917,
    "quic/chromium-dpd-custom-port-4433.pcap": 19,
    "quic/curl-8.1.2-dev-http3-www-google-de.pcap": 48,
    "quic/firefox-102.13.0esr-blog-cloudflare-com.pcap": 608,
    "quic/interop/quic-go_quic-go/handshake.pcap": 13,
    "quic/interop/quic-go_quic-go/retry.pcap": 26,
    "quic/interop/quic-go_quic-go/zerortt.pcap": 104,
    "quic/merlinc2_Zeek_example.pcapng": 100,
    "quic/quic-39264-rand.pcap": 19,
    "quic/quic-decrypt-fail-google-de-51833.pcap": 36,
    "quic/quic-multiple-initial-fragmented-crypto-only-initial.pcap": 3,
    "quic/quic-multiple-initial-fragmented-crypto.pcap": 15,
    "quic/quic_win11_firefox_google.pcap": 441,
    "quic/quicdoq.pcap": 9,
    "quic/quicv2-echo-443.pcap": 12,
    "quic/quicv2-echo-dpd-custom-port-4433.pcap": 12,
    "quic/quicv2-http3-443.pcap": 14,
    "rdp/rdp-no-cookie-mstshash.pcap": 20,
    "rdp/rdp-to-ssl.pcap": 658,
    "rdp/rdpeudp2-handshake-success.pcap": 10,
    "smtp.pcap": 125,
    "socks-with-ssl.pcap": 25,
    "ssl-and-ssh-using-sslh.pcap": 72,
    "tls/CVE-2015-3194.pcap": 15,
    "tls/cert-no-cn.pcap": 14,
    "tls/certificate-request-failed.pcap": 12,
    "tls/certificate-with-sct.pcap": 19,
    "tls/chrome-1250-tls-x25519-kyber.pcap": 15,
    "tls/chrome-34-google.pcap": 42,
    "tls/chrome-63.0.3211.0-canary-tls_experiment.pcap": 13,
    "tls/client-certificate.pcap": 31,
    "tls/dhe.pcap": 24,
    "tls/dtls-sequence-number-jumps.pcap": 4,
    "tls/dtls13-cid.pcap": 43,
    "tls/dtls13-wolfssl.pcap": 15,
    "tls/dtls1_0.pcap": 11,
    "tls/dtls1_2.pcap": 16,
    "tls/ecdhe.pcap": 28,
    "tls/ecdsa-cert.pcap": 15,
    "tls/google-cert-repeat.pcap": 116,
    "tls/google-duplicate.pcap": 46,
    "tls/heartbleed-encrypted-short.pcap": 18,
    "tls/heartbleed-encrypted-success.pcap": 63,
    "tls/heartbleed-encrypted.pcap": 24,
    "tls/heartbleed-success.pcap": 34,
    "tls/heartbleed.pcap": 23,
    "tls/hrr.pcap": 19,
    "tls/https-to-http.pcap": 9,
    "tls/imap-starttls.pcap": 32,
    "tls/irc-starttls.pcap": 20,
    "tls/missing-intermediate.pcap": 50,
    "tls/ml-dsa-44-cert.pcap": 5,
    "tls/ocsp-stapling-digicert.pcap": 25,
    "tls/ocsp-stapling-twimg.pcap": 19,
    "tls/ocsp-stapling.pcap": 22,
    "tls/openjdk-25.0.2-zeek.org.pcap": 6,
    "tls/pop3-starttls.pcap": 33,
    "tls/signed_certificate_timestamp-2.pcap": 20,
    "tls/signed_certificate_timestamp.pcap": 51,
    "tls/signed_certificate_timestamp_tls1_0.pcap": 19,
    "tls/smtp-starttls.pcap": 37,
    "tls/ssl-to-http-server.pcap": 14,
    "tls/ssl-v2.pcap": 25,
    "tls/ssl.v3.pcap": 252,
    "tls/telesec.pcap": 22,
    "tls/tls-1.2-handshake-failure.pcap": 11,
    "tls/tls-1.2-protocol-error.pcap": 11,
    "tls/tls-1.2-stream-keylog.pcap": 237,
    "tls/tls-13draft19-early-data.pcap": 50,
    "tls/tls-conn-with-extensions.pcap": 58,
    "tls/tls-early-alert.pcap": 17,
    "tls/tls-expired-cert.pcap": 49,
    "tls/tls-fragmented-handshake.pcap": 416,
    "tls/tls1.2-late-protocol-error.pcap": 22,
    "tls/tls1.2-protocol-violation.pcap": 22,
    "tls/tls1.2.pcap": 22,
    "tls/tls12-decryption.pcap": 16,
    "tls/tls13-ech.pcap": 69,
    "tls/tls13_psk_succesfull.pcap": 20,
    "tls/tls13_wolfssl.pcap": 21,
    "tls/tls13draft16-chrome55.0.2879.0-canary-aborted.pcap": 24,
    "tls/tls13draft16-chrome55.0.2879.0-canary.pcap": 41,
    "tls/tls13draft16-ff52.a01-aborted.pcap": 20,
    "tls/tls13draft16-ff52.a01.pcap": 39,
    "tls/tls13draft23-chrome67.0.3368.0-canary.pcap": 24,
    "tls/tls1_1.pcap": 23,
    "tls/webrtc-stun.pcap": 14,
    "tls/x509-generalizedtime.pcap": 22,
    "tls/xmpp-dialback-starttls.pcap": 37,
    "tls/xmpp-starttls.pcap": 34,
    "tunnels/geneve-47101.pcap": 24,
    "tunnels/gtp/gtp6_gtp_0x32.pcap": 31,
}


# -- writers for hand-made captures -------------------------------------------------------------


def pcap_bytes(
    records: list[tuple[int, int, bytes]],
    *,
    bo: str = "<",
    ns: bool = False,
    linktype: int = 1,
    snaplen: int = 65535,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A pcap file: ``records`` are (seconds, fraction, frame)."""
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = [struct.pack(bo + "IHHiIII", magic, *version, 0, 0, snaplen, linktype)]
    for sec, frac, frame in records:
        out.append(struct.pack(bo + "IIII", sec, frac, len(frame), len(frame)) + frame)
    return b"".join(out)


def block(btype: int, body: bytes, bo: str = "<") -> bytes:
    """One pcapng block; the body is padded to 32 bits."""
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(bo + "II", btype, length) + body + struct.pack(bo + "I", length)


def shb(bo: str = "<", options: bytes = b"") -> bytes:
    return block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1) + options, bo)


def option(code: int, value: bytes, bo: str = "<") -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def idb(linktype: int, bo: str = "<", snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), bo)
    if tsoffset is not None:
        opts += option(14, struct.pack(bo + "q", tsoffset), bo)
    if opts:
        opts += option(0, b"", bo)
    return block(1, struct.pack(bo + "HHI", linktype, 0, snaplen) + opts, bo)


def epb(ifid: int, ts_units: int, frame: bytes, bo: str = "<") -> bytes:
    body = struct.pack(bo + "IIIII", ifid, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame),
                       len(frame))
    return block(6, body + frame, bo)


def spb(frame: bytes, bo: str = "<", origlen: int | None = None) -> bytes:
    return block(3, struct.pack(bo + "I", len(frame) if origlen is None else origlen) + frame, bo)


def obsolete_pb(ifid: int, ts_units: int, frame: bytes, bo: str = "<") -> bytes:
    body = struct.pack(bo + "HHIIII", ifid, 0, ts_units >> 32, ts_units & 0xFFFFFFFF, len(frame),
                       len(frame))
    return block(2, body + frame, bo)


FRAMES = [bytes([i]) * (40 + 7 * i) for i in range(5)]  # lengths 40, 47, 54, 61, 68


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path: Path) -> tuple[list[tuple[float, int, bytes]], object]:
    cap = open_capture(path)
    frames = list(cap.frames())
    return frames, cap


# -- real captures ------------------------------------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("name", sorted(FRAME_COUNTS))
def test_corpus_frame_counts_match_capinfos(name: str) -> None:
    frames, cap = read_all(ZEEK / name)
    assert len(frames) == cap.frames_read == FRAME_COUNTS[name]
    assert cap.warnings == []
    assert cap.position == cap.size == (ZEEK / name).stat().st_size


@needs_corpus
@pytest.mark.parametrize(
    "name",
    ["tls/tls1.2.pcap", "tls/irc-starttls.pcap", "tls/ml-dsa-44-cert.pcap",
     "http/connect-with-header.pcap", "rdp/rdp-to-ssl.pcap", "quic/merlinc2_Zeek_example.pcapng"],
)
def test_corpus_same_frames_as_dpkt(name: str) -> None:
    """Differential test: dpkt's reader gives the same timestamps and bytes."""
    path = ZEEK / name
    with open(path, "rb") as f:
        reader = dpkt.pcapng.Reader(f) if name.endswith("pcapng") else dpkt.pcap.Reader(f)
        theirs = list(reader)
        linktype = reader.datalink()
    ours, _cap = read_all(path)
    assert len(ours) == len(theirs)
    for (ts, lt, frame), (dts, dframe) in zip(ours, theirs):
        assert lt == linktype
        assert frame == dframe
        assert ts == pytest.approx(float(dts), abs=1e-6)


@needs_corpus
def test_corpus_linktypes() -> None:
    expect = {
        "tls/tls1.2.pcap": 1,
        "http/connect-with-header.pcap": 0,
        "quic/interop/quic-go_quic-go/handshake.pcap": 9,
        "tls/ml-dsa-44-cert.pcap": 101,
        "tls/irc-starttls.pcap": 113,
        "tls/openjdk-25.0.2-zeek.org.pcap": 276,
        "quic/merlinc2_Zeek_example.pcapng": 1,
    }
    for name, linktype in expect.items():
        with open_capture(ZEEK / name) as cap:
            assert cap.linktype == linktype, name
            assert {lt for _ts, lt, _f in cap.frames()} == {linktype}, name


@needs_corpus
@pytest.mark.parametrize(
    ("name", "epoch"),
    [
        # `tshark -r FILE -c 1 -T fields -e frame.time_epoch`
        ("tls/tls1.2.pcap", 1357328848.512314),
        ("quic/merlinc2_Zeek_example.pcapng", 1735767286.951851),
    ],
)
def test_corpus_first_timestamp(name: str, epoch: float) -> None:
    frames, _cap = read_all(ZEEK / name)
    assert frames[0][0] == pytest.approx(epoch, abs=1e-6)


@needs_corpus
@pytest.mark.parametrize("chunk", [1, 7, 16, 17, 100, 1500, 4096])
def test_records_straddling_chunks(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    for name in ("tls/tls1.2.pcap", "quic/merlinc2_Zeek_example.pcapng"):
        expected, _ = read_all(ZEEK / name)
        monkeypatch.setattr(files_mod, "CHUNK_SIZE", chunk)
        got, cap = read_all(ZEEK / name)
        monkeypatch.undo()
        assert got == expected, name
        assert cap.warnings == []


@needs_corpus
@pytest.mark.parametrize("name", ["tls/tls1.2.pcap", "quic/merlinc2_Zeek_example.pcapng"])
def test_gzip_real_capture(tmp_path: Path, name: str) -> None:
    raw = (ZEEK / name).read_bytes()
    path = write(tmp_path, "c.gz", gzip.compress(raw))
    expected, _ = read_all(ZEEK / name)
    got, cap = read_all(path)
    assert got == expected
    assert cap.compressed and cap.warnings == []
    assert cap.size == cap.position == path.stat().st_size


# -- pcap details --------------------------------------------------------------------------------


@pytest.mark.parametrize("bo", ["<", ">"])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, bo: str, ns: bool) -> None:
    frac = 123456789 if ns else 123456
    data = pcap_bytes([(1700000000, frac, FRAMES[0]), (1700000001, 0, FRAMES[1])], bo=bo, ns=ns,
                      linktype=113)
    frames, cap = read_all(write(tmp_path, "x.cap", data))
    assert cap.format == ("pcap-ns" if ns else "pcap")
    assert [f for _ts, _lt, f in frames] == FRAMES[:2]
    assert {lt for _ts, lt, _f in frames} == {113}
    assert frames[0][0] == pytest.approx(1700000000.123456789 if ns else 1700000000.123456,
                                         abs=1e-7)
    assert frames[1][0] == 1700000001.0


def test_pcap_linktype_fcs_bits_ignored(tmp_path: Path) -> None:
    # bits 26-31 of the link type field describe the FCS; the link type is the low 16 bits
    data = pcap_bytes([(1, 0, FRAMES[0])], linktype=(1 << 26) | (2 << 28) | 1)
    frames, _cap = read_all(write(tmp_path, "fcs.pcap", data))
    assert frames[0][1] == 1


def test_pcap_header_only(tmp_path: Path) -> None:
    frames, cap = read_all(write(tmp_path, "h.pcap", pcap_bytes([])))
    assert frames == [] and cap.frames_read == 0 and cap.warnings == []


def test_pcap_truncated_at_every_offset(tmp_path: Path) -> None:
    data = pcap_bytes([(i, i, f) for i, f in enumerate(FRAMES)])
    starts = [24]
    for f in FRAMES:
        starts.append(starts[-1] + 16 + len(f))
    for cut in range(len(data) + 1):
        path = write(tmp_path, "t.pcap", data[:cut])
        if cut < 24:
            with pytest.raises(CaptureError):
                open_capture(path)
            continue
        frames, cap = read_all(path)
        complete = sum(1 for end in starts[1:] if end <= cut)
        assert len(frames) == cap.frames_read == complete
        assert [f for _ts, _lt, f in frames] == FRAMES[:complete]
        if cut in starts:
            assert cap.warnings == []
        else:
            (warning,) = cap.warnings
            assert warning == (
                f"{path}: truncated at byte offset {starts[complete]} "
                f"(packet {complete + 1} cut short); analyzed up to there"
            )


@pytest.mark.parametrize("caplen", [262145, 4 * 100 + 1, 0xFFFFFFFF])
def test_pcap_absurd_caplen(tmp_path: Path, caplen: int) -> None:
    good = pcap_bytes([(1, 0, FRAMES[0])], snaplen=100)
    bad = struct.pack("<IIII", 2, 0, caplen, caplen) + b"\0" * 64
    path = write(tmp_path, "c.pcap", good + bad + struct.pack("<IIII", 3, 0, 4, 4) + b"abcd")
    frames, cap = read_all(path)
    assert cap.frames_read == 1 and len(frames) == 1
    (warning,) = cap.warnings
    assert f"corrupt packet record at byte offset {len(good)} " in warning
    assert str(path) in warning


def test_pcap_snaplen_zero_allows_large_frames(tmp_path: Path) -> None:
    frame = b"x" * 70000
    frames, cap = read_all(write(tmp_path, "z.pcap", pcap_bytes([(1, 0, frame)], snaplen=0)))
    assert frames[0][2] == frame and cap.warnings == []


# -- pcapng details ------------------------------------------------------------------------------


@pytest.mark.parametrize("bo", ["<", ">"])
def test_pcapng_interfaces_tsresol_spb_pb(tmp_path: Path, bo: str) -> None:
    data = b"".join([
        shb(bo),
        idb(1, bo),                                  # default: microseconds
        block(0x00000BAD, b"custom stuff", bo),      # unknown block: skipped
        idb(113, bo, tsresol=9, tsoffset=100),       # nanoseconds, +100 s
        idb(101, bo, tsresol=0x80 | 10),             # 2**-10 s
        epb(0, 1_700_000_000_250_000, FRAMES[0], bo),
        epb(1, 1_600_000_000_123_456_789, FRAMES[1], bo),
        epb(2, 1_500_000_000 * 1024 + 512, FRAMES[2], bo),
        spb(FRAMES[3], bo),                          # interface 0, last timestamp
        obsolete_pb(1, 5_000_000_000, FRAMES[4], bo),
    ])
    frames, cap = read_all(write(tmp_path, "x.pcapng", data))
    assert cap.format == "pcapng" and cap.warnings == [] and cap.linktype == 1
    assert [(lt, f) for _ts, lt, f in frames] == list(zip([1, 113, 101, 1, 113], FRAMES))
    ts = [t for t, _lt, _f in frames]
    assert ts[0] == pytest.approx(1700000000.25, abs=1e-6)
    assert ts[1] == pytest.approx(1600000100.123456789, abs=1e-6)
    assert ts[2] == 1500000000.5
    assert ts[3] == ts[2]
    assert ts[4] == 105.0


def test_pcapng_spb_snaplen_and_origlen(tmp_path: Path) -> None:
    # SPB: captured length is min(original length, snaplen, block room)
    data = shb() + idb(1, snaplen=50) + spb(FRAMES[4], origlen=1000) + spb(b"abcd" * 3, origlen=10)
    frames, cap = read_all(write(tmp_path, "s.pcapng", data))
    assert [f for _t, _l, f in frames] == [FRAMES[4][:50], b"abcdabcdab"]
    assert [t for t, _l, _f in frames] == [0.0, 0.0]


def test_pcapng_sections_switch_byte_order_and_interfaces(tmp_path: Path) -> None:
    data = (shb("<") + idb(1, "<") + epb(0, 1_000_000, FRAMES[0], "<")
            + shb(">") + idb(276, ">") + epb(0, 2_000_000, FRAMES[1], ">"))
    frames, cap = read_all(write(tmp_path, "m.pcapng", data))
    assert [(t, lt, f) for t, lt, f in frames] == [(1.0, 1, FRAMES[0]), (2.0, 276, FRAMES[1])]
    assert cap.warnings == []


def test_pcapng_truncated_at_every_offset(tmp_path: Path) -> None:
    blocks = [shb(), idb(1)] + [epb(0, i, f) for i, f in enumerate(FRAMES)]
    data = b"".join(blocks)
    ends = []
    pos = 0
    for b in blocks:
        pos += len(b)
        ends.append(pos)
    packet_ends = ends[2:]
    for cut in range(len(data) + 1):
        path = write(tmp_path, "t.pcapng", data[:cut])
        if cut < 28:
            with pytest.raises(CaptureError):
                open_capture(path)
            continue
        frames, cap = read_all(path)
        complete = sum(1 for end in packet_ends if end <= cut)
        assert cap.frames_read == len(frames) == complete
        assert [f for _t, _l, f in frames] == FRAMES[:complete]
        if cut in ends:
            assert cap.warnings == []
        else:
            (warning,) = cap.warnings
            start = max(e for e in ends if e <= cut)
            assert f"truncated at byte offset {start} (packet {complete + 1} cut short)" in warning


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (struct.pack("<II", 6, 30) + b"\0" * 22, "block length 30"),         # not a multiple of 4
        (struct.pack("<II", 6, 8) + b"\0" * 8, "block length 8"),           # shorter than 12
        (struct.pack("<II", 6, 32 << 20) + b"\0" * 64, "block length 33554432"),  # > 16 MiB
        (struct.pack("<II", 6, 36) + b"\0" * 24 + struct.pack("<I", 40), "do not match"),
        (epb(0, 1, FRAMES[0])[:20] + struct.pack("<I", 999) + epb(0, 1, FRAMES[0])[24:],
         "caplen 999"),
        (epb(7, 1, FRAMES[0]), "interface 7"),
    ],
)
def test_pcapng_corrupt_block(tmp_path: Path, bad: bytes, why: str) -> None:
    head = shb() + idb(1) + epb(0, 1, FRAMES[0])
    path = write(tmp_path, "c.pcapng", head + bad + epb(0, 2, FRAMES[1]))
    frames, cap = read_all(path)
    assert cap.frames_read == len(frames) == 1
    (warning,) = cap.warnings
    assert f"corrupt packet record at byte offset {len(head)} (packet 2: " in warning
    assert why in warning


def test_pcapng_without_packets(tmp_path: Path) -> None:
    frames, cap = read_all(write(tmp_path, "e.pcapng", shb()))
    assert frames == [] and cap.warnings == [] and cap.linktype is None


# -- gzip ---------------------------------------------------------------------------------------


def test_gzip_pcap_and_multi_member(tmp_path: Path) -> None:
    data = pcap_bytes([(i, 0, f) for i, f in enumerate(FRAMES)])
    packed = gzip.compress(data[:100]) + gzip.compress(data[100:]) + b"\0" * 8  # padding after
    frames, cap = read_all(write(tmp_path, "m.pcap.gz", packed))
    assert [f for _t, _l, f in frames] == FRAMES and cap.warnings == []


def test_gzip_cut_at_every_offset(tmp_path: Path) -> None:
    data = pcap_bytes([(i, 0, os.urandom(300)) for i in range(6)])  # incompressible
    packed = gzip.compress(data)
    full, _ = read_all(write(tmp_path, "full.gz", packed))
    for cut in range(1, len(packed)):
        path = write(tmp_path, "t.gz", packed[:cut])
        try:
            cap = open_capture(path)
        except CaptureError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            continue
        frames = list(cap.frames())
        assert frames == full[: len(frames)]
        assert cap.warnings, cut
        assert any("gzip stream cut short" in w for w in cap.warnings)


def test_gzip_corrupt_data(tmp_path: Path) -> None:
    data = pcap_bytes([(i, 0, os.urandom(3000)) for i in range(20)])
    packed = bytearray(gzip.compress(data))
    packed[len(packed) // 2] ^= 0xFF
    frames, cap = read_all(write(tmp_path, "bad.gz", bytes(packed)))
    assert 0 <= len(frames) < 20
    assert any("corrupt gzip data" in w or "corrupt packet record" in w or "truncated" in w
               for w in cap.warnings)


def test_gzip_trailing_garbage(tmp_path: Path) -> None:
    data = pcap_bytes([(1, 0, FRAMES[0])])
    frames, cap = read_all(write(tmp_path, "g.gz", gzip.compress(data) + b"garbage!"))
    assert len(frames) == 1
    assert cap.warnings == [f"{tmp_path / 'g.gz'}: data after the end of the gzip stream ignored"]


# -- files that cannot be read --------------------------------------------------------------------


def assert_capture_error(path: Path, *fragments: str) -> str:
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert_capture_error(tmp_path / "nope.pcap", "no such file")


def test_directory(tmp_path: Path) -> None:
    assert_capture_error(tmp_path, "is a directory")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.pcap", pcap_bytes([]))
    path.chmod(0)
    try:
        assert_capture_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_empty_file(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "empty.pcap", b""), "empty file")


def test_text_file(tmp_path: Path) -> None:
    msg = assert_capture_error(write(tmp_path, "x.txt", b"Hello, world\n"))
    assert msg == f"{tmp_path / 'x.txt'}: not a pcap or pcapng file (starts with 0x48656c6c)"


def test_random_bytes(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "r.bin", b"\x00\x01\x02\x03" + os.urandom(500)),
                         "not a pcap or pcapng file (starts with 0x00010203)")


def test_gzipped_text(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "t.gz", gzip.compress(b"Hello, world\n")),
                         "not a pcap or pcapng file (after gzip decompression)")


def test_gzip_header_only(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "h.gz", gzip.compress(b"")), "empty file")


def test_gzip_garbage_after_magic(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "g.gz", b"\x1f\x8b" + b"\xff" * 40), "corrupt gzip data")


def test_short_pcap_header(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "s.pcap", pcap_bytes([])[:20]), "corrupt pcap header")


@pytest.mark.parametrize("version", [(1, 0), (3, 4), (2, 99)])
def test_bad_pcap_version(tmp_path: Path, version: tuple[int, int]) -> None:
    assert_capture_error(write(tmp_path, "v.pcap", pcap_bytes([], version=version)),
                         f"unsupported pcap version {version[0]}.{version[1]}")


def test_pcap_reserved_linktype_bits(tmp_path: Path) -> None:
    assert_capture_error(write(tmp_path, "l.pcap", pcap_bytes([], linktype=0x00FF0001)),
                         "corrupt pcap header")


def test_modified_pcap(tmp_path: Path) -> None:
    data = b"\x34\xcd\xb2\xa1" + pcap_bytes([])[4:]
    assert_capture_error(write(tmp_path, "k.pcap", data), "not supported")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (shb()[:20], "file too short"),
        (shb()[:8] + b"\x11\x22\x33\x44" + shb()[12:], "byte-order magic"),
        (block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)), "pcapng version 2.0"),
        (struct.pack("<II", 0x0A0D0D0A, 30) + shb()[8:], "block length 30"),
    ],
)
def test_corrupt_pcapng_header(tmp_path: Path, data: bytes, fragment: str) -> None:
    assert_capture_error(write(tmp_path, "h.pcapng", data), fragment)


# -- object behaviour ----------------------------------------------------------------------------


def test_context_manager_and_early_stop(tmp_path: Path) -> None:
    path = write(tmp_path, "c.pcap", pcap_bytes([(i, 0, f) for i, f in enumerate(FRAMES)]))
    with open_capture(path) as cap:
        for n, _frame in enumerate(cap.frames(), 1):
            if n == 2:
                break
    assert cap.frames_read == 2
    assert cap._raw is None
    with pytest.raises(ValueError):
        cap.frames()


def test_closes_itself_at_end(tmp_path: Path) -> None:
    path = write(tmp_path, "c.pcap", pcap_bytes([(1, 0, FRAMES[0])]))
    cap = open_capture(path)
    assert cap.size == path.stat().st_size
    list(cap.frames())
    assert cap._raw is None
    assert cap.position == cap.size


def test_pathlike_and_str(tmp_path: Path) -> None:
    path = write(tmp_path, "p.pcap", pcap_bytes([(1, 0, FRAMES[0])]))
    assert open_capture(str(path)).path == str(path)
    assert open_capture(path).path == str(path)


def test_permission_denied_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same message when running as root, where chmod cannot deny reading."""
    path = write(tmp_path, "secret.pcap", pcap_bytes([]))

    real_open = builtins.open

    def denied(file: object, *args: object, **kw: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kw)  # type: ignore[call-overload]

    # builtins, not the module: a compiled (mypyc) module looks names up there directly.
    monkeypatch.setattr(builtins, "open", denied)
    assert_capture_error(path, "permission denied")
