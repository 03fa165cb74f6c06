"""decode_frame: real captures against tshark, hand-built frames for every link layer, and the
three-outcome contract under random input."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import PUBLIC
from tlssniff.capture import (
    LINKTYPE_NAMES,
    SUPPORTED_LINKTYPES,
    MalformedFrame,
    decode_frame,
    format_endpoint,
    open_capture,
)
from tlssniff.capture.decode import _decode

ZEEK = PUBLIC / "zeek"
needs_corpus = pytest.mark.usefixtures()  # the corpus ships in captures/public

# Per flow (proto, source, destination): (segments, payload bytes), from
#   tshark -r FILE -Y "(tcp or udp) and not icmp and not icmpv6" -T fields -E occurrence=f \
#     -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst -e tcp.srcport -e tcp.dstport -e tcp.len \
#     -e udp.srcport -e udp.dstport -e udp.length
# summed per flow (UDP payload = udp.length - 8). The files cover Ethernet (IPv4 and IPv6),
# QinQ + PPPoE, Linux SLL and SLL2, BSD null (IPv4, and IPv6 as AF_INET6 = 30), raw IP, PPP and
# pcapng.
FLOWS = {
    "tls/tls1.2.pcap": {
        (6, '10.0.0.80:56637', '68.233.76.12:443'): (13, 713),
        (6, '68.233.76.12:443', '10.0.0.80:56637'): (9, 6036),
    },
    "tls/certificate-request-failed.pcap": {
        (6, "[fd42:496a:d659:bb85:216:3eff:fe6a:a257]:3000",
         "[fd42:496a:d659:bb85::1]:52464"): (6, 3693),
        (6, "[fd42:496a:d659:bb85::1]:52464",
         "[fd42:496a:d659:bb85:216:3eff:fe6a:a257]:3000"): (6, 398),
    },
    "pppoe-over-qinq.pcap": {
        (6, '1.1.1.1:20394', '2.2.2.2:443'): (44, 23415),
        (6, '2.2.2.2:443', '1.1.1.1:20394'): (42, 11105),
    },
    "tls/irc-starttls.pcap": {
        (6, '185.18.76.170:6667', '203.143.168.47:55123'): (9, 1903),
        (6, '203.143.168.47:55123', '185.18.76.170:6667'): (11, 913),
    },
    "tls/openjdk-25.0.2-zeek.org.pcap": {
        (6, '192.0.78.150:443', '192.168.64.6:55058'): (3, 2920),
        (6, '192.168.64.6:55058', '192.0.78.150:443'): (3, 457),
    },
    "tls/pop3-starttls.pcap": {
        (6, '192.168.4.149:110', '192.168.4.149:54775'): (17, 2590),
        (6, '192.168.4.149:54775', '192.168.4.149:110'): (16, 851),
    },
    "http/connect-with-header.pcap": {
        (6, '[::1]:52522', '[::1]:80'): (29, 3644),
        (6, '[::1]:80', '[::1]:52522'): (29, 55499),
    },
    "tls/ml-dsa-44-cert.pcap": {
        (6, '10.0.0.1:55001', '10.0.0.2:443'): (3, 50),
        (6, '10.0.0.2:443', '10.0.0.1:55001'): (2, 4125),
    },
    "quic/interop/quic-go_quic-go/handshake.pcap": {
        (17, '193.167.0.100:40084', '193.167.100.100:443'): (5, 2675),
        (17, '193.167.100.100:443', '193.167.0.100:40084'): (4, 2891),
    },
    "quic/merlinc2_Zeek_example.pcapng": {
        (17, '10.0.0.4:53241', '24.199.110.233:443'): (50, 23725),
        (17, '24.199.110.233:443', '10.0.0.4:53241'): (50, 27537),
    },
    "tls/tls13-ech.pcap": {
        (6, '162.159.138.85:443', '192.168.20.65:51053'): (1, 39),
        (6, '162.159.138.85:443', '192.168.20.65:51066'): (16, 3957),
        (6, '162.159.138.85:443', '192.168.20.65:51071'): (17, 3983),
        (6, '192.168.20.65:51053', '162.159.138.85:443'): (2, 39),
        (6, '192.168.20.65:51066', '162.159.138.85:443'): (16, 1365),
        (6, '192.168.20.65:51071', '162.159.138.85:443'): (17, 1389),
    },
}


def flows_of(path: Path) -> tuple[dict, int]:
    segments: Counter = Counter()
    payload: Counter = Counter()
    malformed = 0
    for _ts, linktype, frame in open_capture(path).frames():
        try:
            seg = decode_frame(linktype, frame)
        except MalformedFrame:
            malformed += 1
            continue
        if seg is None:
            continue
        key = (seg[0], format_endpoint(seg[1], seg[3]), format_endpoint(seg[2], seg[4]))
        segments[key] += 1
        payload[key] += len(seg[8])
    return {k: (segments[k], payload[k]) for k in segments}, malformed


@needs_corpus
@pytest.mark.parametrize("name", sorted(FLOWS))
def test_corpus_flows_match_tshark(name: str) -> None:
    flows, malformed = flows_of(ZEEK / name)
    assert malformed == 0
    assert flows == FLOWS[name]


def corpus_files() -> list[Path]:
    if not ZEEK.is_dir():
        return []
    return sorted(p for p in ZEEK.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@needs_corpus
def test_shortcut_equals_general_decoder_on_every_corpus_frame() -> None:
    """decode_frame's Ethernet/IPv4/TCP shortcut must give exactly what _decode gives."""
    checked = 0
    for path in corpus_files():
        for _ts, linktype, frame in open_capture(path).frames():
            try:
                want = _decode(linktype, frame)
            except MalformedFrame:
                with pytest.raises(MalformedFrame):
                    decode_frame(linktype, frame)
                continue
            assert decode_frame(linktype, frame) == want
            checked += 1
    assert checked > 5000


