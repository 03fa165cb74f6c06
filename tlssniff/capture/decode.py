"""Link layer to transport layer: turn a captured frame into a TCP or UDP segment.

``decode_frame(linktype, frame)`` has the three outcomes of every parser in tlssniff:

* a tuple ``(proto, src_ip, dst_ip, sport, dport, seq, ack, flags, payload)`` for TCP (6) or
  UDP (17) over IPv4/IPv6; addresses are packed bytes (4 or 16 long), ``seq``/``ack``/``flags``
  are 0 for UDP, and ``payload`` is cut at the IP total length (Ethernet padding and trailers are
  dropped; a frame cut short by the snaplen gives what was captured);
* ``None`` for a frame that is not TCP/UDP over IP: ARP, ICMP, other link types, and IP fragments
  (tlssniff does not reassemble IP fragments; a TLS handshake over TCP is not fragmented at the IP
  layer in practice);
* :class:`MalformedFrame` for headers that are truncated or impossible; callers count these.

Supported link types: see :data:`SUPPORTED_LINKTYPES`. Inside Ethernet and Linux cooked
captures: 802.1Q/802.1ad/QinQ tags, PPPoE sessions and MPLS label stacks.
"""

from __future__ import annotations

import socket
import struct
from typing import Final

__all__ = [
    "LINKTYPE_NAMES",
    "SUPPORTED_LINKTYPES",
    "MalformedFrame",
    "TCP_FIN",
    "TCP_SYN",
    "TCP_RST",
    "TCP_PSH",
    "TCP_ACK",
    "TCP_URG",
    "decode_frame",
    "format_endpoint",
]

#: tcpdump.org link-type names (LINKTYPE_*), for messages.
LINKTYPE_NAMES: Final[dict[int, str]] = {
    0: "NULL",
    1: "ETHERNET",
    9: "PPP",
    12: "RAW",
    14: "RAW",
    101: "RAW",
    105: "IEEE802_11",
    108: "LOOP",
    113: "LINUX_SLL",
    127: "IEEE802_11_RADIOTAP",
    220: "USB_LINUX_MMAPPED",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}
#: Link types :func:`decode_frame` understands; any other gives ``None``.
SUPPORTED_LINKTYPES: Final = frozenset({0, 1, 9, 12, 14, 101, 108, 113, 228, 229, 276})

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
TCP_URG: Final = 0x20


# (protocol, source ip, destination ip, source port, destination port, seq, ack, TCP flags,
# payload); UDP has 0 for seq, ack and flags. A fixed-shape tuple: compiled, it is unboxed.
Decoded = tuple[int, bytes, bytes, int, int, int, int, int, bytes]
# The slots by name: compiled, d[FLAGS] is the same code as d[7] (a Final int is a literal).
PROTO: Final = 0
SRC: Final = 1
DST: Final = 2
SPORT: Final = 3
DPORT: Final = 4
SEQ: Final = 5
ACK: Final = 6
FLAGS: Final = 7
PAYLOAD: Final = 8


class MalformedFrame(ValueError):
    """A frame whose headers are truncated or impossible (bad IHL, data offset, lengths)."""


# version/IHL, total length, flags/fragment offset, protocol, source, destination
_IPV4: Final = struct.Struct("!BxHxxHxBxx4s4s").unpack_from
# payload length, next header, source, destination (after version/class/label)
_IPV6: Final = struct.Struct("!4xHBx16s16s").unpack_from
# ports, seq, ack, data offset byte, flags byte
_TCP: Final = struct.Struct("!HHIIBB").unpack_from
_UDP: Final = struct.Struct("!HHH").unpack_from
_U16: Final = struct.Struct("!H").unpack_from
_U32BE: Final = struct.Struct(">I").unpack_from
_U32LE: Final = struct.Struct("<I").unpack_from

_ETH_IPV4: Final = b"\x08\x00"
_ETHERTYPE_IPV4: Final = 0x0800
_ETHERTYPE_IPV6: Final = 0x86DD
_ETHERTYPE_VLAN: Final = frozenset({0x8100, 0x88A8, 0x9100})
_ETHERTYPE_PPPOE: Final = 0x8864
_ETHERTYPE_MPLS: Final = frozenset({0x8847, 0x8848})
_PPP_IPV4: Final = 0x0021
_PPP_IPV6: Final = 0x0057
# BSD AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS).
_BSD_AF_INET6: Final = frozenset({24, 28, 30})
# IPv6 extension headers walked to reach the upper layer (the fragment header 44 apart).
_IPV6_EXT: Final = frozenset({0, 43, 60, 51})
_MAX_VLAN_TAGS: Final = 8


