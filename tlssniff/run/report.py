"""``report``'s run: the captures analyzed exactly as ``analyze`` does (same engine, limits,
jobs), the verdicts spooled to disk (:class:`~tlssniff.output.report.spool.VerdictSpool`: memory
does not grow with the connections) beside the aggregation and the findings, the bundle written
by :func:`tlssniff.output.report.write_bundle` (docs/report.md), then the exit policy."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.flow.table import Limits
from tlssniff.output import display
from tlssniff.run import offline
from tlssniff.run.session import FailUnder, Session, conclude


@dataclass
class ReportRun:
    """What ``tlssniff report`` was asked (its options, parsed)."""

    captures: list[Path]
    output: Path
    limits: Limits
    policy: FailUnder
    anonymize: bool = False
    redact: bool = False
    verify: bool = True
    jobs: int = 1
    one_stream: bool = False
    force: bool = False
    quiet: bool = False

    def run(self) -> None:
        from tlssniff.analysis.diagnostics import Diagnostics
        from tlssniff.output.files import OutputDir
        from tlssniff.output.report import write_bundle
        from tlssniff.output.report.bundle import InputDigests
        from tlssniff.output.report.html import ChartsInBackground
        from tlssniff.output.report.spool import LineSpool, VerdictSpool

        offline.check_readable(self.captures)
        odir = OutputDir(self.output, force=self.force)  # refused now, not after the analysis
        err = display.console(stderr=True)
        started = time.time()
        agg = Aggregator()
        diag = Diagnostics()
        bar = Progress(err) if not self.quiet and err.is_terminal else None
        inputs = [str(p) for p in self.captures]
        charts_worker = ChartsInBackground()  # forked now, while this process is small
        digests = InputDigests(inputs).start()  # provenance's hashes, beside the analysis
        with charts_worker, odir, contextlib.ExitStack() as stack, \
                (bar or contextlib.nullcontext()):
            if bar is not None:
                bar.step("analyzing")
            # handshakes.jsonl is written as the analysis goes, unless --anonymize or --redact
            # rewrite it: those need every verdict again (docs/report.md).
            writing = stack.enter_context(contextlib.ExitStack())  # handshakes.jsonl
            lines = None if self.anonymize or self.redact else \
                writing.enter_context(odir.open("handshakes.jsonl", "wb"))
            verdicts = stack.enter_context(LineSpool(lines) if lines is not None
                                           else VerdictSpool())
            session = Session(self.limits, [verdicts.append, agg.add, diag.add])
            if bar is not None:
                def progress(v) -> None:
                    if len(verdicts) % 500 == 0:
                        bar.step(f"analyzing: {len(verdicts)} connections")

                session.sinks.append(progress)
            offline.run_files(session, self.captures, jobs=self.jobs,
                              one_stream=self.one_stream, verdict_files=False)
            if isinstance(verdicts, LineSpool):
                verdicts.close_lines()
                writing.close()  # handshakes.jsonl complete and in place
                verdicts.reopen(odir.read_back("handshakes.jsonl"))
            bundle = write_bundle(
                odir, verdicts, agg, diag, session.counter_dict(), inputs, argv(),
                digests=digests, charts_worker=charts_worker, anonymize=self.anonymize,
                redact=self.redact,
                cross_check=self.verify,
                fail_under_rate=self.policy.rate, min_handshakes=self.policy.min_handshakes,
                started=started, progress=bar.step if bar is not None else None,
            )
        notes = [f"bundle written to {self.output}/ ({len(verdicts)} connections, "
                 f"{len(bundle.findings)} findings; cross-check: "
                 f"{bundle.cross_check.get('summary')})"]
        if "seconds" in bundle.cross_check:
            notes.append(f"cross-check: {bundle.cross_check['seconds']:.1f} s of "
                         f"{time.time() - started:.1f} s; --no-verify skips it")
        conclude(err, warnings=session.warnings, notes=notes, errors=session.errors,
                 policy=self.policy, failing=bundle.failing, quiet=self.quiet)


class Progress:
    """The whole run's progress on a terminal's stderr: the step, its own elapsed time and the
    run's (rich; nothing when stderr is not a terminal)."""

    def __init__(self, console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("tlssniff report: {task.description}",
                                                             markup=False),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> "Progress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def step(self, what: str) -> None:
        self.progress.update(self.task, description=what, refresh=True)


def argv() -> list[str]:
    """The command line as it was typed (``python -m tlssniff`` shows as such)."""
    args = list(sys.argv)
    if args and args[0].endswith("__main__.py"):
        return [sys.executable, "-m", "tlssniff", *args[1:]]
    return args
