"""Several captures, or one capture, on several cores, merged exactly.

One capture with ``jobs > 1`` is split by flow hash (:func:`analyze_partitioned`): each worker
analyses only the connections whose symmetric flow hash is its own, both directions and UDP
included; the parent merges the verdicts back into the order one process gives (see
:class:`~tlssniff.engine.pipeline.Analyzer` ``order``) and settles the one cross-connection
question a partition cannot answer alone (was this session id issued by an earlier
connection?). For an uncompressed pcap the first worker also reads: it walks the file,
analyses its own frames and hands each other worker only its frames (engine/fanout.py,
:func:`_fan_out`); otherwise (pcapng, gzip) every worker walks the whole file and skips the
frames of the other partitions. What the workers send home depends on the output:

- streamed lines (JSONL, ECS, CSV rows; :class:`Split`): each worker aggregates and makes its
  lines,
  which the parent merges as they come, straight into the output when it is a regular file;
- the table (a :class:`Split` without lines): each worker aggregates and makes its verdicts'
  diagnostics records, which the parent diagnoses in order as they come (uncompressed pcap;
  the other captures replay their verdicts, as below);
- every other output (json, parquet): each worker spools its verdicts and the parent replays
  them, once the run is known to be exact, into ``on_verdict``.

Each capture is analyzed on its own (its own flow table), in a worker process when ``jobs > 1``.
Two ways home, both giving the bytes ``--jobs 1`` gives:

- streamed outputs (JSONL, ECS lines) with a :class:`Split`: each worker aggregates its capture
  and writes its lines itself; the parent appends the lines and merges the aggregates in capture
  order. The parent's serial work is a file copy per capture.
- otherwise workers pickle their verdicts to a spool file (floats and enums come back bit for
  bit) and the parent replays them in capture order into the same ``on_verdict`` callback a
  single process would call (the summary formats need every verdict: diagnostics, ``json``).
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing
import os
import pickle
import shutil
import stat
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from typing import IO, Any, Callable, Iterator

from tlssniff.analysis.aggregate import Aggregator, ServerStats
from tlssniff.capture.files import open_capture
from tlssniff.engine import fanout
from tlssniff.engine.merge import (IssuedIds, OrderedAggregate, merge_records, replay,
                                    write_merged)
from tlssniff.engine.pipeline import GC_THRESHOLD, READER_SLOTS, Analyzer, Counters
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.errors import TlssniffError
from tlssniff.flow.table import Limits

try:
    import fcntl
except ImportError:  # not POSIX: no fan-out either
    fcntl = None  # type: ignore[assignment]

# A factory of line writers (run/offline.py line_writer: a VerdictWriter of a format whose lines
# stand alone, jsonl or ecs), called with the file the lines go to; it is picklable, so workers
# get it as an argument and the engine imports no output module.
LineWriters = Callable[[IO[str]], Any]

# Verdicts are pickled in batches: one pickle per verdict costs more than the analysis.
_BATCH = 512


def merge_counters(total: Counters, part: Counters) -> None:
    """Add one capture's counters into the total (sums, min/max times, joined lists)."""
    for f in fields(Counters):
        a, b = getattr(total, f.name), getattr(part, f.name)
        if f.name == "first_ts":
            if b is not None and (a is None or b < a):
                setattr(total, f.name, b)
        elif f.name == "last_ts":
            if b is not None and (a is None or b > a):
                setattr(total, f.name, b)
        elif isinstance(b, list):
            a.extend(b)
        elif isinstance(b, (int, float)) and not isinstance(b, bool):
            setattr(total, f.name, (a or 0) + b)


def _analyze_to_spool(
    path: str, limits: Limits, spool: str
) -> tuple[Counters, TlssniffError | None]:
    """Worker: analyze one capture, pickling its verdicts into ``spool``."""
    batch: list[ConnectionVerdict] = []
    try:
        with open(spool, "wb") as out:

            def keep(v: ConnectionVerdict) -> None:
                batch.append(v)
                if len(batch) >= _BATCH:
                    pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
                    batch.clear()

            analyzer = Analyzer(keep, limits)
            analyzer.analyze_file(path)
            analyzer.finish()
            if batch:
                pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
        return analyzer.counters, None
    except TlssniffError as err:
        return Counters(), err


