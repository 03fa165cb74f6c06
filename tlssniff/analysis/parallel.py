"""Several captures on several cores, merged exactly.

Each capture is analyzed on its own (its own flow table), in a worker process when ``jobs > 1``.
Workers stream their verdicts to a spool file (pickled, so floats and enums come back bit for
bit) and the parent replays them in capture order into the same ``on_verdict`` callback a
single process would call: aggregation, diagnostics and output see the identical sequence, so
``--jobs 1`` and ``--jobs N`` print the same bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from typing import Callable

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
) -> Counters:
    """Analyze ``paths`` and return the merged counters.

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
        spools = [os.path.join(tmp, f"{i}.pickle") for i in range(len(paths))]
        futures = [
            pool.submit(_analyze_to_spool, path, limits, spool)
            for path, spool in zip(paths, spools)
        ]
        done_bytes = 0
        sizes = [os.path.getsize(p) for p in paths]
        for future, spool, size in zip(futures, spools, sizes):
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