def decode_frame(linktype: int, frame: bytes) -> Decoded | None:
    """Decode one frame down to TCP/UDP; see the module docstring for the three outcomes.

    The common cases (Ethernet, then IPv4 without options or IPv6 without extension headers,
    then TCP) are read with byte arithmetic, a few compares and three slices: compiled
    (setup.py) that is a fraction of the general path's struct calls. Sequence numbers are
    read inline (a call of :func:`u32be` was 124 instructions; callgrind, the first 300,000
    frames of bench/out/handshakes.pcap). Any frame the shortcut
    does not fully vouch for goes through :func:`_decode`, the general decoder, whose answer
    the shortcut must equal (tests check this on every corpus frame).
    """
    if linktype == 1:
        n = len(frame)
        if n >= 48 and frame[12] == 8 and frame[13] == 0:
            if (
                frame[14] == 0x45
                and frame[23] == 6
                and not (frame[20] << 8 | frame[21]) & 0x3FFF
            ):
                doff = frame[46]
                data = 34 + ((doff >> 4) << 2)
                end = 14 + (frame[16] << 8 | frame[17])
                if doff >= 0x50 and data <= end and data <= n:
                    return (
                        6, frame[26:30], frame[30:34], frame[34] << 8 | frame[35],
                        frame[36] << 8 | frame[37],
                        frame[38] << 24 | frame[39] << 16 | frame[40] << 8 | frame[41],
                        frame[42] << 24 | frame[43] << 16 | frame[44] << 8 | frame[45],
                        frame[47], frame[data:end],
                    )
        elif n >= 70 and frame[12] == 0x86 and frame[13] == 0xDD:
            plen = frame[18] << 8 | frame[19]
            if frame[14] >> 4 == 6 and frame[20] == 6 and plen:
                doff = frame[66]
                data = 54 + ((doff >> 4) << 2)
                end = 54 + plen
                if doff >= 0x50 and data <= end and data <= n:
                    return (
                        6, frame[22:38], frame[38:54], frame[54] << 8 | frame[55],
                        frame[56] << 8 | frame[57],
                        frame[58] << 24 | frame[59] << 16 | frame[60] << 8 | frame[61],
                        frame[62] << 24 | frame[63] << 16 | frame[64] << 8 | frame[65],
                        frame[67], frame[data:end],
                    )
    return _decode(linktype, frame)


def u32be(b: bytes, i: int) -> int:
    """The big-endian 32-bit value at ``b[i]`` (compiled: four byte loads, no struct call)."""
    return b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3]


def _decode(linktype: int, frame: bytes) -> Decoded | None:
    """The general decoder: every link type, tag, option and check."""
    if linktype == 1 and frame[12:14] == _ETH_IPV4:
        off = 14
    else:
        where = l3_offset(linktype, frame)
        if where is None:
            return None
        off, end = where
        if end < len(frame):
            frame = frame[:end]  # PPPoE's length field bounds the IP packet
        if off >= len(frame):
            raise MalformedFrame("no IP header")
        if frame[off] >> 4 == 6:
            return _ipv6(frame, off)

    # IPv4
    try:
        vihl, tlen, frag, proto, src, dst = _IPV4(frame, off)
    except struct.error:
        raise MalformedFrame("IPv4 header cut short") from None
    hl = (vihl & 0x0F) << 2
    if vihl >> 4 != 4 or hl < 20:
        raise MalformedFrame(f"bad IPv4 version/IHL 0x{vihl:02x}")
    if frag & 0x3FFF:
        return None  # a fragment (MF set or offset != 0): not reassembled
    start = off + hl
    if tlen >= hl:
        end = off + tlen
    elif tlen == 0:
        end = len(frame)  # segmentation offload captured before the NIC fills the length in
    else:
        raise MalformedFrame(f"IPv4 total length {tlen} < header length {hl}")
    if proto == 6:
        try:
            sport, dport, seq, ack, doff, flags = _TCP(frame, start)
        except struct.error:
            raise MalformedFrame("TCP header cut short") from None
        data = start + ((doff >> 4) << 2)
        if doff < 0x50 or data > end or data > len(frame):
            raise MalformedFrame(f"bad TCP data offset {doff >> 4}")
        return (6, src, dst, sport, dport, seq, ack, flags, frame[data:end])
    if proto == 17:
        return _udp(frame, start, end, src, dst)
    return None


def _udp(frame: bytes, start: int, end: int, src: bytes, dst: bytes) -> Decoded:
    if start + 8 > end or start + 8 > len(frame):
        raise MalformedFrame("UDP header cut short")
    sport, dport, ulen = _UDP(frame, start)
    if 8 <= ulen < end - start:
        end = start + ulen  # the UDP length is shorter than the IP payload: trust it
    payload = frame[start + 8 : end]
    if dport in _TUNNEL_PORTS or sport in _TUNNEL_PORTS:
        inner = _tunnel(dport if dport in _TUNNEL_PORTS else sport, payload)
        if inner is not None:
            return inner
    return (17, src, dst, sport, dport, 0, 0, 0, payload)