@dataclass
class Split:
    """Per-verdict work the workers can do themselves: aggregate into ``aggregator`` (None when
    nothing reads the aggregate: the workers then skip it), and write lines with ``fmt`` (a
    :data:`LineWriters` factory, of a format whose lines stand alone: jsonl, ecs) to ``out``.

    Without ``fmt`` (the table: a summary, no line per verdict) the workers aggregate and make
    each verdict's diagnostics record (analysis/diagnostics.py ``diag_record``), which the
    parent feeds to ``diagnostics`` in the one-process order as they come. Only the fan-out of
    one uncompressed pcap takes that split; every other path replays the verdicts."""

    fmt: LineWriters | None
    aggregator: Aggregator | None
    out: IO[str] | None
    diagnostics: Any = None  # analysis.diagnostics.Diagnostics, without fmt


def _analyze_split(
    path: str, limits: Limits, fmt: LineWriters, spool: str, max_servers: int | None
) -> tuple[Counters, Aggregator | None, TlssniffError | None]:
    """Worker: analyze one capture, writing its lines to ``spool`` and aggregating it (not
    with ``max_servers`` None: no one reads the aggregate)."""
    agg = Aggregator(max_servers) if max_servers is not None else None
    try:
        with open(spool, "w", encoding="utf-8", newline="") as out:
            writer = fmt(out)
            keep: Callable[[ConnectionVerdict], None] = writer.write
            if agg is not None:
                add, write = agg.add, writer.write

                def keep(v: ConnectionVerdict) -> None:
                    add(v)
                    write(v)

            analyzer = Analyzer(keep, limits)
            analyzer.analyze_file(path)
            analyzer.finish()
        return analyzer.counters, agg, None
    except TlssniffError as err:
        return Counters(), agg, err


# Counters every partition of one capture counts whole (each walks every frame): taken from
# part 0 only.
_WHOLE_FILE = ("frames", "bytes", "first_ts", "last_ts", "warnings", "errors")

Order = tuple[int, int, int]  # a verdict's place in the one-process order (Analyzer.order)