# -- builders ------------------------------------------------------------------------------------

SRC4 = bytes([10, 0, 0, 1])
DST4 = bytes([192, 0, 2, 7])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("20010db80000000000000000000000ff")
DATA = b"\x16\x03\x01\x00\x05hello"


def tcp(payload: bytes = DATA, *, sport: int = 51000, dport: int = 443, seq: int = 1000,
        ack: int = 2000, flags: int = 0x18, options: bytes = b"") -> bytes:
    options += b"\0" * (-len(options) % 4)
    doff = (20 + len(options)) // 4
    return (struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0)
            + options + payload)


def udp(payload: bytes = DATA, sport: int = 5353, dport: int = 443) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(l4: bytes, proto: int = 6, *, options: bytes = b"", frag: int = 0x4000,
         total: int | None = None, src: bytes = SRC4, dst: bytes = DST4) -> bytes:
    ihl = 5 + len(options) // 4
    total = 4 * ihl + len(l4) if total is None else total
    return (struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0, src, dst)
            + options + l4)


def ipv6(l4: bytes, nxt: int = 6, *, exts: list[tuple[int, bytes]] = (),
         plen: int | None = None) -> bytes:
    """``exts``: (header type, full header bytes); the next-header fields are chained here."""
    chain = b""
    types = [t for t, _ in exts] + [nxt]
    for i, (_t, hdr) in enumerate(exts):
        chain += bytes([types[i + 1]]) + hdr[1:]
    body = chain + l4
    first = types[0]
    plen = len(body) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, plen, first, 64, SRC6, DST6) + body


def ext8(hdr_type: int, units: int = 0) -> tuple[int, bytes]:
    """Hop-by-hop/routing/destination options header of (units + 1) * 8 bytes."""
    return hdr_type, bytes([0, units]) + b"\x01\x04\0\0\0\0" + b"\0" * (8 * units)


