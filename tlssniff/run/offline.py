"""The file sources: capture files (one by one, ``--one-stream``, ``--jobs`` pools and flow-hash
partitions, ``--dask``) and tlssniff's own verdict files, into one :class:`~.session.Session`.

The engine's parallel parts (engine/parallel.py, engine/distributed.py) write streamed
lines themselves when the output allows it (``-f jsonl``/``ecs``: each worker writes and
aggregates its own verdicts, see :class:`~tlssniff.engine.parallel.Split`); the writer they
use is handed to them from here (:func:`line_writer`), so the engine imports no output.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.engine.parallel import Split, analyze_captures
from tlssniff.errors import CaptureError
from tlssniff.output.formats import VerdictWriter
from tlssniff.run.session import Session

def check_inputs(captures: list[Path]) -> None:
    """Every input exists, is a file and is readable (``analyze``'s messages)."""
    for path in captures:
        if not path.exists():
            raise CaptureError(f"{path}: no such file")
        if path.is_dir():
            raise CaptureError(f"{path}: is a directory, not a capture file")
        if not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: permission denied")


def check_readable(captures: list[Path]) -> None:
    """Every input is a readable file (``report``'s message)."""
    for path in captures:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: no such readable file")


def line_writer(fmt: str) -> Callable[[IO[str]], VerdictWriter]:
    """A picklable factory of ``fmt`` line writers (what --jobs and Dask workers write with):
    lines only, no CSV header (the run's own writer wrote it)."""
    return functools.partial(VerdictWriter, fmt, header=False)


def stream_split(fmt: str, agg: Aggregator | None, out: IO[str]) -> Split:
    """The workers' share of a streamed output in ``fmt`` (a format whose lines stand alone:
    run/outputs.py ``stream``): they write their own verdicts, and aggregate them into ``agg``
    unless it is None."""
    return Split(line_writer(fmt), agg, out)


def summary_split(agg: Aggregator, diagnostics) -> Split:
    """The workers' share of a summary that writes nothing per verdict (the table): they
    aggregate into ``agg`` and make the records the parent feeds ``diagnostics``."""
    return Split(None, agg, None, diagnostics)


@contextlib.contextmanager
def progress_bar(enabled: bool, console):
    """A progress bar on stderr for long files, only when stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None)

        def update(position: int, size: int | None) -> None:
            bar.update(task, completed=position, total=size)

        yield update


def run_files(session: Session, captures: list[Path], *, jobs: int = 1, one_stream: bool = False,
              dask: str | None = None, progress=None, split: Split | None = None,
              verdict_files: bool = True) -> Session:
    """Analyze ``captures`` into ``session``: the capture files by the engine (``jobs`` 0: one
    per core), then tlssniff's verdict files (recognised by content, sources.py). With
    ``split`` the workers write the streamed lines themselves and ``session``'s sinks must do
    nothing else (engine/parallel.py). Without ``verdict_files`` every input is a capture.
    """
    from tlssniff.sources import read_verdict_files, split_inputs

    pcaps, verdicts = split_inputs(captures) if verdict_files else (captures, [])
    totals = analyze_captures([str(p) for p in pcaps], session.add, session.limits,
                              jobs or os.cpu_count() or 1, progress, one_stream, split, dask)
    read, warnings = read_verdict_files(verdicts, session.add)
    totals.warnings.extend(warnings)
    if verdicts:
        session.verdicts_read = read
    session.done(totals)
    return session
