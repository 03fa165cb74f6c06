"""The offline and live pipeline: frames in, connection verdicts out.

One :class:`Analyzer` serves capture files, live capture and tests alike: the caller hands it
raw frames (``feed_frame``) or whole files (``analyze_file``), and every verdict goes to the
``on_verdict`` callback the moment it is known, so output streams and memory stays flat.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Final, Iterable

from tlssniff.analysis.classify import classify
from tlssniff.engine.connection import MIDSTREAM_TLS, TLS, TlsApp, TlsFlowTable
from tlssniff.analysis.verdict import ConnectionVerdict, Note
from tlssniff.capture.decode import (
    LINKTYPE_NAMES,
    SUPPORTED_LINKTYPES,
    Decoded,
    MalformedFrame,
    decode_frame,
    format_endpoint,
)
from tlssniff.capture.files import FrameSink, open_capture
from tlssniff.flow.table import Flow, FlowTable, Limits, flow_key

if TYPE_CHECKING:
    # Machine integers for mypyc (setup.py): annotations only, never evaluated by the
    # interpreter, so the pure-Python modules need no mypy_extensions.
    from mypy_extensions import i64

    from tlssniff.flow.udp import UdpFlow, UdpTable
    from tlssniff.tls.handshake import HandshakeTracker

# The collector's young-generation threshold while a capture file is walked (see analyze_file).
GC_THRESHOLD: Final = 50_000

# How many issued TLS <= 1.2 session ids are remembered for linking offers to issues.
MAX_ISSUED_IDS: Final = 50_000

# Where a verdict came from within its frame (Analyzer.order): the frame itself, then the
# periodic sweeps of the TCP and UDP tables that run after it.
PHASE_FRAME: Final = 0
PHASE_TCP_SWEEP: Final = 1
PHASE_UDP_SWEEP: Final = 2
_NO_FRAME: Final = 1 << 62  # the frame number of verdicts made at the end of input


# Each partition's fair share is SLOTS hash slots, but partition 0 takes READER_SLOTS of them.
# Its worker also walks the whole capture and hands the others their frames (engine/fanout.py);
# the parent, the last partition's worker, also merges and writes every line, and its reads of
# the chunks it is handed cost more time per instruction than the reader's walk. --jobs 2 on
# bench/out/handshakes.pcap with the places' pipe widened (parallel._widen), 6 alternating
# rounds, median of each round's --jobs 1 / --jobs 2: 1.678x with 33, 1.655x with 31 and
# 1.625x with 35 (CPU after the fork: 3.95 s the reader, 3.96 s the parent with 33).
SLOTS: Final = 32
READER_SLOTS: Final = 33


def partition_of(key: bytes, parts: int, reader_slots: int = READER_SLOTS) -> int:
    """The flow-hash partition of a TCP/UDP 4-tuple in the ``flow_key`` layout (source ip,
    destination ip, source port, destination port). Symmetric: both directions of a connection
    are one partition (the sum of the bytes is the same whichever end comes first)."""
    return partition_at(key, 0, len(key), parts, reader_slots)


def partition_at(buf: bytes, start: i64, n: i64, parts: i64,
                 reader_slots: i64 = READER_SLOTS) -> int:
    """:func:`partition_of` of ``buf[start:start + n]``, read in place (the frame fast path:
    no slice for a frame of another partition).

    Every worker of ``--jobs N`` on one capture runs this on every frame, so it is kept to
    twelve byte reads: the last four bytes of each address and both ports (all of an IPv4
    4-tuple), summed (symmetric), times a multiplier small enough that the product stays a
    machine int in the compiled build. Compiled, 45 ns a frame against 175 ns (IPv4) and 260 ns
    (IPv6) for the former sum of every byte times 2654435761 (a product that is no longer a
    machine int): a mypyc build of both, 5 million calls each on one frame, on the busy 2-core
    machine (load average 8)."""
    total: i64 = 0
    if n < 12:
        for i in range(start, start + n):
            total += buf[i]
        return share_of(total * 40503 >> 8, parts, reader_slots)
    p: i64 = start + n - 4  # the ports
    a: i64 = start + (n - 4) // 2 - 4  # the source address's last four bytes
    b: i64 = p - 4  # the destination address's
    # One byte at a time into the i64: a sum of the bytes as ints is tagged arithmetic, 17 ns
    # a call against 12.5 ns (mypyc, 1,000,000 calls).
    total = buf[a]
    total += buf[a + 1]
    total += buf[a + 2]
    total += buf[a + 3]
    total += buf[b]
    total += buf[b + 1]
    total += buf[b + 2]
    total += buf[b + 3]
    total += buf[p]
    total += buf[p + 1]
    total += buf[p + 2]
    total += buf[p + 3]
    return share_of(total * 40503 >> 8, parts, reader_slots)




def share_of(h: i64, parts: i64, reader_slots: i64 = READER_SLOTS) -> int:
    """The partition of flow hash ``h``: one of ``parts * SLOTS`` slots, ``reader_slots`` of
    them partition 0's, the rest dealt evenly to the others."""
    if parts < 2:
        return 0
    slots: i64 = parts * SLOTS
    # h >= 0 (partition_at), so a mask where the slots are a power of two (--jobs 2, 4, 8): the
    # compiled i64 % and // are calls with sign checks. The reader runs this on every frame:
    # perf (cpu-clock) on bench/out/handshakes.pcap, --jobs 2, gave the remainder 10 ms of its
    # 1.2 s.
    slot: i64 = h & (slots - 1) if slots & (slots - 1) == 0 else h % slots
    if slot < reader_slots:
        return 0
    if parts == 2:
        return 1
    return 1 + (slot - reader_slots) * (parts - 1) // (slots - reader_slots)