def partition_limits(limits: Limits, parts: int) -> Limits:
    """Each partition's share of the table limits. While no partition reaches its share, the
    whole table would not reach the limit either (no eviction), so the merge is exact; a
    partition that evicts makes the caller fall back to one process."""
    return Limits(
        max_flows=max(1, limits.max_flows // parts),
        idle_timeout=limits.idle_timeout,
        max_buffer=limits.max_buffer,
        max_message=limits.max_message,
        max_pending_memory=limits.max_pending_memory // parts,
    )


_NEVER: Order = (-1, -1, -1)


def merge_ordered(target: Aggregator | None, parts: list[OrderedAggregate]) -> None:
    """Merge the partitions' aggregates into ``target`` as if their verdicts had been added one
    by one in the one-process order (servers in order of first sight, the last starttls).
    Nothing when ``target`` is None (the workers did not aggregate: Split)."""
    if target is None:
        return
    first: dict[tuple, Order] = {}
    for pa in parts:
        for key, at in pa.first.items():
            if key not in first or at < first[key]:
                first[key] = at
    for key in sorted(first, key=first.__getitem__):
        sources = sorted((pa for pa in parts if key in pa.agg.servers),
                         key=lambda pa: pa.starttls_at.get(key, _NEVER))
        mine = target.servers.get(key)
        if mine is None:
            theirs = sources[0].agg.servers[key]
            mine = target.servers[key] = ServerStats(theirs.server, theirs.sni, theirs.transport)
        for pa in sources:
            mine.merge(pa.agg.servers[key])
    for pa in sorted(parts, key=lambda pa: pa.total_starttls_at or _NEVER):
        target.total.merge(pa.agg.total)


def analyze_part(
    path: str, limits: Limits, part: int, parts: int, spool: str | Callable[[list], None],
    fmt: LineWriters | None = None, capture_name: str | None = None, aggregate: bool = True,
) -> tuple[Counters, OrderedAggregate | None, bool, TlssniffError | None]:
    """Worker: analyze partition ``part`` of ``parts`` of one capture, pickling its records in
    order into ``spool``. Without ``fmt`` a record is ``(order, verdict, alternative)``, the
    alternative ``(session id, verdict if it was issued)`` or None. With ``fmt`` (a format
    whose lines stand alone: jsonl, ecs) the worker writes the lines and aggregates: a record is
    ``(order, line, issued session id, None)``, or ``(order, None, None, (session id, verdict,
    line, alternative verdict, its line))`` when the line depends on earlier connections (those
    verdicts are aggregated by the merge). Returns the partition's counters, its aggregate
    (with ``fmt``), whether a limit evicted anything (then the partitions are not exact; see
    partition_limits) and the capture's error. ``capture_name``: the verdicts' ``capture``
    when it is not ``path`` (a local copy of a URL). ``spool`` may also be a function that
    takes each batch of records (a pipe to the merging parent). ``aggregate`` False: no
    aggregate (no one reads it, Split), None in its place."""
    batch: list[tuple] = []
    agg = OrderedAggregate() if fmt is not None and aggregate else None
    rename = capture_name is not None and capture_name != path
    try:
        with contextlib.ExitStack() as stack:
            if callable(spool):
                dump = spool
            else:
                out = stack.enter_context(open(spool, "wb"))

                def dump(records: list) -> None:
                    pickle.dump(records, out, protocol=pickle.HIGHEST_PROTOCOL)

            analyzer: Analyzer
            if fmt is not None:
                line = fanout.LastLine()
                writer = fmt(line)  # type: ignore[arg-type]

                def line_of(v: ConnectionVerdict) -> str:
                    writer.write(v)
                    return line.text

                # JSONL lines straight from the verdict (what VerdictWriter writes for them): no
                # writer call per verdict.
                jsonl = getattr(writer, "fmt", None) == "jsonl"
                text_of = ConnectionVerdict.to_json_line if jsonl else line_of
                add = agg.add if agg is not None else None

                def keep(v: ConnectionVerdict) -> None:
                    alt = analyzer.alternative
                    order = analyzer.order
                    if rename:
                        v.capture = capture_name
                        if alt is not None:
                            alt[1].capture = capture_name
                    if alt is None:
                        if add is not None:
                            add(order, v)
                        batch.append((order, text_of(v), v.issued_session_id, None))
                    else:
                        analyzer.alternative = None
                        batch.append((order, None, None,
                                      (alt[0], v, text_of(v), alt[1], text_of(alt[1]))))
                    if len(batch) >= _BATCH:
                        dump(batch)
                        batch.clear()
            else:

                def keep(v: ConnectionVerdict) -> None:
                    if rename:
                        v.capture = capture_name
                        if analyzer.alternative is not None:
                            analyzer.alternative[1].capture = capture_name
                    batch.append((analyzer.order, v, analyzer.alternative))
                    analyzer.alternative = None
                    if len(batch) >= _BATCH:
                        dump(batch)
                        batch.clear()

            analyzer = Analyzer(keep, partition_limits(limits, parts), part, parts)
            analyzer.analyze_file(path)
            analyzer.finish()
            if batch:
                dump(batch)
        evicted = analyzer.evicted()
        counters = analyzer.counters
        if part:
            blank = Counters()
            for name in _WHOLE_FILE:
                setattr(counters, name, getattr(blank, name))
        return counters, agg, evicted, None
    except TlssniffError as err:
        return Counters(), agg, False, err


def merge_parts(spools: list[str], on_verdict: Callable[[ConnectionVerdict], None]) -> None:
    """Replay the partitions' records (analyze_part without ``fmt``) into ``on_verdict`` in
    the one-process order."""
    replay(merge_records([_batches(s) for s in spools]), on_verdict)


def merge_part_lines(
    spools: list[str], aggs: list[OrderedAggregate], split: Split
) -> None:
    """Append the partitions' lines (analyze_part with ``fmt``) to ``split.out`` in the
    one-process order and merge their aggregates into ``split.aggregator``."""
    issued = IssuedIds()
    settled = OrderedAggregate()
    write_merged(merge_records([_batches(s) for s in spools]), issued, settled, split.out.write)
    merge_ordered(split.aggregator, [*aggs, settled])


def _order(record: tuple) -> Order:
    return record[0]


def _batches(spool: str) -> Iterator[list]:
    with open(spool, "rb") as f:
        while True:
            try:
                yield pickle.load(f)
            except EOFError:
                return


def _part_to_pipe(path: str, limits: Limits, part: int, parts: int, fmt: LineWriters,
                  conn, aggregate: bool) -> None:
    """Worker process: analyze_part with its batches sent down ``conn`` as they are made, then
    its result."""

    def send(records: list) -> None:
        conn.send_bytes(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        result = analyze_part(path, limits, part, parts, send, fmt, aggregate=aggregate)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which re-raises
        conn.send_bytes(pickle.dumps(("error", repr(err))))
        raise
    conn.send_bytes(pickle.dumps(("end", result), protocol=pickle.HIGHEST_PROTOCOL))
    conn.close()


def _piped_batches(conn, results: dict, i: int) -> Iterator[list]:
    while True:
        obj = pickle.loads(conn.recv_bytes())
        if isinstance(obj, tuple):
            if obj[0] == "error":
                raise RuntimeError(f"partition {i} failed: {obj[1]}")
            results[i] = obj[1]
            return
        yield obj


def _stream_partitioned(
    path: str, limits: Limits, jobs: int, split: Split, tmp: str
) -> tuple[list[tuple], str]:
    """The streamed outputs (``split``) of one capture: workers send their records as they make
    them and the parent merges them meanwhile, into a file in ``tmp`` (copied to the output
    only once every partition is known to be exact). Returns the workers' results and that
    file."""
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    conns, procs = [], []
    for i in range(jobs):
        parent_end, child_end = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_part_to_pipe, daemon=True, args=(
            path, limits, i, jobs, split.fmt, child_end, split.aggregator is not None))
        proc.start()
        child_end.close()
        conns.append(parent_end)
        procs.append(proc)
    results: dict[int, tuple] = {}
    merged = os.path.join(tmp, "merged")
    with _reaped(procs):
        with open(merged, "w", encoding="utf-8", newline="") as out:
            streams = [_piped_batches(c, results, i) for i, c in enumerate(conns)]
            settled = OrderedAggregate()
            write_merged(merge_records(streams), IssuedIds(), settled, out.write)
    got = [results[i] for i in range(jobs)]
    for *_, error in got:
        if error is not None:
            raise error
    return [*got, (None, settled, False, None)], merged if not any(g[2] for g in got) else ""


def _keeper(fmt: LineWriters | None, path: str, aggregate: bool, spool: str | None,
            record: Callable[[ConnectionVerdict], Any] | None = None) -> fanout.Keeper:
    """A fan-out worker's keeper: its lines for the parent's merge (``fmt``), its verdicts'
    ``record`` for it (the table), or its verdicts into ``spool``."""
    if spool is not None:
        return fanout.SpoolKeeper(spool)
    return fanout.LineKeeper(fmt, None, path, aggregate, record)


def _fan_reader_worker(path: str, limits: Limits, parts: int, fmt: LineWriters | None,
                       aggregate: bool, layout: tuple[bool, int], inputs: list, outconn,
                       close: list, spool: str | None, record: Callable | None,
                       reader_slots: int) -> None:
    """Partition 0's worker process of the fan-out, which is also the reader (engine/fanout.py
    run_reader_worker): walks the capture once, sending the other workers their frames'
    places chunk by chunk (``inputs``, for partitions 1..), analyses its own frames meanwhile
    and sends its records to the parent (``outconn``; without ``fmt`` it spools its verdicts
    into ``spool`` instead); then its counters, its aggregate, whether a limit evicted and the
    counters of the whole file."""
    for c in close:
        c.close()
    try:
        sends = [c.send_bytes for c in inputs]

        def send(w: int, data: bytes) -> None:
            sends[w - 1](data)

        keeper = _keeper(fmt, path, aggregate, spool, record)
        analyzer = Analyzer(keeper.keep, partition_limits(limits, parts), 0, parts)
        analyzer.reader_slots = reader_slots
        keeper.analyzer = analyzer
        with open_capture(path) as cap:
            reader = fanout.run_reader_worker(analyzer, keeper, cap, path, layout, parts, send,
                                              outconn.send_bytes)
        for c in inputs:
            c.send_bytes(b"")
        fanout.send_last(analyzer, keeper, outconn.send_bytes)
        keeper.close()
        # What analyze_file counts of the whole file.
        counters = analyzer.counters
        whole = Counters(frames=reader.n, bytes=reader.position)
        if reader.n:
            whole.first_ts = reader.first_ts
            whole.last_ts = reader.last_ts
        for message in cap.warnings:
            (whole.errors if "corrupt" in message else whole.warnings).append(message)
        evicted = analyzer.evicted()
        result = (counters, keeper.agg, evicted, whole)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which re-raises
        outconn.send_bytes(fanout.result_message("error", repr(err)))
        raise
    outconn.send_bytes(fanout.result_message("end", result))


def _fan_worker(path: str, limits: Limits, part: int, parts: int, fmt: LineWriters | None,
                aggregate: bool, layout: tuple[bool, int], linktype: int, inconn, outconn,
                close: list, spool: str | None, record: Callable | None,
                reader_slots: int) -> None:
    """A worker process of the fan-out: its partition's frames from the reader, its records to
    the parent (or, without ``fmt``, its verdicts into ``spool``), then its counters, aggregate
    and whether a limit evicted."""
    for c in close:
        c.close()
    try:
        keeper = _keeper(fmt, path, aggregate, spool, record)
        analyzer = Analyzer(keeper.keep, partition_limits(limits, parts), part, parts)
        analyzer.reader_slots = reader_slots
        keeper.analyzer = analyzer
        fanout.run_worker(analyzer, keeper, path, layout, linktype, inconn.recv_bytes,
                          outconn.send_bytes)
        keeper.close()
        evicted = analyzer.evicted()
        result = (analyzer.counters, keeper.agg, evicted)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which re-raises
        outconn.send_bytes(fanout.result_message("error", repr(err)))
        raise
    outconn.send_bytes(fanout.result_message("end", result))


_PIPE_SIZE = 1 << 20

# Partition 0's hash slots (pipeline.share_of) when the parent diagnoses every verdict (Split
# without lines, the table): the parent's own partition is made smaller by as much. 7
# alternating rounds on bench/out/handshakes.pcap, paired medians of --jobs 1 over --jobs 2:
# 1.70x with 35, 1.77x with 38, 1.65x with 41.
_RECORDS_READER_SLOTS = 38


def _widen(conn: Any) -> None:
    """A pipe's buffer raised to 1 MB where Linux allows it (F_SETPIPE_SZ; pipe-max-size is 1 MB
    by default): a worker's records of a chunk then go in one write and one read, instead of
    sixteen 64 KB turns of writer and reader; and the reader's places (about 28 KB a chunk
    for a worker) can run some thirty chunks ahead of that worker instead of two, so neither
    waits for the other when their costs per chunk differ for a while. With the default 64 KB
    on the places, ``--jobs 2`` on bench/out/handshakes.pcap (3 runs, timed in the processes):
    the reader was blocked sending places 0.26-0.54 s and the parent waited for input
    0.23-0.28 s of a 4.6 s run; widened, the reader was blocked 0.03 s."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if setpipe is None:
        return
    try:
        fcntl.fcntl(conn.fileno(), setpipe, _PIPE_SIZE)
    except OSError:
        pass


def _fan_out(path: str, limits: Limits, jobs: int, split: Split | None, tmp: str,
             layout: tuple[bool, int], direct: IO[bytes] | None = None,
             ) -> tuple[Counters, list[OrderedAggregate], str]:
    """The streamed outputs of one uncompressed pcap by ``jobs`` partitions, merged meanwhile
    into a file of UTF-8 lines in ``tmp`` (copied to the output only once every partition is
    known to be exact), or straight into ``direct`` (the output's bytes, see
    :func:`_direct_output`). Partition 0's worker is also the reader (engine/fanout.py); the
    last partition's is this process, between merges (its records are not pickled, and two
    jobs take two processes, not three: on two cores the parent's merge took CPU time from
    both workers). Returns the counters, the aggregates to merge and that file ("direct" for
    ``direct``; "" when a partition evicted).

    Without ``split`` (the formats that are not streamed) each partition spools its verdicts
    into ``tmp``/``{i}.spool`` instead (fanout.SpoolKeeper) and there are no lines: the file
    returned is ``tmp`` itself ("" when a partition evicted), for :func:`merge_parts`. With a
    ``split`` without lines (the table) the partitions send their verdicts' diagnostics
    records, which go to ``split.diagnostics`` as they are merged; "records" is returned ("",
    and ``split.diagnostics`` holds only part of the verdicts, when a partition evicted)."""
    with open_capture(path) as cap:  # the errors one process gives, before any fork
        linktype = cap.linktype or 0
    ctx = multiprocessing.get_context("fork")
    own = jobs - 1  # the partition this process analyses
    # ins[i - 1]: (worker i's end, the reader's end), worker ``own`` being this process;
    # outs[i]: (this process's end, worker i's) for the worker processes
    ins = [ctx.Pipe(duplex=False) for _ in range(1, jobs)]
    outs = [ctx.Pipe(duplex=False) for _ in range(own)]
    for _, w in ins + outs:
        _widen(w)
    everything = [c for pair in ins + outs for c in pair]
    mine0 = [w for _, w in ins] + [outs[0][1]]
    fmt = split.fmt if split is not None else None
    aggregate = split is not None and split.aggregator is not None
    spools = [os.path.join(tmp, f"{i}.spool") if split is None else None for i in range(jobs)]
    record = None
    slots = READER_SLOTS
    if split is not None and fmt is None:
        from tlssniff.analysis.diagnostics import diag_record

        record = diag_record
        slots = _RECORDS_READER_SLOTS
    procs = [ctx.Process(target=_fan_reader_worker, daemon=True, args=(
        path, limits, jobs, fmt, aggregate, layout, [w for _, w in ins], outs[0][1],
        [c for c in everything if all(c is not m for m in mine0)], spools[0], record, slots))]
    for i in range(1, own):
        mine = (ins[i - 1][0], outs[i][1])
        procs.append(ctx.Process(target=_fan_worker, daemon=True, args=(
            path, limits, i, jobs, fmt, aggregate, layout, linktype, ins[i - 1][0],
            outs[i][1],
            [c for c in everything if all(c is not m for m in mine)], spools[i], record,
            slots)))
    for proc in procs:
        proc.start()
    mine_here = [r for r, _ in outs] + [ins[own - 1][0]]
    for c in everything:
        if all(c is not m for m in mine_here):
            c.close()
    settled = OrderedAggregate()
    with _reaped(procs), contextlib.ExitStack() as stack:
        # Where the merged records go, and what the caller is told.
        write: Callable[[list], object]
        if split is None:
            write, merged = _no_lines, tmp
        elif fmt is None:
            write, merged = split.diagnostics.add_records, "records"
        elif direct is not None:
            write, merged = _joined(direct.write), "direct"
        else:
            merged = os.path.join(tmp, "merged")
            write = _joined(stack.enter_context(open(merged, "wb")).write)
        keeper = _keeper(fmt, path, aggregate, spools[own], record)
        analyzer = Analyzer(keeper.keep, partition_limits(limits, jobs), own, jobs)
        analyzer.reader_slots = slots
        keeper.analyzer = analyzer
        loop = fanout.WorkerLoop(analyzer, keeper, path, layout, linktype)

        def step(msg: bytes) -> list:
            if msg:
                return [fanout.records_tuple(*loop.step(msg))]
            return [fanout.records_tuple(*loop.last()),
                    ("end", (analyzer.counters, keeper.agg, analyzer.evicted()))]

        local = (ins[own - 1][0], step)
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], GC_THRESHOLD), *thresholds[1:])
        try:
            ends = fanout.merge_lines([r for r, _ in outs], write, IssuedIds(), settled, local)
        finally:
            gc.set_threshold(*thresholds)
            loop.close()
            keeper.close()
    total = Counters()
    aggs = []
    evicted = False
    for _, (counters, agg, part_evicted, *_) in ends:
        merge_counters(total, counters)
        aggs.append(agg)
        evicted = evicted or part_evicted
    merge_counters(total, ends[0][1][3])  # the whole file's, from the reader
    return total, [*aggs, settled], "" if evicted else merged


def _no_lines(lines: list) -> None:
    """The merge's output when the partitions spool verdicts: there are no lines."""
    raise AssertionError("a spooling partition sent lines")