def eth(l3: bytes, etype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    head = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    for tpid in tags:
        head += struct.pack("!H", tpid) + b"\x00\x64"
    return head + struct.pack("!H", etype) + l3


TCP4 = (6, SRC4, DST4, 51000, 443, 1000, 2000, 0x18, DATA)
TCP6 = (6, SRC6, DST6, 51000, 443, 1000, 2000, 0x18, DATA)
UDP4 = (17, SRC4, DST4, 5353, 443, 0, 0, 0, DATA)


# -- link layers ---------------------------------------------------------------------------------


def test_ethernet_ipv4_tcp() -> None:
    assert decode_frame(1, eth(ipv4(tcp()))) == TCP4


def test_ethernet_padding_and_fcs_trimmed() -> None:
    short = eth(ipv4(tcp(b"")))  # 54 bytes: padded to 60 on the wire, plus an FCS
    got = decode_frame(1, short + b"\0" * 6 + b"\xde\xad\xbe\xef")
    assert got[8] == b""
    assert decode_frame(1, eth(ipv4(udp(), 17)) + b"\0" * 20) == UDP4


def test_ethernet_ipv6() -> None:
    assert decode_frame(1, eth(ipv6(tcp()), 0x86DD)) == TCP6


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100), (0x8100,) * 3])
def test_vlan_tags(tags: tuple[int, ...]) -> None:
    assert decode_frame(1, eth(ipv4(tcp()), tags=tags)) == TCP4
    assert decode_frame(1, eth(ipv6(tcp()), 0x86DD, tags=tags)) == TCP6


def pppoe(ppp_proto: int, l3: bytes, length: int | None = None) -> bytes:
    length = 2 + len(l3) if length is None else length
    return struct.pack("!BBHHH", 0x11, 0, 0x1234, length, ppp_proto) + l3


def test_pppoe() -> None:
    assert decode_frame(1, eth(pppoe(0x0021, ipv4(tcp())), 0x8864)) == TCP4
    assert decode_frame(1, eth(pppoe(0x0057, ipv6(tcp())), 0x8864, tags=(0x88A8, 0x8100))) == TCP6
    assert decode_frame(1, eth(pppoe(0xC021, b"\x01\x01\x00\x04"), 0x8864)) is None  # LCP
    assert decode_frame(1, eth(b"\x11\x09\0\0\0\0", 0x8863)) is None  # PPPoE discovery


def test_pppoe_length_bounds_the_ip_packet() -> None:
    # pppoe-over-qinq.pcap has IP packets padded inside PPPoE; the PPPoE length wins
    inner = ipv4(tcp(b""), total=46) + b"\0" * 6
    got = decode_frame(1, eth(pppoe(0x0021, inner, length=2 + 40), 0x8864))
    assert got[8] == b""


def mpls(labels: int, l3: bytes) -> bytes:
    out = b""
    for i in range(labels):
        bottom = 1 if i == labels - 1 else 0
        out += struct.pack("!I", (100 + i) << 12 | bottom << 8 | 64)
    return out + l3


def test_mpls() -> None:
    assert decode_frame(1, eth(mpls(1, ipv4(tcp())), 0x8847)) == TCP4
    assert decode_frame(1, eth(mpls(3, ipv6(tcp())), 0x8847)) == TCP6
    assert decode_frame(1, eth(mpls(2, b"\0\0\0\0" + eth(ipv4(tcp()))), 0x8847)) is None  # PW


@pytest.mark.parametrize("family", [2, 24, 28, 30])
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("linktype", [0, 108])
def test_bsd_loopback(family: int, order: str, linktype: int) -> None:
    l3 = ipv4(tcp()) if family == 2 else ipv6(tcp())
    want = TCP4 if family == 2 else TCP6
    assert decode_frame(linktype, struct.pack(order + "I", family) + l3) == want


def test_bsd_loopback_other_family() -> None:
    assert decode_frame(0, struct.pack("<I", 7) + b"\0" * 40) is None


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip(linktype: int) -> None:
    assert decode_frame(linktype, ipv4(tcp())) == TCP4
    assert decode_frame(linktype, ipv6(tcp())) == TCP6


