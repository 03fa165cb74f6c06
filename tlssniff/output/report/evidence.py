"""evidence.pcapng: the packets of the connections that matter, each annotated with its verdict.

The input captures are read again (tlssniff's own reader) and a frame is kept when its
addresses and ports are those of a chosen connection and its time falls in that connection's
handshake: from the connection's first packet to the last handshake bytes tlssniff read, plus
a few packets after (:data:`AFTER`), at most :data:`MAX_FRAMES_PER_CONNECTION`. A new SYN on
the same ports ends the connection (port reuse).

Every kept packet carries a pcapng ``opt_comment`` (an Enhanced Packet Block option) with the
connection's verdict, so ``tshark -r evidence.pcapng -Y frame.comment`` and Wireshark's packet
comments show the explanation in place. One Interface Description Block per link type.

With an :class:`~tlssniff.output.report.privacy.Anonymizer` the client's address is rewritten
in the IPv4/IPv6 header of every kept packet (IPv4 header, TCP and UDP checksums updated
incrementally, RFC 1624, so they stay valid even for frames cut by the snap length). With a
:class:`~tlssniff.output.report.privacy.Redactor`, session ids, tickets and PSK identities
found in the hellos and NewSessionTickets are overwritten with keyed bytes of the same length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.capture.decode import (
    PAYLOAD,
    PROTO,
    TCP_ACK,
    TCP_SYN,
    MalformedFrame,
    decode_frame,
    l3_offset,
    l4_offset,
)
from tlssniff.capture.files import open_capture
from tlssniff.capture.select import FlowFrames, flow_key
from tlssniff.capture.pcapng import PcapngWriter
from tlssniff.output.report.privacy import Anonymizer, Redactor, pack_ip, split_endpoint
from tlssniff.tls.messages import secret_spans
from tlssniff.tls.wire import CT_APPLICATION_DATA, CT_CHANGE_CIPHER_SPEC, CT_HANDSHAKE

AFTER = 4  # packets kept after the last handshake bytes (the client's Finished, data, FIN)
MAX_FRAMES_PER_CONNECTION = 200
SLACK = 1e-6  # timestamps are rounded to the microsecond in verdicts



@dataclass(slots=True)
class Chosen:
    """One connection to put in the file, and what its packets' comment says."""

    verdict: ConnectionVerdict
    comment: str
    cited: bool
    frames: list = field(default_factory=list)  # (ts, linktype, frame bytes)
    done: bool = False
    after: int = 0  # frames taken after the handshake's end


@dataclass(slots=True)
class EvidenceStats:
    connections: int = 0
    cited: int = 0
    sampled: int = 0
    packets: int = 0
    missing: int = 0  # chosen connections whose packets were not found again
    redacted_values: int = 0


def collect(inputs: list[str], chosen: list[Chosen]) -> None:
    """Read ``inputs`` again and attach to each chosen connection its frames (picked by
    :class:`~tlssniff.capture.select.FlowFrames`: the frames of other connections cost about
    what walking the records costs)."""
    index: dict[bytes, int] = {}
    groups: list[list[Chosen]] = []
    for c in chosen:
        cip, cport = split_endpoint(c.verdict.client)
        sip, sport = split_endpoint(c.verdict.server)
        for k in (flow_key(pack_ip(cip), cport, pack_ip(sip), sport),
                  flow_key(pack_ip(sip), sport, pack_ip(cip), cport)):
            i = index.get(k)
            if i is None:
                i = index[k] = len(groups)
                groups.append([])
            groups[i].append(c)
    for group in groups:
        group.sort(key=lambda c: c.verdict.ts)
    pending = sum(not _complete(c) for c in chosen)

    def take(i: int, ts: float, linktype: int, flags: int, frame: bytes) -> None:
        nonlocal pending
        for c in groups[i]:
            was = _complete(c)
            took = _take(c, ts, flags)
            if took:
                c.frames.append((ts, linktype, frame))
            if not was and _complete(c):
                pending -= 1
            if took:
                break
        if not pending:
            raise _AllFound

    sink = FlowFrames(index, take)
    try:
        for path in inputs:
            with open_capture(path) as cap:
                cap.walk(sink)
    except _AllFound:
        pass


