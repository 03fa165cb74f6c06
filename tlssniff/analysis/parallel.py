"""Several captures on several cores, merged exactly.

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

import multiprocessing
import os
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
import shutil
from dataclasses import dataclass, fields
from typing import IO, Callable

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.analysis.pipeline import Analyzer, Counters
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.errors import TlssniffError
from tlssniff.flow.table import Limits

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
    """Per-verdict work the workers can do themselves: aggregate, and write lines in ``fmt``
    (a VerdictWriter format whose lines stand alone: jsonl, ecs) to ``out``."""

    fmt: str
    aggregator: Aggregator
    out: IO[str]


def _analyze_split(
    path: str, limits: Limits, fmt: str, spool: str, max_servers: int
) -> tuple[Counters, Aggregator, TlssniffError | None]:
    """Worker: analyze one capture, aggregating it and writing its lines to ``spool``."""
    from tlssniff.output.formats import VerdictWriter

    agg = Aggregator(max_servers)
    try:
        with open(spool, "w", encoding="utf-8", newline="") as out:
            writer = VerdictWriter(fmt, out)

            def keep(v: ConnectionVerdict) -> None:
                agg.add(v)
                writer.write(v)

            analyzer = Analyzer(keep, limits)
            analyzer.analyze_file(path)
            analyzer.finish()
        return analyzer.counters, agg, None
    except TlssniffError as err:
        return Counters(), agg, err


def _replay(spool: str, on_verdict: Callable[[ConnectionVerdict], None]) -> None:
    with open(spool, "rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                return
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
) -> Counters:
    """Analyze ``paths`` and return the merged counters.

    ``split``: with several workers, let them aggregate and write their own lines (see the
    module docstring); ``on_verdict`` must then do nothing else. Ignored when one process runs.

    ``one_stream``: the files are consecutive pieces of one capture (``tcpdump -C/-G``
    rotation): one flow table runs through all of them, so connections crossing a file
    boundary stay whole. That is inherently sequential and ignores ``jobs``.
    """
    limits = limits or Limits()
    if one_stream:
        analyzer = Analyzer(on_verdict, limits)
        for path in paths:
            analyzer.analyze_file(path, progress)
        analyzer.finish()
        return analyzer.counters
    total = Counters()
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
                            split.aggregator.max_servers)
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