@dataclass(slots=True)
class Counters:
    """Everything that was seen, skipped or cut short: nothing is dropped silently."""

    frames: int = 0
    bytes: int = 0
    tcp_segments: int = 0
    udp_datagrams: int = 0
    other_frames: int = 0  # not TCP/UDP over IP (ARP, ICMP, IP fragments, unknown link types)
    malformed_frames: int = 0
    tcp_connections: int = 0
    tls_connections: int = 0
    not_tls_connections: int = 0
    midstream_tls: int = 0
    malformed_tls: int = 0
    oversized_tls: int = 0
    evicted: int = 0  # connections dropped for a limit before their verdict (note: evicted)
    evicted_memory: int = 0  # of those, for the pending-memory budget (--max-pending-memory)
    idle_expired: int = 0
    gaps: int = 0
    buffer_overflows: int = 0  # connections whose out-of-order buffer overflowed (bytes lost)
    udp_flows: int = 0  # UDP flows seen (each looked at for QUIC/DTLS only at its start)
    quic_connections: int = 0
    dtls_connections: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    warnings: list[str] = field(default_factory=list)  # damage read past (a capture cut short)
    errors: list[str] = field(default_factory=list)  # damage that stopped a file (corrupt records)

    def to_dict(self) -> dict:
        return asdict(self)


