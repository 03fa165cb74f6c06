"""``analyze``'s run: its sinks (the verdict writer or Parquet file, the aggregation, the
findings of the summary formats), its file sources, its summary and its exit policy."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.errors import UsageError
from tlssniff.flow.table import Limits
from tlssniff.output import display
from tlssniff.output.formats import VerdictWriter
from tlssniff.run import offline
from tlssniff.run.session import FailUnder, Session, conclude

#: The formats that end with a summary of every verdict, and so get the findings
#: (docs/diagnostics.md); the streams stay as they are.
SUMMARY_FORMATS = ("table", "json")


@dataclass
class AnalyzeRun:
    """What ``tlssniff analyze`` was asked (its options, parsed)."""

    captures: list[Path]
    fmt: str
    output: Path | None
    limits: Limits
    policy: FailUnder
    progress: bool = True
    quiet: bool = False
    jobs: int = 1
    one_stream: bool = False
    dask: str | None = None
    top: int = 0
    max_servers: int = 0

    def check(self) -> None:
        """The combinations the parser cannot refuse, and the inputs (before any output)."""
        if self.fmt == "parquet" and self.output is None:
            raise UsageError("--format parquet is a binary file: write it with --output FILE")
        if self.dask is not None and self.one_stream:
            raise UsageError("--dask and --one-stream cannot be combined (one stream is "
                             "sequential)")
        if self.dask is None:
            offline.check_inputs(self.captures)

    def run(self, err_console) -> None:
        """Analyze, write the output, then the exit policy (warnings, errors, --fail-under)."""
        self.check()
        agg = Aggregator(self.max_servers)
        with contextlib.ExitStack() as stack:
            out, write = self._open(stack)
            writer = VerdictWriter(self.fmt, out, [str(p) for p in self.captures])
            session = Session(self.limits, [agg.add, write or writer.write])
            diag = None
            if self.fmt in SUMMARY_FORMATS:
                from tlssniff.analysis.diagnostics import Diagnostics

                diag = Diagnostics()
                session.sinks.append(diag.add)
            with offline.progress_bar(self.progress, err_console) as update:
                # Streamed lines: --jobs workers aggregate and write their own (parallel.Split).
                offline.run_files(session, self.captures, jobs=self.jobs,
                                  one_stream=self.one_stream, dask=self.dask, progress=update,
                                  split=offline.stream_split(self.fmt, agg, out))
            self._summary(out, writer, agg, session, diag)
            out.flush()
        conclude(err_console, warnings=session.warnings, errors=session.errors,
                 policy=self.policy, agg=agg, quiet=self.quiet)

    def _open(self, stack: contextlib.ExitStack):
        """The output file (stdout without -o) and, for Parquet, its writer's ``write``."""
        if self.fmt == "parquet":
            from tlssniff.output.parquet import ParquetVerdictWriter

            assert self.output is not None
            table_out = ParquetVerdictWriter(str(self.output))
            stack.callback(table_out.close)
            return sys.stdout, table_out.write
        if self.output is not None:
            from tlssniff.output.files import open_output

            return stack.enter_context(open_output(self.output, "w")), None
        return sys.stdout, None

    def _summary(self, out, writer: VerdictWriter, agg: Aggregator, session: Session,
                 diag) -> None:
        counters = session.counter_dict()
        if self.fmt == "json":
            writer.finish(agg, counters, diag)
        elif self.fmt == "table":
            from tlssniff.output.table import print_report

            console = display.console(file=out) if self.output is not None else display.console()
            print_report(console, agg, counters, diag.findings(), top=self.top)
