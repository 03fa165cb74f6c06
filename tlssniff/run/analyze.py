"""``analyze``'s run: its sinks (the output format of run/outputs.py, the aggregation, the
findings of the summary formats), its file sources, its summary and its exit policy."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.errors import UsageError
from tlssniff.flow.table import Limits
from tlssniff.run import offline
from tlssniff.run.outputs import OUTPUTS, Where
from tlssniff.run.session import FailUnder, Session, conclude


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
        if OUTPUTS[self.fmt].binary and self.output is None:
            raise UsageError(f"--format {self.fmt} is a binary file: write it with --output "
                             "FILE")
        if self.dask is not None and self.one_stream:
            raise UsageError("--dask and --one-stream cannot be combined (one stream is "
                             "sequential)")
        if self.dask is None:
            offline.check_inputs(self.captures)

    def run(self, err_console) -> None:
        """Analyze, write the output, then the exit policy (warnings, errors, --fail-under)."""
        self.check()
        fmt = OUTPUTS[self.fmt]
        # The per-server figures, when something reads them: a summary format, --fail-under.
        # A stream of lines alone skips them (4% of the CPU of -f jsonl on the handshake
        # capture; callgrind, Aggregator.add, 109 of 2,602 M instructions of the analysis).
        agg = (Aggregator(self.max_servers) if fmt.summary or self.policy.rate is not None
               else None)
        with contextlib.ExitStack() as stack:
            file = None
            if not fmt.binary:
                from tlssniff.output.files import block_buffered, open_output

                if self.output is not None:
                    file = stack.enter_context(open_output(self.output, "w"))
                elif self.fmt != "table":  # the table's report goes through rich's console
                    file = stack.enter_context(block_buffered(sys.stdout))
                else:
                    file = sys.stdout
            out = fmt.open(Where(file, self.output, [str(p) for p in self.captures], self.top),
                           stack)
            session = Session(self.limits, [out.write] if agg is None else [agg.add, out.write])
            diag = None
            if fmt.summary:
                from tlssniff.analysis.diagnostics import Diagnostics

                diag = Diagnostics()
                session.sinks.append(diag.add)
            # Streamed lines: --jobs workers aggregate and write their own; a summary alone
            # (the table): they aggregate and make the diagnostics' input (parallel.Split).
            split = (offline.stream_split(self.fmt, agg, out.file) if fmt.stream else
                     offline.summary_split(agg, diag)
                     if not fmt.per_verdict and agg is not None and diag is not None
                     else None)
            with offline.progress_bar(self.progress, err_console) as update:
                offline.run_files(session, self.captures, jobs=self.jobs,
                                  one_stream=self.one_stream, dask=self.dask, progress=update,
                                  split=split)
            out.finish(agg, session.counter_dict(), diag)  # type: ignore[arg-type]  # None: no summary
            out.file.flush()
        conclude(err_console, warnings=session.warnings, errors=session.errors,
                 policy=self.policy, agg=agg, quiet=self.quiet)
