"""A fast classic-pcap writer that turns TCP conversations into Ethernet frames.

Everything is packed with :mod:`struct` (no per-packet dpkt objects): the benchmark capture has
a million packets. Measured cost: about 6 µs per frame to segment, build (checksums included)
and write.

A conversation is an ordered list of ``(direction, bytes)`` chunks (``"c"``: client to server,
``"s"``: server to client), as :mod:`tlssniff.testing.handshakes` records them.
:func:`tcp_frames` makes the whole TCP life of it: SYN, SYN/ACK, ACK with random ISNs, data cut
at the MSS, ACKs (every second segment and at the end of a flight), FIN/ACK teardown, and
timestamps as a capture point next to the client would see them (a flight of the other side
arrives one RTT after the flight it answers). :class:`TcpOptions` damages the conversation in the
ways tests need: reordered, duplicated or overlapping segments, a dropped segment, no SYN,
a cut after N frames.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable

LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10

_REC = struct.Struct("<IIII")
_ETH4 = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"  # to server
_ETH4_BACK = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"  # to client
_ETH6 = _ETH4[:12] + b"\x86\xdd"
_ETH6_BACK = _ETH4_BACK[:12] + b"\x86\xdd"
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
# MSS, SACK permitted, NOP, window scale 7: what a Linux SYN carries (timestamps left out).
_SYN_OPTIONS = b"\x02\x04\x05\xb4\x04\x02\x01\x03\x03\x07"
_SYN_OPTIONS += b"\x01\x01"  # pad to 12 bytes


class PcapWriter:
    """Write classic pcap records (microsecond timestamps) to a binary file object."""

    def __init__(self, out: BinaryIO, snaplen: int = 262144,
                 linktype: int = LINKTYPE_ETHERNET) -> None:
        self.out = out
        self.frames = 0
        self.bytes = 0
        out.write(struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        usec = int(round((ts - sec) * 1_000_000))
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        n = len(frame)
        self.out.write(_REC.pack(sec, usec, n, n) + frame)
        self.frames += 1
        self.bytes += n + 16

    def write_all(self, frames: Iterable[tuple[float, bytes]]) -> None:
        for ts, frame in frames:
            self.write(ts, frame)


def _csum_fold(data: bytes) -> int:
    """The Internet checksum of ``data`` (even length).

    The ones'-complement sum of big-endian 16-bit words is the number itself modulo 0xFFFF
    (2**16 == 1 mod 0xFFFF), which CPython computes in C: ~1 µs for a full segment.
    """
    s = int.from_bytes(data, "big") % 0xFFFF
    return 0 if s == 0 else (~s) & 0xFFFF  # s == 0 means a sum of 0xFFFF: checksum 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


class FrameBuilder:
    """Builds the Ethernet/IP/TCP frames of one connection, both directions."""

    def __init__(self, client: Endpoint, server: Endpoint, ttl: int = 64,
                 rng: random.Random | None = None) -> None:
        rng = rng or random
        c_ip = ipaddress.ip_address(client.ip)
        s_ip = ipaddress.ip_address(server.ip)
        if c_ip.version != s_ip.version:
            raise ValueError("client and server must be the same IP version")
        self.v6 = c_ip.version == 6
        self.addr = {"c": (c_ip.packed, s_ip.packed), "s": (s_ip.packed, c_ip.packed)}
        self.ports = {"c": (client.port, server.port), "s": (server.port, client.port)}
        self.ttl = ttl
        self.ident = {"c": rng.getrandbits(16), "s": rng.getrandbits(16)}
        # Pseudo-header prefixes (without the TCP length), per direction.
        self.pseudo = {}
        for d, (src, dst) in self.addr.items():
            self.pseudo[d] = src + dst + (b"\x00\x00\x00\x06" if self.v6 else b"\x00\x06")

    def frame(self, direction: str, seq: int, ack: int, flags: int, payload: bytes = b"",
              window: int = 502) -> bytes:
        sport, dport = self.ports[direction]
        options = b""
        if flags & SYN:
            options, window = _SYN_OPTIONS, 64240  # SYN windows are never scaled
        off = (20 + len(options)) // 4
        tcp_len = 20 + len(options) + len(payload)
        hdr = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF if flags & ACK else 0,
                        off << 4, flags, window, 0, 0) + options
        if self.v6:
            pseudo = self.pseudo[direction] + tcp_len.to_bytes(4, "big")
        else:
            pseudo = self.pseudo[direction] + tcp_len.to_bytes(2, "big")
        body = pseudo + hdr + payload
        if len(body) & 1:
            body += b"\x00"
        csum = _csum_fold(body)
        tcp = hdr[:16] + csum.to_bytes(2, "big") + hdr[18:] + payload
        src, dst = self.addr[direction]
        if self.v6:
            ip = _IP6.pack(0x60000000, tcp_len, 6, self.ttl, src, dst)
            eth = _ETH6 if direction == "c" else _ETH6_BACK
        else:
            ident = self.ident[direction] = (self.ident[direction] + 1) & 0xFFFF
            ip = _IP4.pack(0x45, 0, 20 + tcp_len, ident, 0x4000, self.ttl, 6, 0, src, dst)
            ip = ip[:10] + _csum_fold(ip).to_bytes(2, "big") + ip[12:]
            eth = _ETH4 if direction == "c" else _ETH4_BACK
        return eth + ip + tcp


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """Ways to damage a conversation, for tests. Segment indexes count data segments only.

    - ``reorder``: data segment ``i`` and the next data segment of the same direction are
      captured in swapped order.
    - ``retransmit``: data segment ``i`` is captured a second time, later (same seq, same bytes).
    - ``overlap``: a retransmission covering the second half of data segment ``i`` and the first
      half of the next segment of the same direction (or the rest of ``i`` if there is none).
    - ``drop``: data segment ``i`` is missing from the capture (a gap).
    - ``omit_syn``: the three-way handshake is not captured (the connection started earlier).
    - ``cut_after``: only the first N frames are captured.
    - ``no_fin``: no teardown frames (the capture ends while the connection is open).
    """

    reorder: int | None = None
    retransmit: int | None = None
    overlap: int | None = None
    drop: int | None = None
    omit_syn: bool = False
    cut_after: int | None = None
    no_fin: bool = False


NO_DAMAGE = TcpOptions()


def tcp_frames(
    chunks: list[tuple[str, bytes]],
    client: Endpoint,
    server: Endpoint,
    *,
    start: float = 1_700_000_000.0,
    rtt: float = 0.020,
    mss: int = 1448,
    server_think: float = 0.0002,
    pauses: dict[int, float] | None = None,
    bandwidth: float = 1e9,
    options: TcpOptions = NO_DAMAGE,
    rng: random.Random | None = None,
) -> list[tuple[float, bytes]]:
    """The captured frames ``(timestamp, frame)`` of one TCP connection, in capture order.

    Timestamps never decrease. The capture point is next to the client: a client flight is seen
    when sent, the server's answer one ``rtt`` (plus ``server_think``) later. ``pauses`` maps a
    chunk index to extra idle seconds before it (a user reading a page, an idle keep-alive
    connection): that makes long-lived, overlapping connections.
    """
    rng = rng or random
    fb = FrameBuilder(client, server, rng=rng)
    isn = {"c": rng.getrandbits(32), "s": rng.getrandbits(32)}
    nxt = {"c": isn["c"] + 1, "s": isn["s"] + 1}  # next seq to send, per direction
    other = {"c": "s", "s": "c"}
    per_byte = 8.0 / bandwidth
    out: list[tuple[float, bytes]] = []
    # data segments: (index into ``out``, direction, seq, payload, ack), for the damage options
    data_segments: list[tuple[int, str, int, bytes, int]] = []
    t = start
    half = rtt / 2

    def emit(d: str, flags: int, payload: bytes = b"", seq: int | None = None) -> None:
        s = nxt[d] if seq is None else seq
        ack = nxt[other[d]]
        out.append((t, fb.frame(d, s, ack, flags, payload)))

    # Three-way handshake.
    emit("c", SYN, seq=isn["c"])
    t += rtt
    emit("s", SYN | ACK, seq=isn["s"])
    t += 0.00005
    emit("c", ACK)

    pauses = pauses or {}
    prev = "c"
    unacked = 0  # segments of the current flight not yet acknowledged
    for i, (d, data) in enumerate(chunks):
        pause = pauses.get(i, 0.0)
        if d != prev:
            # The other side answers: one RTT after the last client segment (seen from the
            # client side), or right after the server's flight arrives for client flights.
            t += rtt + server_think if d == "s" else 0.00003
            unacked = 0
        prev = d
        t += pause
        for off in range(0, len(data), mss):
            seg = data[off : off + mss]
            last = off + mss >= len(data)
            data_segments.append((len(out), d, nxt[d], seg, nxt[other[d]]))
            emit(d, ACK | (PSH if last else 0), seg)
            nxt[d] += len(seg)
            unacked += 1
            t += len(seg) * per_byte + 0.000002
            if unacked == 2 and not last:
                # Delayed ACK every second segment; from the server it arrives half an RTT on
                # (seen from the client side, ACKs of client data come back one RTT later, but
                # keeping them close keeps frame order simple and realistic enough).
                emit(other[d], ACK)
                unacked = 0
        nxt_dir = chunks[i + 1][0] if i + 1 < len(chunks) else None
        if nxt_dir == d:
            continue
        if nxt_dir is None or pauses.get(i + 1, 0.0) > 0.001:
            # A flight that no answer follows at once: the receiver's (delayed) pure ACK.
            # Otherwise the answer's first segment carries the ACK.
            t += half if d == "c" else 0.00004
            emit(other[d], ACK)
            unacked = 0

    if not options.no_fin:
        t += 0.0001
        emit("c", FIN | ACK)
        nxt["c"] += 1
        t += rtt
        emit("s", FIN | ACK)
        nxt["s"] += 1
        t += 0.00005
        emit("c", ACK)

    return _damage(out, data_segments, fb, options)


def _damage(out, data_segments, fb, options: TcpOptions) -> list[tuple[float, bytes]]:
    if options == NO_DAMAGE:
        return out
    frames = list(out)
    inserts: list[tuple[int, bytes]] = []  # (insert after frame index, frame)
    drop: set[int] = set()

    def next_same_dir(i: int) -> int | None:
        d = data_segments[i][1]
        for j in range(i + 1, len(data_segments)):
            if data_segments[j][1] == d:
                return j
        return None

    if options.reorder is not None:
        i = options.reorder
        j = next_same_dir(i)
        if j is None:
            raise ValueError(f"data segment {i} has no later segment to swap with")
        a, b = data_segments[i][0], data_segments[j][0]
        (ta, fa), (tb, fbytes) = frames[a], frames[b]
        frames[a], frames[b] = (ta, fbytes), (tb, fa)
    if options.retransmit is not None:
        idx, d, seq, seg, ack = data_segments[options.retransmit]
        j = next_same_dir(options.retransmit)
        after = data_segments[j][0] if j is not None else idx
        inserts.append((after, fb.frame(d, seq, ack, ACK | PSH, seg)))
    if options.overlap is not None:
        idx, d, seq, seg, ack = data_segments[options.overlap]
        j = next_same_dir(options.overlap)
        half = len(seg) // 2
        payload = seg[half:]
        after = idx
        if j is not None and data_segments[j][2] == seq + len(seg):
            nxt_seg = data_segments[j][3]
            payload += nxt_seg[: max(1, len(nxt_seg) // 2)]
            after = data_segments[j][0]
        inserts.append((after, fb.frame(d, seq + half, ack, ACK | PSH, payload)))
    if options.drop is not None:
        drop.add(data_segments[options.drop][0])
    if options.omit_syn:
        drop.update({0, 1, 2})

    by_pos: dict[int, list[bytes]] = {}
    for pos, frame in inserts:
        by_pos.setdefault(pos, []).append(frame)
    result = []
    for k, (ts, frame) in enumerate(frames):
        if k not in drop:
            result.append((ts, frame))
        for extra in by_pos.get(k, ()):
            result.append((ts + 0.0000005, extra))
    if options.cut_after is not None:
        result = result[: options.cut_after]
    return result


def write_pcap(path, conversations: Iterable[list[tuple[float, bytes]]]) -> int:
    """Write whole conversations one after another (small test captures); frames written."""
    with open(path, "wb") as f:
        w = PcapWriter(f)
        for frames in conversations:
            w.write_all(frames)
        return w.frames