# UDP encapsulations recognised by their IANA port, as Zeek does: the inner packet is what
# the connection is about. Anything that does not parse as the tunnel stays plain UDP.
_VXLAN, _GENEVE, _GTP_U = 4789, 6081, 2152
_TUNNEL_PORTS: Final = frozenset({_VXLAN, _GENEVE, _GTP_U})
_RAW_IP: Final = 101


def _tunnel(port: int, data: bytes) -> Decoded | None:
    try:
        if port == _VXLAN:
            if len(data) < 8 or not data[0] & 0x08:
                return None
            return _decode(1, data[8:])
        if port == _GENEVE:
            if len(data) < 8 or data[0] >> 6 != 0:
                return None
            start = 8 + ((data[0] & 0x3F) << 2)
            ptype = _U16(data, 2)[0]
            if ptype == 0x6558:
                return _decode(1, data[start:])
            if ptype in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
                return _decode(_RAW_IP, data[start:])
            return None
        # GTP-U version 1 (3GPP TS 29.281), G-PDU messages only
        if len(data) < 8 or data[0] >> 5 != 1 or not data[0] & 0x10 or data[1] != 0xFF:
            return None
        start = 8
        if data[0] & 0x07:
            if len(data) < 12:
                return None
            next_ext = data[11]
            start = 12
            while next_ext:
                if start >= len(data) or not data[start]:
                    return None
                start += data[start] << 2
                if start > len(data):
                    return None
                next_ext = data[start - 1]
        return _decode(_RAW_IP, data[start:])
    except MalformedFrame:
        return None


def _ipv6(frame: bytes, off: int) -> Decoded | None:
    try:
        plen, nxt, src, dst = _IPV6(frame, off)
    except struct.error:
        raise MalformedFrame("IPv6 header cut short") from None
    if plen == 0:
        return None  # jumbogram (hop-by-hop jumbo payload option): not supported
    start = off + 40
    end = start + plen
    flen = len(frame)
    nxt, start = _ipv6_upper(frame, nxt, start, end)
    if nxt < 0:
        return None  # a real fragment; only atomic fragments (offset 0, M=0) pass
    if nxt == 6:
        try:
            sport, dport, seq, ack, doff, flags = _TCP(frame, start)
        except struct.error:
            raise MalformedFrame("TCP header cut short") from None
        data = start + ((doff >> 4) << 2)
        if doff < 0x50 or data > end or data > flen:
            raise MalformedFrame(f"bad TCP data offset {doff >> 4}")
        return (6, src, dst, sport, dport, seq, ack, flags, frame[data:end])
    if nxt == 17:
        return _udp(frame, start, end, src, dst)
    return None


def _ipv6_upper(frame: bytes, nxt: int, start: int, end: int) -> tuple[int, int]:
    """The one IPv6 extension-header walk: ``(upper-layer protocol, its offset)`` from the
    first next-header value; protocol -1 for a real fragment (only atomic fragments, offset 0
    and M=0, pass). Raises :class:`MalformedFrame` for a header cut short or past ``end``."""
    flen = len(frame)
    while nxt in _IPV6_EXT or nxt == 44:
        if start + 8 > flen or start + 8 > end:
            raise MalformedFrame(f"IPv6 extension header {nxt} cut short")
        if nxt == 44:
            fragoff_m = _U16(frame, start + 2)[0]
            if fragoff_m & 0xFFF9:
                return -1, start
            hlen = 8
        elif nxt == 51:
            hlen = (frame[start + 1] + 2) << 2  # AH counts 4-byte units, minus 2
        else:
            hlen = (frame[start + 1] + 1) << 3
        nxt = frame[start]
        start += hlen
        if start > end:
            raise MalformedFrame("IPv6 extension header past the payload length")
    return nxt, start


def l4_offset(frame: bytes, off: int) -> tuple[int, int, int] | None:
    """``(transport protocol, transport offset, end of the IP payload)`` of the IPv4 or IPv6
    packet at ``off`` (from :func:`l3_offset`), walking IPv6 extension headers exactly as the
    decoder does; None for a fragment, a jumbogram or no IP. For code that rewrites frames
    (report evidence); the decoder itself reads the same headers on its fast path."""
    if off >= len(frame):
        raise MalformedFrame("no IP header")
    version = frame[off] >> 4
    if version == 4:
        if len(frame) < off + 20:
            raise MalformedFrame("IPv4 header cut short")
        hl = (frame[off] & 0x0F) << 2
        tlen = (frame[off + 2] << 8) | frame[off + 3]
        return frame[off + 9], off + hl, off + tlen if tlen >= hl else len(frame)
    if version == 6:
        try:
            plen, nxt, _src, _dst = _IPV6(frame, off)
        except struct.error:
            raise MalformedFrame("IPv6 header cut short") from None
        if plen == 0:
            return None
        proto, start = _ipv6_upper(frame, nxt, off + 40, off + 40 + plen)
        if proto < 0:
            return None
        return proto, start, off + 40 + plen
    return None


