"""``analyze --dask tcp://SCHEDULER:8786 FILES...``: the per-file and per-partition work on a Dask
cluster, merged on the client exactly as ``--jobs`` merges it (engine/parallel.py).

Each task is one flow-hash partition of one capture (:func:`parallel.analyze_part`); the worker
returns its counters, its aggregate and its spool of ordered records, and the client merges a
capture's partitions in the one-process order, capture after capture, so the output is the bytes
a local run gives. A task whose worker dies is run again by the scheduler on another worker
(Dask's ``allowed-failures``); only a finished task's result is merged, once, so nothing is lost
or counted twice.

Captures must be readable by every worker under the same name: a shared filesystem path, or an
fsspec URL (``s3://...``, ``gcs://...``) where fsspec and its backend are installed on the
workers; the ``capture`` field of the verdicts is the name given on the command line.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Callable

from tlssniff.engine import parallel
from tlssniff.engine.pipeline import Counters
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.errors import TlssniffError, UsageError
from tlssniff.flow.table import Limits


def capture_name(name: str) -> str:
    """A URL given as a path argument keeps its ``//`` (``s3://b/k`` became ``s3:/b/k``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)", r"\1://", name)


def _local_copy(name: str, directory: str) -> str:
    """A local file for ``name``: itself when it is a path, a download for an fsspec URL."""
    if "://" not in name:
        return name
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{name}: URLs need fsspec on the Dask workers") from None
    dest = os.path.join(directory, "capture")
    with fsspec.open(name, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 22)
    return dest


def part_task(
    name: str, limits: Limits, part: int, parts: int, fmt: parallel.LineWriters | None,
    aggregate: bool = True,
) -> tuple[Counters, parallel.OrderedAggregate | None, bool, TlssniffError | None, bytes]:
    """On a worker: :func:`parallel.analyze_part` of one capture, its spool returned as bytes
    (``aggregate`` False: no one reads the aggregate, parallel.Split)."""
    with tempfile.TemporaryDirectory(prefix="tlssniff-dask-") as tmp:
        path = _local_copy(name, tmp)
        spool = os.path.join(tmp, "spool")
        counters, agg, evicted, error = parallel.analyze_part(
            path, limits, part, parts, spool, fmt, capture_name=name, aggregate=aggregate)
        with open(spool, "rb") as f:
            data = f.read()
    return counters, agg, evicted, error, data


def _client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--dask needs dask.distributed: pip install 'tlssniff[dask]'") from None
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError) as err:
        raise UsageError(f"--dask {address}: cannot reach the scheduler: {err}") from None


def analyze_on_dask(
    address: str,
    paths: list[str],
    on_verdict: Callable[[ConnectionVerdict], None],
    limits: Limits,
    parts: int = 0,
    progress: Callable[[int, int | None], None] | None = None,
    split: parallel.Split | None = None,
) -> Counters:
    """Analyze ``paths`` on the Dask cluster at ``address``; what a local run returns and
    emits. ``parts``: flow-hash partitions per capture (0: one capture is split over every
    worker thread, several captures are one task each)."""
    from distributed import as_completed

    paths = [capture_name(p) for p in paths]
    client = _client(address)
    try:
        if parts <= 0:
            threads = sum(client.nthreads().values()) or 1
            parts = threads if len(paths) == 1 else 1
        fmt = split.fmt if split is not None else None
        aggregate = split is not None and split.aggregator is not None
        sizes = [_size(p) for p in paths]
        total_bytes = sum(sizes)
        futures = {}
        for i, path in enumerate(paths):
            for p in range(parts):
                fut = client.submit(part_task, path, limits, p, parts, fmt, aggregate,
                                    pure=False)
                futures[fut] = (i, p)
        results: dict[tuple[int, int], tuple] = {}
        done_bytes = 0.0
        total = Counters()
        next_file = 0
        with tempfile.TemporaryDirectory(prefix="tlssniff-") as tmp:
            for fut in as_completed(list(futures)):
                i, p = futures.pop(fut)
                results[(i, p)] = fut.result()
                fut.release()
                done_bytes += sizes[i] / parts
                if progress is not None:
                    progress(int(done_bytes), total_bytes)
                # Merge captures in order as soon as all their partitions are in.
                while next_file < len(paths) and all(
                        (next_file, q) in results for q in range(parts)):
                    got = [results.pop((next_file, q)) for q in range(parts)]
                    merge_counters = _merge_file(client, paths[next_file], got, limits, parts,
                                                 fmt, aggregate, tmp, on_verdict, split)
                    parallel.merge_counters(total, merge_counters)
                    next_file += 1
        return total
    finally:
        client.close()


def _size(name: str) -> int:
    try:
        return os.path.getsize(name)
    except OSError:
        return 0


def _merge_file(client, name: str, got: list[tuple], limits: Limits, parts: int,
                fmt: parallel.LineWriters | None, aggregate: bool, tmp: str, on_verdict,
                split) -> Counters:
    for *_, error, _ in got:
        if error is not None:
            raise error
    if parts > 1 and any(evicted for _, _, evicted, _, _ in got):
        # A partition reached its share of a limit: the capture again, as one task.
        got = [client.submit(part_task, name, limits, 0, 1, fmt, aggregate, pure=False).result()]
        for *_, error, _ in got:
            if error is not None:
                raise error
    spools = []
    for q, (*_, data) in enumerate(got):
        spool = os.path.join(tmp, f"{q}.spool")
        with open(spool, "wb") as f:
            f.write(data)
        spools.append(spool)
    if split is not None:
        parallel.merge_part_lines(spools, [g[1] for g in got if g[1] is not None], split)
    else:
        parallel.merge_parts(spools, on_verdict)
    for spool in spools:
        os.unlink(spool)
    total = Counters()
    for counters, *_ in got:
        parallel.merge_counters(total, counters)
    return total