class Analyzer(FrameSink):
    def __init__(
        self,
        on_verdict: Callable[[ConnectionVerdict], None],
        limits: Limits | None = None,
        part: int = 0,
        parts: int = 1,
    ):
        """``part`` of ``parts``: analyse only the connections whose flow hash
        (:func:`partition_of`) is ``part``; frames that are neither TCP nor UDP count in part 0.
        Each verdict's place in the single-process order is then :attr:`order` when
        ``on_verdict`` is called, and :attr:`alternative` what it would be if its session id
        had been issued (see ``_classify``); engine/parallel.py merges the parts."""
        self.on_verdict = on_verdict
        self.limits = limits or Limits()
        self.counters = Counters()
        self.table: FlowTable = TlsFlowTable(self._new_app, self._flow_done, self.limits)
        self._issued: OrderedDict[bytes, None] = OrderedDict()
        self.capture_name: str | None = None
        # Made by the first UDP datagram (and only then imported, with QUIC's crypto): TCP-only
        # captures pay nothing for it.
        self.udp: UdpTable | None = None
        # analyze_file's per-file state, kept here for ``frame`` (the capture's FrameSink).
        self._flows = self.table.flows
        self._frame_no = 0
        self._first_ts = 0.0
        self._last_ts = 0.0
        self._unsupported: set[int] = set()  # link types already warned about (this capture)
        self.part = part
        self.parts = parts
        # Partition 0's hash slots of parts * SLOTS (share_of): more than its fair share when
        # the reader's partition has less else to do than the others (engine/parallel.py).
        self.reader_slots = READER_SLOTS
        # The fast path tests each frame's flow hash; False when a reader already sent this
        # Analyzer only the frames of its partition (engine/fanout.py).
        self.hash_frames = parts > 1
        self._next_sweep = 0.0  # capture time of the next periodic sweep; armed by frame one
        self._phase = PHASE_FRAME
        self._frame_now = 0  # the frame being read (the live path's frame_no, else _frame_no)
        self.order: tuple[int, int, int] = (0, 0, 0)
        self.alternative: tuple[bytes, ConnectionVerdict] | None = None

    # -- per frame ---------------------------------------------------------------------------

    def feed_frame(self, ts: float, linktype: int, frame: bytes, frame_no: int) -> bool:
        """One frame (the live path; ``frame`` adds an in-place fast path for capture files).

        Returns True when the frame belonged to a connection whose handshake was still being
        read (the frames worth keeping as evidence), False for everything the fast path skips.
        """
        c = self.counters
        c.frames += 1
        c.bytes += len(frame)
        last = c.last_ts
        if last is None:
            self._next_sweep = ts + self.table.sweep_interval()
        elif last >= self._next_sweep:
            self._sweep(last, self._frame_now)
        if c.first_ts is None:
            c.first_ts = ts
        c.last_ts = ts
        self._frame_now = frame_no
        return self._decoded_frame(ts, linktype, frame, frame_no, None, None)

    def _sweep(self, now: float, frame_no: int) -> None:
        """The periodic sweep of both flow tables, right after the first frame (``frame_no``,
        at capture time ``now``) past its deadline: a schedule of frame times only, so every
        partition of a capture sweeps where one process would. After the frame, not before it:
        a late packet of a connection, however long after the deadline, counts as activity."""
        self._frame_now = frame_no
        self._phase = PHASE_TCP_SWEEP
        self.table.sweep(now)
        if self.udp is not None:
            self._phase = PHASE_UDP_SWEEP
            self.udp.sweep(now)
        self._phase = PHASE_FRAME
        self._next_sweep = now + self.table.sweep_interval()

    def _decoded_frame(
        self, ts: float, linktype: int, frame: bytes, frame_no: int, key: bytes | None,
        flow: Flow | None,
    ) -> bool:
        """The slow path of both entries: decode the frame in full and hand it on. ``key`` and
        ``flow`` when the caller's fast path already looked them up. Returns True for frames of
        connections whose handshake is still being read (see feed_frame)."""
        c = self.counters
        try:
            d = decode_frame(linktype, frame)
        except MalformedFrame:
            if not self.part:
                c.malformed_frames += 1
            return False
        if d is None:
            if not self.part:
                c.other_frames += 1
                if linktype not in SUPPORTED_LINKTYPES and linktype not in self._unsupported:
                    self._unsupported_link(linktype)
            return False
        if self.parts > 1 and flow is None and partition_of(
            flow_key(d[1], d[2], d[3], d[4]), self.parts, self.reader_slots
        ) != self.part:
            return False
        if d[0] != 6:
            c.udp_datagrams += 1
            return self.udp_datagram(ts, d, frame_no)
        c.tcp_segments += 1
        if key is None:
            key = flow_key(d[1], d[2], d[3], d[4])
            flow = self.table.flows.get(key)
        if flow is not None and flow.done and not d[7] & 0x07:
            # Done connections skip the rest. SYN, FIN and RST of a finished connection still go
            # to the table: a FIN/RST lets the sweep forget it after CLOSED_GRACE instead of
            # idle_timeout (live at 330 conn/s without it: RSS +41 MB in 200 s, still rising)
            # and a bare SYN is a new connection on a reused client port.
            flow.last = ts
            return False
        # A FIN/RST of a finished connection is no handshake frame; a bare SYN starts one.
        handshake_frame = flow is None or not flow.done or (d[7] & 0x12) == 0x02
        self.table.segment(flow, key, ts, d, frame_no)
        return handshake_frame

    def _unsupported_link(self, linktype: int) -> None:
        """Frames of a link type the decoder does not read: said once per capture and type,
        instead of a silent "No TLS handshakes found"."""
        self._unsupported.add(linktype)
        name = LINKTYPE_NAMES.get(linktype)
        kind = f"link type {linktype}" + (f" ({name})" if name else "")
        where = f"{self.capture_name}: " if self.capture_name else ""
        self.counters.warnings.append(
            f"{where}frames of {kind} are not supported and were skipped (supported: "
            f"{', '.join(str(t) for t in sorted(SUPPORTED_LINKTYPES))})")

    def udp_datagram(self, ts: float, d: Decoded, frame_no: int) -> bool:
        """UDP transports (QUIC, DTLS) plug in here; returns True for handshake datagrams."""
        udp = self.udp
        if udp is None:
            from tlssniff.flow.udp import UdpTable

            udp = self.udp = UdpTable(self._udp_done, self.limits)
        return udp.datagram(ts, d, frame_no)

    def analyze_file(self, path: str, progress: Callable[[int, int | None], None] | None = None) -> None:
        """Read one capture through the pipeline. Files given one after another continue the same
        flow table (rotated captures of one link); call :meth:`finish` after the last one."""
        c = self.counters
        with open_capture(path) as cap:
            self.capture_name = str(path)
            self._reset_file_state()
            on_chunk = None
            if progress is not None:
                size = cap.size

                def on_chunk() -> None:
                    progress(cap.position, size)

            # Each connection allocates ~70 tracked objects and leaves no cycle behind (the
            # flow drops its app at its verdict), so the collector's default (a young pass
            # every 700 allocations, the whole heap of flows whenever it grew by a quarter)
            # mostly walks live flows: 2.1% of the instructions of the first 500,000 frames of
            # the handshake capture (callgrind, 4.04 G against 3.95 G with this threshold).
            # The objects made before the walk (the modules imported since the CLI's own
            # gc.freeze, the outputs) are frozen too, for the walk at least: the collector's
            # passes then traverse the flows only.
            thresholds = gc.get_threshold()
            gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
            was_frozen = gc.get_freeze_count() > 0
            gc.freeze()
            try:
                cap.walk(self, on_chunk)
            finally:
                if not was_frozen:
                    gc.unfreeze()  # as the caller had it (the CLI freezes for the process)
                gc.set_threshold(*thresholds)
            ts = self._last_ts if self._frame_no else None
            c.frames += self._frame_no
            c.bytes += cap.position
            if ts is not None:
                if c.first_ts is None:
                    c.first_ts = self._first_ts
                if c.last_ts is None or ts > c.last_ts:
                    c.last_ts = ts
            for message in cap.warnings:
                (c.errors if "corrupt" in message else c.warnings).append(message)
            if progress is not None:
                progress(cap.position, cap.size)

    def _reset_file_state(self) -> None:
        self._frame_no = 0
        self._unsupported = set()
        self._flows = self.table.flows

    def frame(self, ts: float, linktype: int, buf: bytes, start: int, end: int) -> None:
        """One frame of a capture file, in place (``buf[start:end]``; see FrameSink).

        The fast path (measured by bench/bench.py): most frames are Ethernet + IPv4/IPv6 + TCP
        of a connection whose verdict is known. Its key is sliced straight out of the buffer
        (addresses and ports are contiguous, the flow_key layout) and the frame costs one slice,
        one dict lookup and one attribute store; no decoding, no copy of the frame. Pure ACKs
        of connections still in their handshake are skipped the same way: without payload, SYN,
        FIN or RST they change nothing tlssniff reads. SYN, FIN and RST of finished connections
        go to the table (port reuse, closing).
        """
        if not self._frame_no:
            self._first_ts = ts
            self._next_sweep = ts + self.table.sweep_interval()
        elif self._last_ts >= self._next_sweep:
            self._sweep(self._last_ts, self._frame_no)  # after the previous frame
        self._frame_no += 1
        self._last_ts = ts
        key: bytes | None = None
        flow: Flow | None = None
        if linktype == 1 and end - start >= 48:
            s = start
            if buf[s + 12] == 8 and buf[s + 13] == 0 and buf[s + 14] == 0x45 and buf[s + 23] == 6:
                if self.hash_frames and partition_at(buf, s + 26, 12, self.parts,
                                                     self.reader_slots) != self.part:
                    return
                key = buf[s + 26 : s + 38]
                flow = self._flows.get(key)
                if flow is not None:
                    flags = buf[s + 47]
                    if not flags & 7 and (
                        flow.done
                        or (buf[s + 16] << 8 | buf[s + 17]) == 20 + (buf[s + 46] >> 4 << 2)
                    ):
                        flow.last = ts
                        self.counters.tcp_segments += 1
                        return
                    if flow.done and not flags & 2 and _whole_ipv4_tcp(buf, s, end):
                        self._closing(flow, ts, flags)
                        return
            elif (
                buf[s + 12] == 0x86 and buf[s + 13] == 0xDD and buf[s + 20] == 6 and end - s >= 68
            ):
                if self.hash_frames and partition_at(buf, s + 22, 36, self.parts,
                                                     self.reader_slots) != self.part:
                    return
                key = buf[s + 22 : s + 58]
                flow = self._flows.get(key)
                if flow is not None:
                    flags = buf[s + 67]
                    if not flags & 7 and (
                        flow.done or (buf[s + 18] << 8 | buf[s + 19]) == buf[s + 66] >> 4 << 2
                    ):
                        flow.last = ts
                        self.counters.tcp_segments += 1
                        return
                    if flow.done and not flags & 2 and _whole_ipv6_tcp(buf, s, end):
                        self._closing(flow, ts, flags)
                        return
        self._frame_now = self._frame_no
        self._decoded_frame(ts, linktype, buf[start:end], self._frame_no, key, flow)

    def _closing(self, flow: Flow, ts: float, flags: int) -> None:
        """A FIN or RST (no SYN) of a connection whose verdict is known, read in place: what
        ``_decoded_frame`` and ``FlowTable.segment`` do with it (the frame counts, the flow is
        marked closed), without decoding the frame. Such frames end each connection: 30,148
        of the first 300,000 frames of bench/out/handshakes.pcap (18,530 connections) take
        this path instead of the decoder (1,400 instructions a frame) and the table (callgrind,
        ``analyze -f jsonl``)."""
        flow.last = ts
        self.counters.tcp_segments += 1
        self.table.closing(flow, flags)

    def evicted(self) -> bool:
        """Whether a limit (--max-flows, UDP's) evicted a flow: the partitions of --jobs then
        differ from one process, which redoes the work."""
        return self.table.evictions > 0 or (self.udp is not None and self.udp.evictions > 0)

    def finish(self) -> None:
        """End of input: decide every open connection with what the capture holds."""
        self._frame_now = _NO_FRAME
        self._phase = PHASE_TCP_SWEEP
        self.table.finish_all()
        self._phase = PHASE_FRAME
        fc = self.table.counters
        c = self.counters
        c.tcp_connections = fc.flows
        c.evicted = fc.evicted
        c.idle_expired = fc.idle_expired
        c.gaps = fc.gaps
        c.evicted_memory = fc.evicted_memory
        c.buffer_overflows = fc.buffer_overflows
        if self.udp is not None:
            u = self.udp
            self._phase = PHASE_UDP_SWEEP
            u.finish_all()
            c.udp_flows = u.count
            c.quic_connections = u.quic
            c.dtls_connections = u.dtls
            c.evicted += u.evicted
            c.idle_expired += u.idle_expired

    # -- flow table callbacks --------------------------------------------------------------

    def _new_app(self, flow: Flow) -> TlsApp:
        return TlsApp(flow, self.limits.max_message)

    def _flow_done(self, flow: Flow) -> None:
        app = flow.app
        assert isinstance(app, TlsApp)
        c = self.counters
        if app.state == TLS:
            v = self._verdict(flow)
            tracker = app.tracker
            assert tracker is not None  # state TLS
            self._classify(tracker, v, app.end_reason)
        elif app.state == MIDSTREAM_TLS:
            c.midstream_tls += 1
            v = self._verdict(flow)
            v.note = Note.MISSING_START
        else:
            c.not_tls_connections += 1
            return
        c.tls_connections += 1
        v.starttls = app.starttls
        v.preamble = app.preamble
        v.proxied_client = app.proxied_client
        if self.alternative is not None:
            self.alternative[1].starttls = app.starttls
        if self.parts > 1:
            self.order = (self._frame_now, self._phase, flow.frame)
        self.on_verdict(v)

    def _udp_done(self, flow: UdpFlow) -> None:
        """A QUIC or DTLS handshake's verdict, by the same classifier as TLS over TCP."""
        app = flow.app
        assert app is not None
        v = ConnectionVerdict(
            ts=flow.ts,
            client=format_endpoint(*flow.client),
            server=format_endpoint(*flow.server),
            transport=app.transport,
            capture=self.capture_name,
        )
        self._classify(app.tracker, v, app.end_reason, app.early_data_seen)
        self.counters.tls_connections += 1
        if self.parts > 1:
            self.order = (self._frame_now, self._phase, flow.frame)
        self.on_verdict(v)

    def _classify(self, tracker: HandshakeTracker, v: ConnectionVerdict, end_reason: int | None,
                  early_data_seen: bool = False) -> None:
        """One classifier for TCP, QUIC and DTLS: the verdict, its counters, issued ids.

        A partition does not see the session ids the other partitions' connections issued: when
        the verdict asks whether its session id was issued, it is classified both ways and
        :attr:`alternative` keeps the answer for "issued" (the merge, which sees every verdict in
        order, picks one)."""
        if self.parts > 1:
            self.alternative = None
            asked: list[bytes] = []

            def ask(session_id: bytes) -> bool:
                asked.append(session_id)
                return False

            classify(tracker, v, ask, end_reason, early_data_seen)
            if asked:
                # What the verdict held before classify (_verdict, _udp_done).
                base = ConnectionVerdict(ts=v.ts, client=v.client, server=v.server,
                                         transport=v.transport, capture=v.capture)
                alt = classify(tracker, base, _issued_yes, end_reason, early_data_seen)
                if alt.to_dict() != v.to_dict():
                    self.alternative = (asked[0], alt)
        else:
            classify(tracker, v, self._was_issued, end_reason, early_data_seen)
        if tracker.error == "malformed":
            self.counters.malformed_tls += 1
        elif tracker.error == "oversized":
            self.counters.oversized_tls += 1
        if v.issued_session_id:
            self._remember_issued(bytes.fromhex(v.issued_session_id))

    def _verdict(self, flow: Flow) -> ConnectionVerdict:
        return ConnectionVerdict(
            ts=flow.ts,
            client=format_endpoint(flow.client_ip, flow.client_port),
            server=format_endpoint(flow.server_ip, flow.server_port),
            capture=self.capture_name,
        )

    def _was_issued(self, session_id: bytes) -> bool:
        return session_id in self._issued

    def _remember_issued(self, session_id: bytes) -> None:
        self._issued[session_id] = None
        if len(self._issued) > MAX_ISSUED_IDS:
            self._issued.popitem(last=False)


