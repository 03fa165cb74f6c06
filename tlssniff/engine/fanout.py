"""One reader, N analysis workers: ``--jobs N`` on one uncompressed pcap (engine/parallel.py).

The reader walks the capture's record headers once, finds each frame's flow-hash partition
(:func:`~tlssniff.engine.pipeline.partition_at`, the test the workers' fast path makes) and
hands every other worker, per chunk of the file, only the places of its own frames: ``(frame
number, record offset)`` pairs into that chunk, which the worker reads itself from the page
cache (``os.pread``). A worker therefore neither walks nor looks at another partition's frames.
The reader is partition 0's worker as well (:func:`run_reader_worker`): it analyses its own
frames as it meets them, in the buffer it walks (no process of its own for the walk, no
message and no second read for partition 0). Frames the reader cannot place cheaply (not
Ethernet + IPv4/IPv6 + TCP: UDP, VLAN, other link types, ARP...) go to every worker, whose
Analyzer decides as it does when it walks the whole file (its partition, or worker 0 for frames
that are neither TCP nor UDP).

What one process decides from frames a worker no longer sees comes from the reader:

- the periodic sweeps: the reader keeps the schedule on every frame's time (the one
  ``Analyzer.frame`` keeps) and tells each worker where, between its own frames, a sweep runs
  and with which frame number and time; a worker's Analyzer never sweeps by itself;
- the counters of the whole file (frames, bytes, first and last time, the capture's warnings
  and errors), from the reader's walk.

Each worker sends its records (the verdicts' places in the one-process order, their JSONL/ECS
lines as UTF-8 bytes or, for the table, their diagnostics records, ...: see
:class:`LineKeeper`) after each chunk, with a watermark: no later
record of that worker comes before ``(last frame number of the chunk, PHASE_TCP_SWEEP, 0)``.
They travel as flat lists in :mod:`marshal` (:func:`records_message`), not as a tuple per
record in pickle.
The parent (:func:`merge_lines`) merges the workers' records in the one-process order as they
come, writing a record once every other worker has either a later record or a later watermark;
it reads from whichever worker has something, so no worker waits on the parent for long (no
deadlock through the reader, whatever the partitions' sizes: the reader waits only on the
other workers' input, which they drain whatever the parent does, and on the parent's, which it
drains between merges) and the parent holds at most a chunk or two of records. The parent is
the last partition's worker too (:class:`WorkerLoop`, given to merge_lines as ``local``): its
chunks come from the reader like any worker's, and its records go to the merge unpickled.
Compiled with the hot path (setup.py).
"""

from __future__ import annotations

import gc
import marshal
import os
import pickle
import stat
import struct
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, Final

from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.capture import files
from tlssniff.capture.files import MAX_CAPLEN, CaptureFile, pcap_record
from tlssniff.engine.merge import IssuedIds, OrderedAggregate
from tlssniff.engine.pipeline import (GC_THRESHOLD, PHASE_TCP_SWEEP, READER_SLOTS, Analyzer,
                                      partition_at)

if TYPE_CHECKING:
    # Machine integers for mypyc (setup.py), as in capture/files.py: annotations only.
    from mypy_extensions import i64

_INF: Final = float("inf")
# A frame's place in the reader's message: its number counted from the chunk's first frame
# (1 for that one) << _OFF_BITS | its record's offset in the chunk (a chunk is at most
# CHUNK_SIZE plus a record: 1.25 MB, so at most 82,000 records of 16 bytes).
_OFF_BITS: Final = 21
_OFF_MASK: Final = (1 << _OFF_BITS) - 1
# A record's place in the one-process order, Analyzer.order ``(frame, phase, flow frame)``,
# travels as two ints, ``frame * _PHASES + phase`` and the flow frame (:meth:`LineKeeper.keep`):
# compared pairwise they order records as the tuples do (phase < _PHASES).
_PHASES: Final = 4
_END: Final = 1 << 66  # a watermark's first key past every record's, those of finish() included