def test_raw_ipv4_and_ipv6_linktypes() -> None:
    assert decode_frame(228, ipv4(tcp())) == TCP4
    assert decode_frame(229, ipv6(tcp())) == TCP6
    with pytest.raises(MalformedFrame):
        decode_frame(228, ipv6(tcp()))
    with pytest.raises(MalformedFrame):
        decode_frame(229, ipv4(tcp()))


def test_linux_sll() -> None:
    head = struct.pack("!HHH8s", 0, 1, 6, b"\x00\x11\x22\x33\x44\x55\0\0")
    assert decode_frame(113, head + b"\x08\x00" + ipv4(tcp())) == TCP4
    assert decode_frame(113, head + b"\x86\xdd" + ipv6(tcp())) == TCP6
    assert decode_frame(113, head + b"\x81\x00\x00\x64\x08\x00" + ipv4(tcp())) == TCP4
    assert decode_frame(113, head + b"\x08\x06" + b"\0" * 28) is None  # ARP


def test_linux_sll2() -> None:
    rest = struct.pack("!HIHBB8s", 0, 2, 1, 0, 6, b"\x00\x11\x22\x33\x44\x55\0\0")
    assert decode_frame(276, b"\x08\x00" + rest + ipv4(tcp())) == TCP4
    assert decode_frame(276, b"\x86\xdd" + rest + ipv6(tcp())) == TCP6


def test_ppp() -> None:
    assert decode_frame(9, b"\xff\x03\x00\x21" + ipv4(tcp())) == TCP4
    assert decode_frame(9, b"\x00\x21" + ipv4(tcp())) == TCP4
    assert decode_frame(9, b"\x00\x57" + ipv6(tcp())) == TCP6
    assert decode_frame(9, b"\xff\x03\xc0\x21\x01\x01\x00\x04") is None


def test_unsupported_linktypes_and_names() -> None:
    assert decode_frame(127, b"\0" * 100) is None  # radiotap
    assert decode_frame(1, eth(b"\0" * 28, 0x0806)) is None  # ARP
    assert decode_frame(1, eth(b"\xaa\xaa\x03" + b"\0" * 40, 43)) is None  # 802.3 length field
    assert SUPPORTED_LINKTYPES <= set(LINKTYPE_NAMES)
    assert LINKTYPE_NAMES[1] == "ETHERNET" and LINKTYPE_NAMES[276] == "LINUX_SLL2"


# -- IPv4 ----------------------------------------------------------------------------------------


def test_ipv4_options_and_tcp_options() -> None:
    frame = eth(ipv4(tcp(options=b"\x02\x04\x05\xb4\x01\x01\x04\x02"),
                     options=b"\x94\x04\x00\x00"))
    assert decode_frame(1, frame) == TCP4


def test_udp() -> None:
    assert decode_frame(1, eth(ipv4(udp(), 17))) == UDP4
    assert decode_frame(1, eth(ipv6(udp(), 17), 0x86DD))[:5] == (17, SRC6, DST6, 5353, 443)


def test_udp_length_shorter_than_ip_payload() -> None:
    dgram = struct.pack("!HHHH", 1, 2, 8 + 3, 0) + b"abcXYZ"
    assert decode_frame(101, ipv4(dgram, 17))[8] == b"abc"


def test_other_protocols() -> None:
    assert decode_frame(1, eth(ipv4(b"\x08\x00" + b"\0" * 30, 1))) is None  # ICMP
    assert decode_frame(1, eth(ipv6(b"\x80\x00" + b"\0" * 30, 58), 0x86DD)) is None  # ICMPv6


@pytest.mark.parametrize("frag", [0x2000, 0x0001, 0x2010, 0x1FFF])
def test_ipv4_fragments_skipped(frag: int) -> None:
    assert decode_frame(1, eth(ipv4(tcp(), frag=frag))) is None