def _whole_ipv4_tcp(buf: bytes, s: int, end: int) -> bool:
    """The frame at ``buf[s:end]`` (Ethernet, IPv4 without options, TCP) is one that
    decode_frame's shortcut decodes as it stands: not a fragment, a TCP header that fits. Only
    then may the fast path act for the decoder (anything else is decoded: counted as
    malformed, another frame or a segment exactly as before)."""
    doff = buf[s + 46]
    data = 34 + ((doff >> 4) << 2)
    return (
        not (buf[s + 20] << 8 | buf[s + 21]) & 0x3FFF
        and doff >= 0x50
        and data <= 14 + (buf[s + 16] << 8 | buf[s + 17])
        and data <= end - s
    )


def _whole_ipv6_tcp(buf: bytes, s: int, end: int) -> bool:
    """:func:`_whole_ipv4_tcp` for Ethernet, IPv6 without extension headers, TCP."""
    plen = buf[s + 18] << 8 | buf[s + 19]
    doff = buf[s + 66]
    data = 54 + ((doff >> 4) << 2)
    return (
        end - s >= 70
        and buf[s + 14] >> 4 == 6
        and plen != 0
        and doff >= 0x50
        and data <= 54 + plen
        and data <= end - s
    )


def _issued_yes(session_id: bytes) -> bool:
    return True


def analyze_paths(
    paths: Iterable[str],
    on_verdict: Callable[[ConnectionVerdict], None],
    limits: Limits | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Analyzer:
    """Analyze capture files in order as one stream; returns the analyzer (its counters)."""
    analyzer = Analyzer(on_verdict, limits)
    for path in paths:
        analyzer.analyze_file(path, progress)
    analyzer.finish()
    return analyzer