# pcap magic: (little-endian, timestamp divisor), as capture/files.py reads them.
PCAP_MAGIC: Final = {
    b"\xd4\xc3\xb2\xa1": (True, 1_000_000),
    b"\xa1\xb2\xc3\xd4": (False, 1_000_000),
    b"\x4d\x3c\xb2\xa1": (True, 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (False, 1_000_000_000),
}


def pcap_layout(path: str) -> tuple[bool, int] | None:
    """``(little-endian, timestamp divisor)`` of an uncompressed pcap in a regular file (the
    workers read it again by offset), else None (pcapng, gzip, a pipe, anything else: those
    take the per-worker walk)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return PCAP_MAGIC.get(f.read(4))
    except OSError:
        return None


# -- the reader ------------------------------------------------------------------------------


class Reader:
    """The reader: walks an uncompressed pcap's records once (the walk of capture/files.py
    ``_scan_pcap``: the same chunks, the same checks and warnings, on ``cap``, the file opened
    and checked by open_capture) and sends each worker, per chunk, the places of its frames and
    the sweeps between them. What analyze_file counts of the whole file is left in ``n``
    (frames), ``position`` (bytes read), ``first_ts`` and ``last_ts``.

    With ``local`` (partition 0's Analyzer, readied by :func:`start_worker`) the reader is that
    partition's worker too: its frames go straight to ``local.frame`` and its sweeps run where
    they fall, nothing is sent for it, and ``flushed`` is called after each chunk (to send its
    records with the watermark ``n``)."""

    def __init__(self, cap: CaptureFile, layout: tuple[bool, int], parts: int,
                 interval: float, send: Callable[[int, bytes], None],
                 local: Analyzer | None = None,
                 flushed: Callable[[int], None] | None = None,
                 reader_slots: int = READER_SLOTS) -> None:
        self.cap = cap
        self.reader_slots = reader_slots  # as every partition's Analyzer has it
        self.local = local
        self.flushed = flushed
        self.le = layout[0]
        self.div = float(layout[1])
        self.parts = parts
        self.interval = interval
        self.send = send
        self.frames: list[list[int]] = [[] for _ in range(parts)]
        self.sweeps: list[list[tuple[int, int, float]]] = [[] for _ in range(parts)]
        self.chunk_n = 0  # the frames before the chunk being scanned
        self.n = 0
        self.position = 0
        self.first_ts = 0.0
        self.last_ts = 0.0
        self.next_sweep = 0.0
        snaplen = cap.snaplen or 0
        self.maxcap = MAX_CAPLEN if snaplen == 0 else min(MAX_CAPLEN, 4 * snaplen)
        self.linktype = cap.linktype or 0

    def run(self, path: str) -> None:
        chunk_size: int = files.CHUNK_SIZE
        fd = os.open(path, os.O_RDONLY)
        try:
            buf = os.pread(fd, chunk_size, 0)
            self.position = len(buf)
            while len(buf) < 32:
                more = os.pread(fd, chunk_size, self.position)
                if not more:
                    break
                self.position += len(more)
                buf += more
            base = 0
            off = 24
            while True:
                off, caplen = self.scan(buf, off)
                self.flush(base, len(buf))
                if caplen > self.maxcap:
                    self.cap._warn_corrupt(base + off, self.n, f"caplen {caplen}")
                    return
                # The next chunk with the incomplete record before it, in one read (what
                # ``buf[off:] + read(chunk_size)`` gives, without copying the chunk twice).
                rest = len(buf) - off
                nxt = os.pread(fd, rest + chunk_size, base + off)
                got = len(nxt) - rest
                if got <= 0:
                    if rest > 0:
                        self.cap._warn_truncated(base + off, self.n)
                    return
                self.position += got
                base += off
                buf = nxt
                off = 0
        finally:
            os.close(fd)

    def scan(self, buf: bytes, off: i64) -> tuple[int, int]:
        """Every complete record of ``buf`` from ``off``: returns where the first incomplete
        (or corrupt) one starts and the caplen read last."""
        # Machine integers (i64) for the walk, as in CaptureFile._scan_pcap.
        blen: i64 = len(buf)
        limit: i64 = blen - 16
        le = self.le
        div = self.div
        maxcap: i64 = self.maxcap
        parts: i64 = self.parts
        slots: i64 = self.reader_slots
        frames = self.frames
        first: i64 = self.chunk_n
        ethernet = self.linktype == 1
        n: i64 = self.n
        last_ts = self.last_ts
        local = self.local
        own: i64 = 0 if local is not None else -1  # the partition the reader analyses itself
        linktype = self.linktype
        caplen: i64 = 0
        sec: i64
        frac: i64
        s: i64
        end: i64
        w: i64
        while off <= limit:
            sec, frac, caplen = pcap_record(buf, off, le)
            s = off + 16
            end = s + caplen
            if caplen > maxcap or end > blen:
                break
            ts = float(sec) + float(frac) / div
            if not n:
                self.first_ts = ts
                self.next_sweep = ts + self.interval
            elif last_ts >= self.next_sweep:
                # Analyzer.frame's schedule: a sweep after frame n, at its time.
                for w in range(parts):
                    if w == own and local is not None:
                        local._sweep(last_ts, n)
                        local._next_sweep = _INF
                    else:
                        self.sweeps[w].append((len(frames[w]), n, last_ts))
                self.next_sweep = last_ts + self.interval
            n += 1
            last_ts = ts
            if ethernet and caplen >= 48:
                w = -1
                if (buf[s + 12] == 8 and buf[s + 13] == 0 and buf[s + 14] == 0x45
                        and buf[s + 23] == 6):
                    w = partition_at(buf, s + 26, 12, parts, slots)
                elif (buf[s + 12] == 0x86 and buf[s + 13] == 0xDD and buf[s + 20] == 6
                        and caplen >= 68):
                    w = partition_at(buf, s + 22, 36, parts, slots)
                if w >= 0:
                    if w != own:
                        frames[w].append((n - first) << _OFF_BITS | off)
                    elif local is not None:
                        _analyse_own(local, n, ts, linktype, buf, s, end)
                    off = end
                    continue
            for w in range(parts):
                if w != own:
                    frames[w].append((n - first) << _OFF_BITS | off)
                elif local is not None:
                    _analyse_own(local, n, ts, linktype, buf, s, end)
            off = end
        self.n = n
        self.last_ts = last_ts
        return off, caplen

    def flush(self, base: int, blen: int) -> None:
        """Send every worker its share of the chunk (also when it is empty: the frame number
        read so far is the worker's watermark)."""
        assert blen <= _OFF_MASK
        for w in range(0 if self.local is None else 1, self.parts):
            self.send(w, pickle.dumps((base, blen, places_bytes(self.frames[w]), self.sweeps[w],
                                       self.chunk_n, self.n), protocol=pickle.HIGHEST_PROTOCOL))
            self.frames[w] = []
            self.sweeps[w] = []
        self.chunk_n = self.n
        if self.flushed is not None:
            self.flushed(self.n)


def places_bytes(places: list[int]) -> bytes:
    """A worker's places as the reader sends them: 8 bytes each, little-endian.

    One bytes object a chunk instead of the list: pickling the list wrote each int, and the
    worker unpickled it into 60,000 ints a chunk, walked them (cache misses: they lie all over
    the heap) and freed them again. Callgrind, the first 300,000 frames of bench/
    handshakes.pcap with ``--jobs 2``: the reader 2.05 G instructions against 2.10 G, the
    other worker 1.73 G against 1.82 G; output unchanged. ``struct.pack`` rather than
    ``array("q", places)``, which parses a format for each item: 24 ns a place against 35."""
    return struct.pack(f"<{len(places)}q", *places)


def _analyse_own(local: Analyzer, n: int, ts: float, linktype: int, buf: bytes, s: int,
                 end: int) -> None:
    """Frame ``n`` (counted from 1) is the reader's own partition's: its Analyzer takes it."""
    local._frame_no = n - 1
    local.frame(ts, linktype, buf, s, end)
    if n == 1:
        local._next_sweep = _INF  # frame one armed the schedule: the reader keeps its own


# -- a worker --------------------------------------------------------------------------------


def start_worker(a: Analyzer, path: str) -> None:
    """Ready ``a`` for frames handed to it by :func:`feed` (what analyze_file does first)."""
    a.capture_name = str(path)
    a._reset_file_state()
    a._next_sweep = _INF


def feed(a: Analyzer, buf: bytes, frames: bytes, sweeps: list[tuple[int, int, float]],
         le: bool, div: float, linktype: int, first: i64) -> int:
    """One chunk of a worker's frames: ``frames`` holds each frame's place (its number counted
    from the chunk's first frame, after the ``first`` frames before the chunk, shifted left by
    _OFF_BITS, or'ed with its pcap record's offset in ``buf``), 8 bytes little-endian each
    (:func:`places_bytes`; below 2**40, so five bytes are read), ``sweeps`` (index in
    ``frames``, frame number, time) of the sweeps to run before the frame at that index (or at
    the end). Returns the number of the worker's last frame."""
    # Machine integers (i64) for the walk, as in CaptureFile._scan_pcap.
    no: i64 = first
    n: i64 = len(frames) >> 3
    ns: i64 = len(sweeps)
    si: i64 = 0
    at: i64 = sweeps[0][0] if ns else n + 1
    j: i64
    place: i64
    off: i64
    sec: i64
    frac: i64
    caplen: i64
    for i in range(n):
        while at == i:
            _, m, now = sweeps[si]
            a._sweep(now, m)
            a._next_sweep = _INF
            si += 1
            at = sweeps[si][0] if si < ns else n + 1
        j = i << 3
        place = (frames[j] | frames[j + 1] << 8 | frames[j + 2] << 16 | frames[j + 3] << 24
                 | frames[j + 4] << 32)
        no = first + (place >> _OFF_BITS)
        off = place & _OFF_MASK
        sec, frac, caplen = pcap_record(buf, off, le)
        a._frame_no = no - 1
        a.frame(float(sec) + float(frac) / div, linktype, buf, off + 16, off + 16 + caplen)
        if no == 1:
            a._next_sweep = _INF  # frame one armed the schedule: the reader keeps it
    while si < ns:
        _, m, now = sweeps[si]
        a._sweep(now, m)
        a._next_sweep = _INF
        si += 1
    return no


class LastLine:
    """A file-like that keeps the last line VerdictWriter wrote (its one write per verdict)."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text = text


# (keys, lines, issued ids, alternatives): see LineKeeper. A "line" is UTF-8 bytes, or the
# diagnostics' record of the verdict (analysis/diagnostics.py diag_record) for the table.
Records = tuple[list[int], list[Any], list[str | None], list[tuple]]


class Keeper:
    """A worker's ``on_verdict`` (``keep``), what it hands the parent after each chunk
    (``take``) and its end (``close``, once its last records are taken): :class:`LineKeeper`
    for the lines and the table's records, :class:`SpoolKeeper` for the others."""

    analyzer: Analyzer | None
    agg: OrderedAggregate | None

    def keep(self, v: ConnectionVerdict) -> None:
        raise NotImplementedError

    def take(self) -> Records:
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to close (a worker's records go to the parent)."""


class SpoolKeeper(Keeper):
    """A worker's ``on_verdict`` for the outputs that need every verdict (json, parquet: every
    verdict goes through the run's sinks, aggregation and diagnostics included):
    its verdicts, ``(order, verdict, alternative)`` as parallel.analyze_part spools them,
    pickled in order into ``spool`` after each chunk. It hands the parent no records (the
    merge only keeps the chunks flowing); parallel.merge_parts replays the spools once every
    partition is known to be exact, as for the workers that walk the whole file."""

    def __init__(self, spool: str) -> None:
        self.analyzer = None
        self.agg = None
        self.batch: list[tuple] = []
        self.out = open(spool, "wb")

    def keep(self, v: ConnectionVerdict) -> None:
        a = self.analyzer
        assert a is not None
        self.batch.append((a.order, v, a.alternative))
        a.alternative = None

    def take(self) -> Records:
        if self.batch:
            pickle.dump(self.batch, self.out, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []
        return [], [], [], []

    def close(self) -> None:
        """The last batch written and the spool closed (a worker process ends by os._exit,
        which flushes nothing)."""
        self.take()
        self.out.close()


class LineKeeper(Keeper):
    """A worker's ``on_verdict``: aggregates the verdict and keeps its record for the parent in
    flat lists (:meth:`take`): its place in the one-process order as two keys, its line (UTF-8
    bytes in ``fmt``; with ``record`` instead, what ``record`` makes of the verdict, in types
    marshal writes: the table's diagnostics record) and the session id it issued (hex, or
    None). A verdict whose line depends on earlier connections (Analyzer.alternative; the
    merge settles and aggregates those) has no line (None) and no id there, and ``(its index,
    order, session id, verdict, line, alternative verdict, its line)`` in the alternatives.

    Flat lists rather than a tuple per record: ``--jobs 2`` on bench/out/handshakes.pcap, the
    reader no longer pickles 50,000 records of two tuples each, nor the parent unpickles them
    (marshal, :func:`records_message`), and the merge compares ints, not tuples."""

    def __init__(self, fmt: Any, capture_name: str | None, path: str,
                 aggregate: bool = True,
                 record: Callable[[ConnectionVerdict], Any] | None = None) -> None:
        self.analyzer: Analyzer | None = None
        # None: no one reads the aggregate (parallel.Split), the verdicts are not aggregated.
        self.agg: OrderedAggregate | None = OrderedAggregate() if aggregate else None
        self.keys: list[int] = []
        self.lines: list[Any] = []
        self.issued: list[str | None] = []
        self.alts: list[tuple] = []
        self.rename = capture_name is not None and capture_name != path
        self.capture_name = capture_name
        self.line = LastLine()
        self.record = record
        self.writer = fmt(self.line) if fmt is not None else None
        self.jsonl = getattr(self.writer, "fmt", None) == "jsonl"

    def take(self) -> Records:
        """The records kept since the last call: ``(keys, lines, issued ids, alternatives)``."""
        records = (self.keys, self.lines, self.issued, self.alts)
        self.keys = []
        self.lines = []
        self.issued = []
        self.alts = []
        return records

    def text_of(self, v: ConnectionVerdict) -> Any:
        if self.jsonl:
            return v.to_json_line().encode()
        if self.record is not None:
            return self.record(v)
        assert self.writer is not None
        self.writer.write(v)
        return self.line.text.encode()

    def keep(self, v: ConnectionVerdict) -> None:
        a = self.analyzer
        assert a is not None
        alt = a.alternative
        order = a.order
        if self.rename:
            v.capture = self.capture_name
            if alt is not None:
                alt[1].capture = self.capture_name
        keys = self.keys
        keys.append(order[0] * _PHASES + order[1])
        keys.append(order[2])
        if alt is None:
            agg = self.agg
            if agg is not None:
                agg.add(order, v)
            self.lines.append(self.text_of(v))
            self.issued.append(v.issued_session_id)
        else:
            a.alternative = None
            self.alts.append((len(self.lines), order, alt[0], v, self.text_of(v), alt[1],
                              self.text_of(alt[1])))
            self.lines.append(None)
            self.issued.append(None)


def records_tuple(records: Records, mark: int) -> tuple:
    """A worker's records and its watermark ``mark`` (:func:`watermark`: no later record of it
    comes before it) as :func:`merge_lines` takes them. Alternatives hold verdicts, so they are
    pickled (rare)."""
    keys, lines, issued, alts = records
    return ("r", keys, lines, issued,
            pickle.dumps(alts, protocol=pickle.HIGHEST_PROTOCOL) if alts else None, mark)


def records_message(records: Records, mark: int) -> bytes:
    """:func:`records_tuple` as a worker process sends it. marshal, not pickle: flat lists of
    ints, bytes, str and None are what it writes fastest (no memo), and both ends are one
    Python (a fork)."""
    return marshal.dumps(records_tuple(records, mark))


def result_message(kind: str, payload: object) -> bytes:
    """A worker's last message: ``("end", its result)`` or ``("error", text)``."""
    return marshal.dumps((kind, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)))


def watermark(last: int) -> int:
    """The first key of ``(last, PHASE_TCP_SWEEP, 0)`` (its second is 0): no later record of a
    worker whose frames so far end at frame ``last`` comes before it."""
    return last * _PHASES + PHASE_TCP_SWEEP


class WorkerLoop:
    """One partition's worker fed by the reader: each message (a chunk's places and sweeps)
    becomes the records it gave and its watermark (:func:`records_message` sends both). A
    worker process runs it (:func:`run_worker`); so does the parent for the last partition
    (parallel._fan_out), where its records are not marshalled (:func:`records_tuple`)."""

    def __init__(self, a: Analyzer, keeper: Keeper, path: str, layout: tuple[bool, int],
                 linktype: int) -> None:
        self.a = a
        self.keeper = keeper
        self.le = layout[0]
        self.div = float(layout[1])
        self.linktype = linktype
        self.fd = os.open(path, os.O_RDONLY)
        start_worker(a, path)
        a.hash_frames = False  # the reader sends only this partition's fast-path frames

    def step(self, msg: bytes) -> tuple[Records, int]:
        base, blen, frames, sweeps, first, last = pickle.loads(msg)
        if frames or sweeps:
            feed(self.a, os.pread(self.fd, blen, base), frames, sweeps, self.le, self.div,
                 self.linktype, first)
        return self.keeper.take(), watermark(last)

    def last(self) -> tuple[Records, int]:
        return last_records(self.a, self.keeper)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def run_worker(a: Analyzer, keeper: Keeper, path: str, layout: tuple[bool, int],
               linktype: int, recv: Callable[[], bytes], send: Callable[[bytes], None]) -> None:
    """A worker process's loop: chunks from the reader in, records and watermarks out, until
    the reader's end (an empty message); then ``a.finish()`` and its records."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
    loop = WorkerLoop(a, keeper, path, layout, linktype)
    try:
        while True:
            msg = recv()
            if not msg:
                break
            records, mark = loop.step(msg)
            send(records_message(records, mark))
    finally:
        gc.set_threshold(*thresholds)
        loop.close()
    send_last(a, keeper, send)


def run_reader_worker(a: Analyzer, keeper: Keeper, cap: CaptureFile, path: str,
                      layout: tuple[bool, int], parts: int, send_part: Callable[[int, bytes], None],
                      send: Callable[[bytes], None]) -> Reader:
    """Partition 0's worker, which is also the reader (no process of its own for the walk):
    walks ``cap`` sending the other workers their places (``send_part``), analyses its own
    frames as it meets them, and sends its records to the parent after each chunk with the
    watermark the other workers give. Returns the reader (the whole file's counts); the caller
    ends the other workers' input, then runs ``a.finish()`` and :func:`send_last`."""
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])

    def flushed(n: int) -> None:
        send(records_message(keeper.take(), watermark(n)))

    try:
        start_worker(a, path)
        a.hash_frames = False  # the reader hands it only this partition's fast-path frames
        reader = Reader(cap, layout, parts, a.table.sweep_interval(), send_part, a, flushed,
                        a.reader_slots)
        reader.run(path)
    finally:
        gc.set_threshold(*thresholds)
    return reader


def last_records(a: Analyzer, keeper: Keeper) -> tuple[Records, int]:
    """``a.finish()`` and the records it gave, with a watermark past every record."""
    a.finish()
    return keeper.take(), _END


def send_last(a: Analyzer, keeper: Keeper, send: Callable[[bytes], None]) -> None:
    """:func:`last_records`, sent."""
    records, mark = last_records(a, keeper)
    send(records_message(records, mark))


# -- the parent ------------------------------------------------------------------------------



def merge_lines(conns: list[Any], write: Callable[[list], object], issued: IssuedIds,
                settled: OrderedAggregate,
                local: tuple[Any, Callable[[bytes], list[Any]]] | None = None) -> list[Any]:
    """Merge the workers' records (run_worker, from ``conns``) into the one-process order as
    they come, handing ``write`` their lines in that order, a list of up to 1,000 at a time;
    returns each worker's result (its last message, a tuple ``("end", result)`` or
    ``("error", text)``).

    ``local`` is the partition this process analyses itself, after those of ``conns``: the
    connection its chunks come in on (from the reader) and the function that turns one into
    the messages a worker would send, unserialised (:func:`records_tuple`; at the end, an empty
    message, also ``("end", result)``)."""
    n = len(conns) + (local is not None)
    # Per worker, the records received and not yet written from ``heads[i]`` on: two keys each
    # in ``keys[i]``, a line and an issued id each in ``lines[i]`` and ``ids[i]``, and the
    # alternatives by index.
    keys: list[list[int]] = [[] for _ in range(n)]
    lines: list[list[Any]] = [[] for _ in range(n)]
    ids: list[list[str | None]] = [[] for _ in range(n)]
    alts: list[dict[int, tuple]] = [{} for _ in range(n)]
    heads: list[int] = [0] * n
    marks: list[int] = [-1] * n  # each worker's watermark (its first key; the second is 0)
    results: list[Any] = [None] * n
    live = list(conns)
    if local is not None:
        live.append(local[0])
    index = {id(c): i for i, c in enumerate(live)}
    own = n - 1 if local is not None else -1
    chunk: list[Any] = []
    while live:
        ready: list[Any] = wait(live)
        for c in ready:
            i = index[id(c)]
            try:
                data = c.recv_bytes()
            except EOFError:
                raise RuntimeError(f"partition {i} ended without its result") from None
            objs = local[1](data) if i == own and local is not None else [marshal.loads(data)]
            for obj in objs:
                if obj[0] != "r":
                    result = obj[1]
                    if i != own:
                        result = pickle.loads(result)
                    results[i] = (obj[0], result)
                    live.remove(c)
                    if obj[0] == "error":
                        raise RuntimeError(f"partition {i} failed: {result}")
                    continue
                h = heads[i]
                if h > 4096:
                    del keys[i][:2 * h]
                    del lines[i][:h]
                    del ids[i][:h]
                    if alts[i]:
                        alts[i] = {k - h: alt for k, alt in alts[i].items()}
                    heads[i] = 0
                if obj[4] is not None:
                    got_alts = pickle.loads(obj[4])
                    base = len(lines[i])
                    for alt in got_alts:
                        alts[i][base + alt[0]] = alt
                keys[i].extend(obj[1])
                lines[i].extend(obj[2])
                ids[i].extend(obj[3])
                marks[i] = obj[5]
        # Write every record no worker can still precede.
        while True:
            best = -1
            first = 0
            second = 0
            for i in range(n):
                h = heads[i]
                if h < len(lines[i]):
                    k1: int = keys[i][2 * h]
                    k2: int = keys[i][2 * h + 1]
                    if best < 0 or k1 < first or (k1 == first and k2 < second):
                        best = i
                        first = k1
                        second = k2
            if best < 0:
                break
            ok = True
            for i in range(n):
                # Another worker with nothing to write yet may still send an earlier record,
                # unless its watermark (its first key, the second being 0) is past this one.
                if i != best and heads[i] >= len(lines[i]) and first >= marks[i]:
                    ok = False
                    break
            if not ok:
                break
            h = heads[best]
            heads[best] = h + 1
            text = lines[best][h]
            issued_hex = ids[best][h]
            if alts[best] and h in alts[best]:
                _, order, sid, v, text, alt_v, alt_text = alts[best].pop(h)
                if sid in issued:
                    v, text = alt_v, alt_text
                issued_hex = v.issued_session_id
                settled.add(order, v)
            if issued_hex:
                issued.remember(issued_hex)
            chunk.append(text)
            if len(chunk) >= 1000:
                write(chunk)
                chunk = []
    if chunk:
        write(chunk)
    return results