def _joined(write: Callable[[bytes], object]) -> Callable[[list], None]:
    """The merge's output for lines (UTF-8 bytes): each run of them joined, in one write."""

    def write_lines(lines: list) -> None:
        write(b"".join(lines))

    return write_lines


def _direct_output(out: IO[str]) -> tuple[IO[bytes], int] | None:
    """The binary buffer under ``out`` and its position, when merged lines can be written
    straight to it: a UTF-8 text file over a regular file on POSIX (where a text write adds
    nothing else), which :func:`_take_back` can cut back to that position if the run has to
    be repeated in one process. Otherwise None (a pipe, a terminal: the lines go to a file
    of their own first, then are copied)."""
    buffer = getattr(out, "buffer", None)
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if buffer is None or encoding != "utf8" or os.name != "posix":
        return None
    try:
        if not stat.S_ISREG(os.fstat(out.fileno()).st_mode) or not buffer.seekable():
            return None
        out.flush()
        return buffer, buffer.tell()
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None


def _take_back(buffer: IO[bytes], position: int) -> None:
    """Cut the output back to ``position`` (what :func:`_direct_output` found), dropping the
    lines written since."""
    buffer.flush()
    buffer.seek(position)
    buffer.truncate()


def _copy_lines(merged: str, out: IO[str]) -> None:
    """Append the merged UTF-8 lines to ``out`` (bytes straight to its buffer when it is a
    UTF-8 text file on POSIX, where a text write adds nothing else)."""
    buffer = getattr(out, "buffer", None)
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    with open(merged, "rb") as lines:
        if buffer is not None and encoding == "utf8" and os.name == "posix":
            out.flush()
            shutil.copyfileobj(lines, buffer, 1 << 20)
            buffer.flush()
        else:
            with open(merged, encoding="utf-8", newline="") as text:
                shutil.copyfileobj(text, out, 1 << 20)


