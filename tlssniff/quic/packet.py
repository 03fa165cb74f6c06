"""QUIC packet headers (RFC 9000 §17), Initial unprotection (RFC 9001 §5.4) and the frames an
Initial packet may carry (RFC 9000 §12.4). Pure functions over bytes; errors raise DecodeError.
"""

from __future__ import annotations

from dataclasses import dataclass

from tlssniff.quic.crypto import VERSION_2, DirectionKeys
from tlssniff.tls.messages import DecodeError

# Long-header packet types, named by meaning (their wire codes differ between v1 and v2).
INITIAL = "initial"
ZERO_RTT = "0rtt"
HANDSHAKE = "handshake"
RETRY = "retry"
SHORT = "1rtt"
VERSION_NEGOTIATION = "version_negotiation"

_TYPES_V1 = (INITIAL, ZERO_RTT, HANDSHAKE, RETRY)
_TYPES_V2 = (RETRY, INITIAL, ZERO_RTT, HANDSHAKE)  # RFC 9369 §3.2

MAX_CID = 20  # RFC 9000 §17.2: connection ids of v1 are at most 20 bytes


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """A variable-length integer (RFC 9000 §16); returns (value, next position)."""
    if pos >= len(data):
        raise DecodeError("varint past the end")
    first = data[pos]
    n = 1 << (first >> 6)
    if pos + n > len(data):
        raise DecodeError("varint past the end")
    v = first & 0x3F
    for i in range(1, n):
        v = (v << 8) | data[pos + i]
    return v, pos + n


@dataclass(slots=True)
class Packet:
    """One packet of a datagram; ``start``..``end`` bound it inside the datagram."""

    kind: str
    version: int
    dcid: bytes
    scid: bytes
    start: int
    end: int
    pn_offset: int = 0  # Initial/0-RTT/Handshake: where the protected packet number starts
    token: bytes = b""  # Initial: the token; Retry: the retry token (integrity tag excluded)


def split_datagram(data: bytes) -> list[Packet]:
    """The packets coalesced in one UDP datagram (RFC 9000 §12.2). A short-header packet runs to
    the end of the datagram. Raises DecodeError when the first packet is not QUIC."""
    out: list[Packet] = []
    pos = 0
    n = len(data)
    while pos < n:
        first = data[pos]
        if not first & 0x80:
            if not first & 0x40 and out:
                break  # padding after coalesced packets, not a packet
            out.append(Packet(SHORT, 0, b"", b"", pos, n))
            break
        if pos + 7 > n:
            raise DecodeError("truncated long header")
        version = int.from_bytes(data[pos + 1 : pos + 5], "big")
        p = pos + 5
        dlen = data[p]
        dcid = data[p + 1 : p + 1 + dlen]
        p += 1 + dlen
        if p >= n:
            raise DecodeError("truncated connection ids")
        slen = data[p]
        scid = data[p + 1 : p + 1 + slen]
        p += 1 + slen
        if p > n or len(dcid) != dlen or len(scid) != slen:
            raise DecodeError("truncated connection ids")
        if version == 0:
            out.append(Packet(VERSION_NEGOTIATION, 0, dcid, scid, pos, n))
            break
        if dlen > MAX_CID or slen > MAX_CID:
            raise DecodeError("connection id longer than 20 bytes")
        code = (first >> 4) & 3
        kind = (_TYPES_V2 if version == VERSION_2 else _TYPES_V1)[code]
        if kind == RETRY:
            if n - p < 16:
                raise DecodeError("Retry without its integrity tag")
            out.append(Packet(RETRY, version, dcid, scid, pos, n, 0, data[p : n - 16]))
            break
        token = b""
        if kind == INITIAL:
            tlen, p = varint(data, p)
            token = data[p : p + tlen]
            p += tlen
        length, p = varint(data, p)
        end = p + length
        if end > n or length < 20:  # 4 bytes of packet number room + a 16-byte sample
            raise DecodeError(f"{kind} packet length {length} does not fit the datagram")
        out.append(Packet(kind, version, dcid, scid, pos, end, p, token))
        pos = end
    return out


def decode_packet_number(truncated: int, nbits: int, largest: int) -> int:
    """RFC 9000 Appendix A.3."""
    expected = largest + 1
    win = 1 << nbits
    hwin = win // 2
    mask = win - 1
    candidate = (expected & ~mask) | truncated
    if candidate <= expected - hwin and candidate < (1 << 62) - win:
        return candidate + win
    if candidate > expected + hwin and candidate >= win:
        return candidate - win
    return candidate


def unprotect(
    data: bytes, pkt: Packet, keys: DirectionKeys, largest_pn: int
) -> tuple[int, bytes] | None:
    """Remove header protection and decrypt one Initial packet (RFC 9001 §5.4, §5.3).

    Returns (packet number, plaintext payload), or None when the keys do not open it."""
    pn_offset = pkt.pn_offset
    sample = data[pn_offset + 4 : pn_offset + 20]
    if len(sample) != 16:
        return None
    mask = keys.mask(sample)
    first = data[pkt.start] ^ (mask[0] & 0x0F)  # long header: the low 4 bits are protected
    pn_len = (first & 3) + 1
    pn_bytes = bytes(b ^ m for b, m in zip(data[pn_offset : pn_offset + pn_len], mask[1 : 1 + pn_len]))
    truncated = int.from_bytes(pn_bytes, "big")
    pn = decode_packet_number(truncated, pn_len * 8, largest_pn)
    header = bytes([first]) + data[pkt.start + 1 : pn_offset] + pn_bytes
    payload = keys.open(pn, header, data[pn_offset + pn_len : pkt.end])
    if payload is None:
        return None
    return pn, payload


# Frame types an Initial packet may carry (RFC 9000 §12.4, Table 3).
_PADDING = 0x00
_PING = 0x01
_ACK = 0x02
_ACK_ECN = 0x03
_CRYPTO = 0x06
_CLOSE_TRANSPORT = 0x1C
_CLOSE_APP = 0x1D


def initial_frames(payload: bytes) -> tuple[list[tuple[int, bytes]], int | None]:
    """The CRYPTO frames of a decrypted Initial payload as (offset, data), and the error code of
    a CONNECTION_CLOSE if one is there. Raises DecodeError for a frame Initials cannot carry."""
    crypto: list[tuple[int, bytes]] = []
    close = None
    pos = 0
    n = len(payload)
    while pos < n:
        ftype, pos = varint(payload, pos)
        if ftype == _PADDING:
            while pos < n and payload[pos] == 0:
                pos += 1
        elif ftype == _PING:
            continue
        elif ftype == _CRYPTO:
            offset, pos = varint(payload, pos)
            length, pos = varint(payload, pos)
            if pos + length > n:
                raise DecodeError("CRYPTO frame past the packet's end")
            crypto.append((offset, payload[pos : pos + length]))
            pos += length
        elif ftype == _ACK or ftype == _ACK_ECN:
            _, pos = varint(payload, pos)  # largest acknowledged
            _, pos = varint(payload, pos)  # delay
            count, pos = varint(payload, pos)
            _, pos = varint(payload, pos)  # first range
            for _ in range(2 * count + (3 if ftype == _ACK_ECN else 0)):
                _, pos = varint(payload, pos)
        elif ftype == _CLOSE_TRANSPORT or ftype == _CLOSE_APP:
            close, pos = varint(payload, pos)
            if ftype == _CLOSE_TRANSPORT:
                _, pos = varint(payload, pos)  # frame type
            rlen, pos = varint(payload, pos)
            pos += rlen
        else:
            raise DecodeError(f"frame type 0x{ftype:x} in an Initial packet")
    return crypto, close