def l3_offset(linktype: int, frame: bytes) -> tuple[int, int] | None:
    """``(offset, end)`` of the IPv4/IPv6 packet in ``frame``, or None when it carries neither."""
    if linktype == 1:
        if len(frame) < 14:
            raise MalformedFrame("Ethernet header cut short")
        return _from_ethertype(frame, 14, _U16(frame, 12)[0])
    if linktype in (101, 12, 14, 228, 229):
        return _raw_ip(frame, 0, linktype)
    if linktype == 0 or linktype == 108:
        if len(frame) < 4:
            raise MalformedFrame("loopback header cut short")
        # NULL is in the writer's byte order, LOOP in network order; accept either for both.
        family = _U32LE(frame, 0)[0]
        if family > 0xFFFF:
            family = _U32BE(frame, 0)[0]
        if family == 2 or family in _BSD_AF_INET6:
            return 4, len(frame)
        return None
    if linktype == 113:
        if len(frame) < 16:
            raise MalformedFrame("Linux cooked header cut short")
        return _from_ethertype(frame, 16, _U16(frame, 14)[0])
    if linktype == 276:
        if len(frame) < 20:
            raise MalformedFrame("Linux cooked v2 header cut short")
        return _from_ethertype(frame, 20, _U16(frame, 0)[0])
    if linktype == 9:
        off = 2 if frame[:2] == b"\xff\x03" else 0
        if len(frame) < off + 2:
            raise MalformedFrame("PPP header cut short")
        return _from_ppp(frame, _U16(frame, off)[0], off + 2)
    return None


def _raw_ip(frame: bytes, off: int, linktype: int) -> tuple[int, int]:
    if off >= len(frame):
        raise MalformedFrame("no IP header")
    version = frame[off] >> 4
    if linktype == 228 and version != 4 or linktype == 229 and version != 6:
        raise MalformedFrame(f"IP version {version} on link type {linktype}")
    if version == 4 or version == 6:
        return off, len(frame)
    raise MalformedFrame(f"IP version {version}")


def _from_ppp(frame: bytes, proto: int, off: int, end: int | None = None) -> tuple[int, int] | None:
    if proto == _PPP_IPV4 or proto == _PPP_IPV6:
        return off, len(frame) if end is None else end
    return None


def _from_ethertype(frame: bytes, off: int, etype: int) -> tuple[int, int] | None:
    """Follow VLAN tags, PPPoE and MPLS from an EtherType to the IP packet, or None."""
    tags = 0
    while etype in _ETHERTYPE_VLAN:
        tags += 1
        if tags > _MAX_VLAN_TAGS or off + 4 > len(frame):
            raise MalformedFrame("VLAN tag cut short")
        etype = _U16(frame, off + 2)[0]
        off += 4
    if etype == _ETHERTYPE_IPV4 or etype == _ETHERTYPE_IPV6:
        return off, len(frame)
    if etype == _ETHERTYPE_PPPOE:
        # version/type, code, session id, length (of the PPP frame), then the PPP protocol
        if off + 8 > len(frame):
            raise MalformedFrame("PPPoE header cut short")
        length = _U16(frame, off + 4)[0]
        if length < 2:
            raise MalformedFrame(f"PPPoE length {length}")
        return _from_ppp(frame, _U16(frame, off + 6)[0], off + 8, off + 6 + length)
    if etype in _ETHERTYPE_MPLS:
        while True:
            if off + 4 > len(frame):
                raise MalformedFrame("MPLS label stack cut short")
            bottom = frame[off + 2] & 1
            off += 4
            if bottom:
                break
        if off < len(frame) and frame[off] >> 4 in (4, 6):
            return off, len(frame)
        return None  # a pseudowire or something else under the labels
    return None


def format_endpoint(ip: bytes, port: int) -> str:
    """``"1.2.3.4:443"`` or ``"[2001:db8::1]:443"`` (RFC 5952 text form)."""
    text = _IP_TEXT.get(ip)
    if text is None:
        if len(_IP_TEXT) >= 65536:
            _IP_TEXT.clear()
        if len(ip) == 4:
            text = socket.inet_ntop(socket.AF_INET, ip)
        else:
            text = "[" + socket.inet_ntop(socket.AF_INET6, ip) + "]"
        _IP_TEXT[ip] = text
    return f"{text}:{port}"


# Addresses recur (servers always, clients often): their text is made once per address.
_IP_TEXT: Final[dict[bytes, str]] = {}