@contextlib.contextmanager
def _reaped(procs: list) -> Iterator[None]:
    """The block's worker processes: joined when it ends, killed (then joined) when it fails
    before they ended."""
    try:
        yield
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def _one_process(path: str, on_verdict: Callable[[ConnectionVerdict], None], limits: Limits,
                 progress: Callable[[int, int | None], None] | None) -> Counters:
    """One capture in this process, as ``--jobs 1`` (where a partition evicted)."""
    analyzer = Analyzer(on_verdict, limits)
    analyzer.analyze_file(path, progress)
    analyzer.finish()
    return analyzer.counters


def _read_all(path: str, progress: Callable[[int, int | None], None] | None) -> None:
    """The progress bar at the end of a capture the workers read."""
    if progress is not None:
        size = os.path.getsize(path)
        progress(size, size)


def analyze_partitioned(
    path: str,
    on_verdict: Callable[[ConnectionVerdict], None],
    limits: Limits,
    jobs: int,
    progress: Callable[[int, int | None], None] | None = None,
    split: Split | None = None,
) -> Counters:
    """One capture on ``jobs`` processes by flow hash; the verdicts, lines and counters one
    process gives. Falls back to one process when a partition hit its share of a limit."""
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    # An uncompressed pcap takes the one reader (engine/fanout.py), whatever the format.
    layout = fanout.pcap_layout(path) if os.name == "posix" else None
    if split is not None and split.fmt is None:
        if layout is not None:
            # The table: the workers aggregate, the parent diagnoses their records as they come.
            with tempfile.TemporaryDirectory(prefix="tlssniff-") as tmp:
                total, aggs, merged = _fan_out(path, limits, jobs, split, tmp, layout)
            if merged:
                merge_ordered(split.aggregator, aggs)
                _read_all(path, progress)
                return total
            split.diagnostics.reset()
            return _one_process(path, on_verdict, limits, progress)
        split = None  # the other paths replay the verdicts into on_verdict
    if split is not None:
        with tempfile.TemporaryDirectory(prefix="tlssniff-") as tmp:
            if layout is not None:
                direct = _direct_output(split.out)
                try:
                    total, aggs, merged = _fan_out(path, limits, jobs, split, tmp, layout,
                                                   direct[0] if direct is not None else None)
                except BaseException:
                    if direct is not None:
                        _take_back(*direct)
                    raise
                if direct is not None:
                    if merged:
                        direct[0].flush()
                    else:
                        _take_back(*direct)
                if merged:
                    if direct is None:
                        _copy_lines(merged, split.out)
                    merge_ordered(split.aggregator, aggs)
                    _read_all(path, progress)
                    return total
                got: list[tuple] = []
            else:
                got, merged = _stream_partitioned(path, limits, jobs, split, tmp)
            if merged:
                with open(merged, encoding="utf-8", newline="") as lines:
                    shutil.copyfileobj(lines, split.out, 1 << 20)
                merge_ordered(split.aggregator, [g[1] for g in got if g[1] is not None])
                total = Counters()
                for counters, *_ in got[:-1]:
                    merge_counters(total, counters)
                _read_all(path, progress)
                return total
        # A partition evicted: one process, as --jobs 1.
        return _one_process(path, on_verdict, limits, progress)
    # No split: the workers pickle their verdicts, and the parent replays them in order.
    with tempfile.TemporaryDirectory(prefix="tlssniff-") as tmp:
        spools = [os.path.join(tmp, f"{i}.spool") for i in range(jobs)]
        if layout is not None:
            total, _, exact = _fan_out(path, limits, jobs, None, tmp, layout)
            if not exact:
                return _one_process(path, on_verdict, limits, progress)
            merge_parts(spools, on_verdict)
            _read_all(path, progress)
            return total
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = [pool.submit(analyze_part, path, limits, i, jobs, spool)
                       for i, spool in enumerate(spools)]
            results = [f.result() for f in futures]
        for *_, error in results:
            if error is not None:
                raise error
        if any(evicted for _, _, evicted, _ in results):
            return _one_process(path, on_verdict, limits, progress)
        merge_parts(spools, on_verdict)
        total = Counters()
        for counters, *_ in results:
            merge_counters(total, counters)
        _read_all(path, progress)
        return total


