"""Fuzz targets: one function per parser, each taking arbitrary bytes.

Every target states its contract: the exceptions the code under test may raise on hostile input
(the "this is not valid" outcome of the three-way parse contract) are caught here; anything else
escaping is a finding, and so is a broken invariant (an ``AssertionError`` raised below).

Input layouts are small and forgiving so that mutated seeds stay meaningful:

* ``tls``: chunks ``[dir u8][len u16][bytes]``; ``dir & 1`` is the server. The chunks go through
  :class:`HandshakeTracker` (records, handshake messages across records, hellos, tickets,
  SSLv2) and then :func:`classify`, the verdict rules.
* ``hello``: ``[which u8][body]``: one handshake message body straight into ``parse_*``.
* ``reassembly``: ``[isn u32][limit u16]`` then segments ``[flags u8][offset u16][len u8]``
  of a known byte stream; the delivered bytes must be a prefix of that stream.
* ``pcap`` / ``pcapng``: a whole capture file through :class:`Analyzer` (reader, link decoding,
  flow table, TLS, verdicts) with tight limits, so eviction and expiry run too.
* ``decode``: ``[linktype selector u8][frame]`` into :func:`decode_frame`; the fast path must
  agree with the general decoder and with the pipeline's sliced flow key.
"""

from __future__ import annotations

import atexit
import os
import struct
import tempfile

from tlssniff.analysis.classify import classify
from tlssniff.flow.limits import END_EOF, END_EVICTED
from tlssniff.engine.pipeline import Analyzer
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.capture import decode as _decode_mod
from tlssniff.capture.decode import MalformedFrame, decode_frame
from tlssniff.errors import CaptureError
from tlssniff.flow.reassembly import StreamReassembler
from tlssniff.flow.table import Limits, flow_key
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.messages import (
    DecodeError,
    parse_client_hello,
    parse_new_session_ticket,
    parse_server_hello,
    parse_sslv2_client_hello,
)

# Link types the decode target picks from (supported ones, plus two it must refuse quietly).
LINKTYPES = (0, 1, 9, 12, 14, 101, 108, 113, 228, 229, 276, 105, 127)


def split_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """The ``tls`` layout: ``[dir u8][len u16][bytes]...``; a length past the end takes the rest."""
    out = []
    pos, n = 0, len(data)
    while pos + 3 <= n:
        d = data[pos]
        ln = (data[pos + 1] << 8) | data[pos + 2]
        pos += 3
        out.append((d & 1, data[pos : pos + ln]))
        pos += ln
    return out


def join_chunks(chunks: list[tuple[int, bytes]]) -> bytes:
    """Inverse of :func:`split_chunks` (chunks over 65535 bytes are split)."""
    out = bytearray()
    for d, b in chunks:
        for i in range(0, max(len(b), 1), 0xFFFF):
            piece = b[i : i + 0xFFFF]
            out += struct.pack("!BH", d, len(piece)) + piece
    return bytes(out)


def target_tls(data: bytes) -> None:
    t = HandshakeTracker(max_message=4096 if data[:1] == b"\x07" else 64 * 1024)
    for d, chunk in split_chunks(data):
        if d:
            t.server_data(chunk, 2)
        else:
            t.client_data(chunk, 1)
    t.finish()
    v = ConnectionVerdict(ts=0.0, client="c", server="s")
    classify(t, v, lambda sid: len(sid) == 32, END_EOF)
    classify(t, ConnectionVerdict(ts=0.0, client="c", server="s"), lambda sid: False, END_EVICTED)
    t.alert_text()
    assert t.error in (None, "malformed", "oversized"), t.error


_PARSERS = (parse_client_hello, parse_server_hello, parse_new_session_ticket,
            parse_sslv2_client_hello)


def target_hello(data: bytes) -> None:
    if not data:
        return
    parser = _PARSERS[data[0] % len(_PARSERS)]
    try:
        parser(data[1:])
    except DecodeError:
        pass


def _stream_byte(i: int) -> int:
    return (i * 131 + (i >> 8) * 7 + 1) & 0xFF


_STREAM = bytes(_stream_byte(i) for i in range(65536 + 16384))


def target_reassembly(data: bytes) -> None:
    if len(data) < 6:
        return
    isn, limit = struct.unpack_from("!IH", data)
    r = StreamReassembler(limit)
    start = None  # stream offset of the first byte delivered (0 after a SYN)
    got = bytearray()
    spans = []
    for pos in range(6, len(data) - 3, 4):
        flags, off, ln = struct.unpack_from("!BHB", data, pos)
        if flags & 1:
            r.syn(isn)
            if start is None:
                start = 0
            continue
        if flags & 0x80:
            ln *= 64  # big segments now and then
        if start is None:
            start = off  # no SYN: the first data segment starts the stream
        payload = _STREAM[off : off + ln]
        spans.append((off, off + len(payload)))
        out = r.add((isn + 1 + off) & 0xFFFFFFFF, payload)
        _check_pending(r)
        if out:
            got += out
    if start is not None:
        assert bytes(got) == _STREAM[start : start + len(got)], "delivered bytes are not the stream"
        if not r.gap:
            # Nothing was dropped: every byte contiguous from the start must have been delivered.
            end = start
            for a, b in sorted(spans):
                if a > end:
                    break
                end = max(end, b)
            assert len(got) == end - start, ("bytes held back", len(got), end - start)
    assert r.delivered == len(got), (r.delivered, len(got))


