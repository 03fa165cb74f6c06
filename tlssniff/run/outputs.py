"""The outputs of ``analyze``, one registry line each (:data:`OUTPUTS`).

A format is opened once per run (:meth:`Format.open`) into an :class:`Output`: ``write``, the
sink each verdict goes to, and ``finish``, what the format writes at the end from the
aggregation, the counters and the findings. Its :class:`Format` line says what the run must do
for it: ``summary`` (a summary of every verdict: the findings are computed, docs/diagnostics.md),
``stream`` (lines that stand alone, a CSV header apart, which the run's own writer writes when it
opens: ``--jobs`` workers write them themselves, parallel.Split),
``per_verdict`` (False: nothing is written per verdict, the summary is all: ``--jobs`` workers
then aggregate and make the findings' input themselves, parallel.Split without lines),
``binary`` (a file, never stdout: ``--output`` required).

A new output format: its writer in ``tlssniff/output/`` (every captured value through
``output/display.py``) and one line here; the ``-f`` choices read this registry.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.output import display
from tlssniff.output.formats import VerdictWriter
from tlssniff.run.session import Sink


def _nothing(agg: Aggregator, counters: dict, diagnostics: Any) -> None:
    return None


@dataclass
class Output:
    """One run's output: ``write`` each verdict, ``finish`` at the end; ``file`` the text
    stream it writes to (where --jobs workers append their lines)."""

    write: Sink
    file: IO[str]
    finish: Callable[[Aggregator, dict, Any], None] = _nothing


@dataclass(frozen=True)
class Where:
    """Where a run's output goes: ``file`` (stdout or ``--output`` opened as text, None for a
    binary format), the ``--output`` path, the inputs' names and the table's ``--top``."""

    file: IO[str] | None
    path: Path | None
    captures: list[str]
    top: int = 0


@dataclass(frozen=True)
class Format:
    """A format's registry line: how it opens, and what the run does for it (module doc)."""

    open: Callable[[Where, contextlib.ExitStack], Output]
    summary: bool = False
    stream: bool = False
    per_verdict: bool = True
    binary: bool = False


def _lines(where: Where, stack: contextlib.ExitStack, fmt: str) -> Output:
    assert where.file is not None
    return Output(VerdictWriter(fmt, where.file).write, where.file)


def _json(where: Where, stack: contextlib.ExitStack) -> Output:
    assert where.file is not None
    writer = VerdictWriter("json", where.file, where.captures)
    return Output(writer.write, where.file, writer.finish)


def _table(where: Where, stack: contextlib.ExitStack) -> Output:
    out = where.file
    assert out is not None

    def finish(agg: Aggregator, counters: dict, diagnostics: Any) -> None:
        from tlssniff.output.table import print_report

        console = display.console(file=out) if where.path is not None else display.console()
        print_report(console, agg, counters, diagnostics.findings(), top=where.top)

    return Output(lambda v: None, out, finish)


def _parquet(where: Where, stack: contextlib.ExitStack) -> Output:
    from tlssniff.output.parquet import ParquetVerdictWriter

    assert where.path is not None
    table_out = ParquetVerdictWriter(str(where.path))
    stack.callback(table_out.close)
    return Output(table_out.write, sys.stdout)


def _line_format(fmt: str, stream: bool) -> Format:
    return Format(lambda where, stack: _lines(where, stack, fmt), stream=stream)


OUTPUTS: dict[str, Format] = {
    "table": Format(_table, summary=True, per_verdict=False),
    "json": Format(_json, summary=True),
    "jsonl": _line_format("jsonl", stream=True),
    "csv": _line_format("csv", stream=True),
    "ecs": _line_format("ecs", stream=True),
    "parquet": Format(_parquet, binary=True),
}