def test_ipv4_dont_fragment_is_fine() -> None:
    assert decode_frame(1, eth(ipv4(tcp(), frag=0x4000))) == TCP4
    assert decode_frame(1, eth(ipv4(tcp(), frag=0))) == TCP4


def test_ipv4_total_length_zero_is_segmentation_offload() -> None:
    assert decode_frame(1, eth(ipv4(tcp(), total=0))) == TCP4


def test_snaplen_cut_gives_what_was_captured() -> None:
    frame = eth(ipv4(tcp(b"x" * 1000)))[:100]
    got = decode_frame(1, frame)
    assert got[8] == b"x" * 46


# -- IPv6 extension headers ----------------------------------------------------------------------


def frag_hdr(offset: int, more: bool) -> tuple[int, bytes]:
    return 44, struct.pack("!BBHI", 0, 0, offset << 3 | int(more), 0xABCD)


def ah_hdr() -> tuple[int, bytes]:
    # payload length 4 -> (4 + 2) * 4 = 24 bytes: SPI, sequence and a 12-byte ICV
    return 51, bytes([0, 4, 0, 0]) + b"\0" * 20


@pytest.mark.parametrize(
    "exts",
    [
        [ext8(0)],
        [ext8(0, 1), ext8(43, 2), ext8(60)],
        [ext8(0), ah_hdr(), ext8(60, 1)],
        [frag_hdr(0, False)],  # atomic fragment
        [ext8(60), frag_hdr(0, False), ah_hdr()],
    ],
)
def test_ipv6_extension_chains(exts: list[tuple[int, bytes]]) -> None:
    assert decode_frame(1, eth(ipv6(tcp(), exts=exts), 0x86DD)) == TCP6
    assert decode_frame(229, ipv6(udp(), 17, exts=exts))[:5] == (17, SRC6, DST6, 5353, 443)


@pytest.mark.parametrize("offset,more", [(0, True), (185, True), (185, False)])
def test_ipv6_fragments_skipped(offset: int, more: bool) -> None:
    assert decode_frame(229, ipv6(tcp(), exts=[ext8(0), frag_hdr(offset, more)])) is None


def test_ipv6_jumbogram_and_no_next_header_and_esp() -> None:
    assert decode_frame(229, ipv6(tcp(), plen=0)) is None
    assert decode_frame(229, ipv6(b"", 59)) is None
    assert decode_frame(229, ipv6(b"\0" * 40, 50)) is None


def test_ipv6_padding_trimmed() -> None:
    assert decode_frame(1, eth(ipv6(tcp(b"")), 0x86DD) + b"\0" * 12)[8] == b""


# -- malformed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        (1, eth(ipv4(tcp()))[:30]),                               # IPv4 header cut short
        (1, eth(b"\x44" + ipv4(tcp())[1:])),                      # IHL 4
        (1, eth(b"\x55" + ipv4(tcp())[1:])),                      # version 5
        (1, eth(ipv4(tcp(), total=12))),                          # total length < header
        (1, eth(ipv4(tcp()))[:40]),                               # TCP header cut short
        (1, eth(ipv4(tcp()[:12] + b"\x40" + tcp()[13:]))),        # TCP data offset 4
        (1, eth(ipv4(tcp()[:12] + b"\xf0" + tcp()[13:], total=60))),  # data offset past IP end
        (1, eth(ipv4(tcp(b"")[:12] + b"\xf0" + tcp(b"")[13:]))),  # data offset past frame
        (1, eth(ipv4(b"\0\1\0\2", 17))),                          # UDP header cut short
        (1, b"\0" * 10),                                           # Ethernet cut short
        (1, eth(b"", 0x8100)),                                     # VLAN tag cut short
        (1, eth(b"\x11\x00", 0x8864)),                             # PPPoE cut short
        (1, eth(b"\0\0\0\0", 0x8847)),                             # MPLS stack never ends
        (1, eth(ipv6(tcp())[:30], 0x86DD)),                        # IPv6 header cut short
        (229, ipv6(tcp(), exts=[ext8(0, 5)], plen=16)),            # ext header past payload
        (229, ipv6(b"\0\0\0", 0)),                                 # ext header cut short
        (229, ipv6(tcp(), plen=10)),                               # TCP past payload length
        (113, b"\0" * 12),                                         # SLL cut short
        (276, b"\x08\x00" + b"\0" * 10),                           # SLL2 cut short
        (0, b"\x02\0"),                                            # loopback header cut short
        (0, b"\x02\0\0\0"),                                        # no IP header
        (101, b""),                                                # no IP header
        (101, b"\x20" + b"\0" * 40),                               # IP version 2
        (9, b"\xff\x03\x00"),                                      # PPP cut short
    ],
)
def test_malformed(linktype: int, frame: bytes) -> None:
    with pytest.raises(MalformedFrame):
        decode_frame(linktype, frame)
    with pytest.raises(MalformedFrame):
        _decode(linktype, frame)