def _check_pending(r: StreamReassembler) -> None:
    held = sum(len(v) for v in (r.pending or {}).values())
    assert held == r.pending_bytes, (held, r.pending_bytes)
    assert r.pending_bytes <= r.limit, (r.pending_bytes, r.limit)


class _CaptureFile:
    """One scratch file reused for every input (tmpfs when there is one)."""

    def __init__(self, suffix: str) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.path = tempfile.mkstemp(suffix=suffix, prefix="tlssniff-fuzz-", dir=folder)
        os.close(fd)

    def write(self, data: bytes) -> str:
        with open(self.path, "wb") as f:
            f.write(data)
        return self.path


_scratch: dict[str, _CaptureFile] = {}


@atexit.register
def cleanup() -> None:
    """Remove the scratch capture files (the atheris engine calls this before ``os._exit``)."""
    for scratch in _scratch.values():
        try:
            os.unlink(scratch.path)
        except OSError:
            pass
    _scratch.clear()


def _tight_limits(data: bytes) -> Limits:
    if len(data) & 1:
        return Limits(max_flows=4, idle_timeout=5.0, max_buffer=1500, max_message=2048)
    return Limits()


def _analyze_bytes(data: bytes, suffix: str) -> None:
    scratch = _scratch.get(suffix)
    if scratch is None:
        scratch = _scratch[suffix] = _CaptureFile(suffix)
    path = scratch.write(data)
    verdicts = []
    analyzer = Analyzer(verdicts.append, _tight_limits(data))
    try:
        analyzer.analyze_file(path)
    except CaptureError:
        return  # unusable file: the one documented refusal
    analyzer.finish()
    table = analyzer.table
    assert not table.flows, "flows left after finish()"
    assert table.active == 0, table.active
    c = analyzer.counters
    assert c.tls_connections == len(verdicts), (c.tls_connections, len(verdicts))
    assert c.tls_connections + c.not_tls_connections <= c.tcp_connections + c.udp_flows
    for v in verdicts:
        v.to_dict() if hasattr(v, "to_dict") else None


def target_pcap(data: bytes) -> None:
    _analyze_bytes(data, ".pcap")


def target_pcapng(data: bytes) -> None:
    _analyze_bytes(data, ".pcapng")


def target_decode(data: bytes) -> None:
    if not data:
        return
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    frame = data[1:]
    try:
        d = decode_frame(linktype, frame)
    except MalformedFrame:
        d = "malformed"
    # The fast path must equal the general decoder (its docstring promises it).
    try:
        g = _decode_mod._decode(linktype, frame)
    except MalformedFrame:
        g = "malformed"
    except IndexError:
        g = "malformed"  # the general decoder is only reached via decode_frame's guards
    if d != "malformed" or g != "malformed":
        assert d == g, f"fast path {d!r} != general decoder {g!r}"
    if d is None or d == "malformed":
        return
    proto, src, dst, sport, dport, seq, ack, flags, payload = d
    assert proto in (6, 17) and len(src) == len(dst) and len(src) in (4, 16)
    assert 0 <= sport < 65536 and 0 <= dport < 65536
    # The pipeline's fast path slices the key out of Ethernet frames: it must be the real key
    # whenever the frame is a plain IPv4/IPv6 TCP frame.
    if linktype == 1 and proto == 6 and len(frame) >= 58:
        key = flow_key(src, dst, sport, dport)
        if frame[12] == 8 and frame[13] == 0 and frame[14] == 0x45 and frame[23] == 6:
            assert frame[26:38] == key, "fast-path IPv4 key differs from the decoded key"
        elif frame[12] == 0x86 and frame[13] == 0xDD and frame[20] == 6:
            assert frame[22:58] == key, "fast-path IPv6 key differs from the decoded key"


def target_preamble(data: bytes) -> None:
    """One TCP connection's two directions (``tls`` layout) through the TLS app: preamble
    detection (preamble.py), STARTTLS, then the tracker; the app's buffers stay
    bounded and it ends in a known state."""
    from tlssniff.engine.connection import TlsApp  # noqa: PLC0415
    from tlssniff.preamble import MAX_HELD  # noqa: PLC0415
    from tlssniff.flow.limits import END_EOF  # noqa: PLC0415
    from tlssniff.flow.table import Flow  # noqa: PLC0415

    flow = Flow((b"\x7f\x00\x00\x01", 40000), (b"\x7f\x00\x00\x02", 443), 0.0, False, 1, 1 << 16)
    app = TlsApp(flow, 64 * 1024)
    for i, (d, chunk) in enumerate(split_chunks(data)):
        if app.done or not chunk:
            continue
        app.data(not d, chunk, i + 1)
        assert app.held() <= 2 * MAX_HELD + 2 * 64 * 1024 + 65535 + 64, app.held()
    app.finish(END_EOF)
    assert app.state in (0, 1, 2, 3, 4, 5), app.state
    if app.proxied_client is not None:
        assert app.proxied_client.rpartition(":")[2].isdigit()


TARGETS = {
    "tls": target_tls,
    "preamble": target_preamble,
    "hello": target_hello,
    "reassembly": target_reassembly,
    "pcap": target_pcap,
    "pcapng": target_pcapng,
    "decode": target_decode,
}