class _AllFound(Exception):
    """Every chosen connection has its frames: the rest of the input is not read. Measured on
    the 400,000-connection egress capture (bench/egress.py), whose evidence lies in its first
    minutes: the walk over all 2 GB had cost 4.5 s of the report's 88."""


def _complete(c: Chosen) -> bool:
    """No later frame of a capture in time order is taken for ``c`` (see _take)."""
    return c.done or c.after >= AFTER or len(c.frames) >= MAX_FRAMES_PER_CONNECTION


def _take(c: Chosen, ts: float, flags: int) -> bool:
    v = c.verdict
    if c.done or ts < v.ts - SLACK:
        return False
    if c.frames and flags & TCP_SYN and not flags & TCP_ACK and ts > c.frames[0][0]:
        c.done = True  # the same ports again: a new connection
        return False
    end = max(x for x in (v.ts, v.client_hello_ts, v.server_hello_ts, v.handshake_end_ts)
              if x is not None)
    if ts > end + SLACK:
        if c.after >= AFTER:
            c.done = True
            return False
        c.after += 1
    if len(c.frames) >= MAX_FRAMES_PER_CONNECTION:
        c.done = True
        return False
    return True


# -- rewriting ------------------------------------------------------------------------------


def _csum_update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 incremental update of a ones'-complement checksum for a 16-bit-aligned change."""
    s = ~csum & 0xFFFF
    for i in range(0, len(old), 2):
        s += (~((old[i] << 8) | old[i + 1])) & 0xFFFF
        s += (new[i] << 8) | new[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _locate(linktype: int, frame: bytes) -> tuple[int, int, int, int] | None:
    """(IP offset, IP version, transport protocol, transport offset) or None, found by the
    decoder's own walkers (:func:`~tlssniff.capture.decode.l3_offset`, ``l4_offset``);
    protocol -1 when the transport header is not reached (the IP header is still rewritten)."""
    try:
        where = l3_offset(linktype, frame)
    except (MalformedFrame, IndexError):
        return None
    if where is None or where[0] >= len(frame):
        return None
    off = where[0]
    version = frame[off] >> 4
    if not (version == 4 and len(frame) >= off + 20 or version == 6 and len(frame) >= off + 40):
        return None
    try:
        l4 = l4_offset(frame, off)
    except MalformedFrame:
        l4 = None
    if l4 is None:
        return off, version, -1, len(frame)
    return off, version, l4[0], l4[1]


def rewrite_address(linktype: int, frame: bytes, old: bytes, new: bytes) -> bytes:
    """``frame`` with IP address ``old`` replaced by ``new`` (source or destination), the IPv4
    header checksum and the TCP/UDP checksum updated. Unchanged when the frame is not IP."""
    where = _locate(linktype, frame)
    if where is None:
        return frame
    off, version, proto, l4 = where
    buf = bytearray(frame)
    if version == 4 and len(old) == 4:
        fields = (off + 12, off + 16)
        ipsum = off + 10
    elif version == 6 and len(old) == 16:
        fields = (off + 8, off + 24)
        ipsum = None
    else:
        return frame
    l4sum = None
    if proto == 6 and l4 + 18 <= len(buf):
        l4sum = l4 + 16
    elif proto == 17 and l4 + 8 <= len(buf):
        l4sum = l4 + 6
        if version == 4 and buf[l4sum:l4sum + 2] == b"\0\0":
            l4sum = None  # IPv4 UDP without checksum stays without
    for pos in fields:
        if bytes(buf[pos:pos + len(old)]) != old:
            continue
        buf[pos:pos + len(old)] = new
        if ipsum is not None:
            cs = struct.unpack_from("!H", buf, ipsum)[0]
            struct.pack_into("!H", buf, ipsum, _csum_update(cs, old, new))
        if l4sum is not None:
            cs = struct.unpack_from("!H", buf, l4sum)[0]
            cs = _csum_update(cs, old, new)
            if proto == 17 and cs == 0:
                cs = 0xFFFF
            struct.pack_into("!H", buf, l4sum, cs)
    return bytes(buf)


def redact_payload(
    linktype: int, frame: bytes, redactor: Redactor, known: dict[bytes, str]
) -> tuple[bytes, int]:
    """Overwrite session ids, tickets and PSK identities in the TLS handshake records that start
    in this frame's TCP payload; then any ``known`` value (ids seen whole elsewhere) anywhere.
    Returns the new frame and how many values were replaced."""
    try:
        d = decode_frame(linktype, frame)
    except MalformedFrame:
        return frame, 0
    if d is None or d[PROTO] != 6 or not d[PAYLOAD]:
        return frame, 0
    payload = d[PAYLOAD]
    start = frame.find(payload) if len(payload) > 8 else -1
    if start < 0:
        return frame, 0
    buf = bytearray(frame)
    spans = _secret_spans(payload)
    n = 0
    for kind, a, b in spans:
        value = bytes(payload[a:b])
        if value and len(value) >= 8:
            known[value] = kind
            buf[start + a:start + b] = redactor.raw(kind, value)
            n += 1
    # values seen whole in another frame (a hello split across segments)
    for value, kind in known.items():
        i = buf.find(value, start)
        while i >= 0:
            buf[i:i + len(value)] = redactor.raw(kind, value)
            n += 1
            i = buf.find(value, i + len(value))
    if n:
        where = _locate(linktype, frame)
        if where is not None and where[2] == 6 and where[3] + 18 <= len(buf):
            l4 = where[3]
            old, new = frame[l4:], bytes(buf[l4:])
            if len(old) % 2:
                old, new = old + b"\0", new + b"\0"
            cs = struct.unpack_from("!H", buf, l4 + 16)[0]
            struct.pack_into("!H", buf, l4 + 16, _csum_update(cs, old, new))
    return bytes(buf), n


def _secret_spans(p: bytes) -> list[tuple[str, int, int]]:
    """(kind, start, end) of secrets in the handshake messages wholly inside ``p``'s records
    (the record layer is walked here; each message is read by the TLS parsers themselves,
    :func:`tlssniff.tls.messages.secret_spans`)."""
    out = []
    off = 0
    while (off + 5 <= len(p) and CT_CHANGE_CIPHER_SPEC <= p[off] <= CT_APPLICATION_DATA
           and p[off + 1] == 3):
        rlen = int.from_bytes(p[off + 3:off + 5], "big")
        body_start, body_end = off + 5, min(off + 5 + rlen, len(p))
        if p[off] == CT_HANDSHAKE:
            m = body_start
            while m + 4 <= body_end:
                mlen = int.from_bytes(p[m + 1:m + 4], "big")
                if m + 4 + mlen > body_end:
                    break
                b = m + 4
                out += [(k, b + x, b + y) for k, x, y in secret_spans(p[m], bytes(p[b:b + mlen]))]
                m += 4 + mlen
        off = off + 5 + rlen
    return out

# -- writing --------------------------------------------------------------------------------


def write_pcapng(
    out: BinaryIO,
    chosen: list[Chosen],
    anon: Anonymizer | None = None,
    redactor: Redactor | None = None,
) -> EvidenceStats:
    """Write the chosen connections' frames in time order, each with its comment."""
    stats = EvidenceStats()
    packets = []
    for c in chosen:
        stats.connections += 1
        if c.cited:
            stats.cited += 1
        else:
            stats.sampled += 1
        if not c.frames:
            stats.missing += 1
        old = new = None
        if anon is not None:
            ip, _ = split_endpoint(c.verdict.client)
            old = pack_ip(ip)
            new = anon.packed.get(old)
        for ts, linktype, frame in c.frames:
            packets.append((ts, linktype, frame, c.comment, old, new))
    packets.sort(key=lambda p: p[0])
    writer = PcapngWriter(out, application="report")
    known: dict[bytes, str] = {}
    leak = {pack_ip(a) for a in anon.leaks()} if anon is not None else set()
    for ts, linktype, frame, comment, old, new in packets:
        iface = writer.interface_for(linktype)
        if new is not None:
            frame = rewrite_address(linktype, frame, old, new)
            # Anything left (a tunnel's inner header, a copy in the payload) is overwritten too.
            for raw in leak:
                if raw in frame:
                    frame = frame.replace(raw, anon.packed[raw])
        if redactor is not None:
            frame, n = redact_payload(linktype, frame, redactor, known)
            stats.redacted_values += n
        writer.write(ts, frame, iface, comment)
        stats.packets += 1
    return stats