def test_malformed_is_a_value_error() -> None:
    assert issubclass(MalformedFrame, ValueError)


# -- the contract under random input -------------------------------------------------------------

LINKTYPES = sorted(SUPPORTED_LINKTYPES) + [127, 65535]


def check_contract(linktype: int, frame: bytes) -> None:
    try:
        got = decode_frame(linktype, frame)
    except MalformedFrame:
        with pytest.raises(MalformedFrame):
            _decode(linktype, frame)
        return
    assert got == _decode(linktype, frame)
    if got is not None:
        proto, src, dst, sport, dport, seq, ack, flags, payload = got
        assert proto in (6, 17)
        assert len(src) == len(dst) in (4, 16)
        assert 0 <= sport < 65536 and 0 <= dport < 65536
        assert 0 <= seq < 2**32 and 0 <= ack < 2**32 and 0 <= flags < 256
        assert isinstance(payload, bytes) and len(payload) <= len(frame)


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(LINKTYPES), st.binary(max_size=200))
def test_random_bytes_keep_the_contract(linktype: int, frame: bytes) -> None:
    check_contract(linktype, frame)


SAMPLES = [
    (1, eth(ipv4(tcp()))),
    (1, eth(pppoe(0x0057, ipv6(tcp(), exts=[ext8(0), ah_hdr()])), 0x8864, tags=(0x88A8, 0x8100))),
    (1, eth(mpls(2, ipv4(udp(), 17)), 0x8847)),
    (0, struct.pack("<I", 30) + ipv6(udp(), 17)),
    (9, b"\xff\x03\x00\x21" + ipv4(tcp(), options=b"\x01\x01\x01\x01")),
]


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(SAMPLES), st.integers(min_value=0, max_value=200), st.binary(max_size=40),
       st.integers(min_value=0, max_value=199), st.integers(min_value=0, max_value=255))
def test_cut_and_mutated_frames_keep_the_contract(sample: tuple[int, bytes], cut: int,
                                                  tail: bytes, pos: int, value: int) -> None:
    linktype, frame = sample
    frame = bytearray(frame[:cut] + tail)
    if pos < len(frame):
        frame[pos] = value
    check_contract(linktype, bytes(frame))


# -- endpoints ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "text"),
    [
        ("1.2.3.4", "1.2.3.4:443"),
        ("2001:db8::1", "[2001:db8::1]:443"),
        ("2001:0db8:0000:0000:0001:0000:0000:0001", "[2001:db8::1:0:0:1]:443"),  # RFC 5952 4.2.3
        ("2001:db8:0:1:1:1:1:1", "[2001:db8:0:1:1:1:1:1]:443"),  # a single 0 is not compressed
        ("2001:DB8::AB", "[2001:db8::ab]:443"),  # lower case
        ("::1", "[::1]:443"),
        ("::", "[::]:443"),
        ("fe80::", "[fe80::]:443"),
    ],
)
def test_format_endpoint(ip: str, text: str) -> None:
    import ipaddress

    assert format_endpoint(ipaddress.ip_address(ip).packed, 443) == text