def _replay(spool: str, on_verdict: Callable[[ConnectionVerdict], None]) -> None:
    for batch in _batches(spool):
        for v in batch:
            on_verdict(v)


def analyze_captures(
    paths: list[str],
    on_verdict: Callable[[ConnectionVerdict], None],
    limits: Limits | None = None,
    jobs: int = 1,
    progress: Callable[[int, int | None], None] | None = None,
    one_stream: bool = False,
    split: Split | None = None,
    dask: str | None = None,
) -> Counters:
    """Analyze ``paths`` and return the merged counters.

    ``split``: with several workers, let them aggregate and write their own lines (see the
    module docstring) or, without lines, make the diagnostics' records (one pcap, Split);
    ``on_verdict`` must then do nothing else. Ignored when one process runs.

    ``dask``: a Dask scheduler's address; the work runs on its workers (engine/distributed.py),
    ``jobs`` > 1 then being the partitions per capture.

    ``one_stream``: the files are consecutive pieces of one capture (``tcpdump -C/-G``
    rotation): one flow table runs through all of them, so connections crossing a file
    boundary stay whole. That is inherently sequential and ignores ``jobs``.
    """
    limits = limits or Limits()
    if split is not None and split.fmt is None and (jobs <= 1 or len(paths) != 1 or dask):
        split = None  # a split without lines is the one-pcap fan-out's alone
    if dask is not None and not one_stream:
        from tlssniff.engine.distributed import analyze_on_dask

        return analyze_on_dask(dask, paths, on_verdict, limits, jobs if jobs > 1 else 0,
                               progress, split)
    if one_stream:
        analyzer = Analyzer(on_verdict, limits)
        for path in paths:
            analyzer.analyze_file(path, progress)
        analyzer.finish()
        return analyzer.counters
    total = Counters()
    if jobs > 1 and len(paths) == 1:
        return analyze_partitioned(paths[0], on_verdict, limits, jobs, progress, split)
    if jobs <= 1 or len(paths) <= 1:
        for path in paths:
            analyzer = Analyzer(on_verdict, limits)
            analyzer.analyze_file(path, progress)
            analyzer.finish()
            merge_counters(total, analyzer.counters)
        return total
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with tempfile.TemporaryDirectory(prefix="tlssniff-") as tmp, ProcessPoolExecutor(
        max_workers=min(jobs, len(paths)), mp_context=ctx
    ) as pool:
        spools = [os.path.join(tmp, f"{i}.spool") for i in range(len(paths))]
        if split is not None:
            futures = [
                pool.submit(_analyze_split, path, limits, split.fmt, spool,
                            split.aggregator.max_servers if split.aggregator else None)
                for path, spool in zip(paths, spools)
            ]
        else:
            futures = [
                pool.submit(_analyze_to_spool, path, limits, spool)
                for path, spool in zip(paths, spools)
            ]
        done_bytes = 0
        sizes = [os.path.getsize(p) for p in paths]
        for future, spool, size in zip(futures, spools, sizes):
            if split is not None:
                counters, agg, error = future.result()
                if error is not None:
                    raise error
                with open(spool, encoding="utf-8", newline="") as lines:
                    shutil.copyfileobj(lines, split.out, 1 << 20)
                if split.aggregator is not None:
                    split.aggregator.merge(agg)
            else:
                counters, error = future.result()
                if error is not None:
                    raise error
                _replay(spool, on_verdict)
            os.unlink(spool)
            merge_counters(total, counters)
            done_bytes += size
            if progress is not None:
                progress(done_bytes, sum(sizes))
    return total
