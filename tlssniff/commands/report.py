"""``tlssniff report CAPTURE... -o DIR``: an evidence bundle for an incident ticket.

Thin: analyze the captures exactly as ``analyze`` does (same pipeline, limits, jobs), spool the
verdicts to disk (:class:`~tlssniff.output.report.spool.VerdictSpool`: memory does not grow with
the connections), and hand everything to :func:`tlssniff.output.report.write_bundle` (docs/report.md).
Exit status: 0; 3 when ``--fail-under`` finds a server below the rate; 2 unusable input.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tlssniff import options
from tlssniff.errors import CaptureError, ExitCode


def report(
    captures: Annotated[list[Path], typer.Argument(
        help="pcap or pcapng files (optionally .gz).", show_default=False)],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Directory to write the bundle into (created).",
        metavar="DIR")],
    anonymize: Annotated[bool, typer.Option(
        "--anonymize", help="Replace client addresses by consistent pseudonyms everywhere, "
        "packets included (servers are kept).")] = False,
    redact: Annotated[bool, typer.Option(
        "--redact", help="Replace session ids, tickets and PSK identities by short keyed "
        "hashes that still link offers to the sessions they resume.")] = False,
    fail_under: options.FailUnder = None,
    min_handshakes: options.MinHandshakes = 10,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Cross-check the verdicts with tshark (when installed) "
        "and record the result.")] = True,
    max_flows: options.MaxFlows = options.LIMITS.max_flows,
    idle_timeout: options.IdleTimeout = options.LIMITS.idle_timeout,
    max_buffer: options.MaxBuffer = options.LIMITS.max_buffer,
    max_pending_memory: options.MaxPendingMemory = options.LIMITS.max_pending_memory,
    jobs: options.Jobs = 1,
    one_stream: options.OneStream = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace the bundle in a directory that is not empty.")] = False,
    quiet: options.Quiet = False,
) -> None:
    """Write an evidence bundle for an incident ticket: summary.md, report.html (charts),
    handshakes.jsonl, evidence.pcapng (annotated packets), summary.json, provenance.json.

    Exit status 3 with --fail-under when a server resumes too little (for cron and CI).

    Examples:

      tlssniff report capture.pcapng -o incident-1234/

      tlssniff report cap.pcap -o bundle/ --anonymize --redact

      tlssniff report cap.pcap -o bundle/ --fail-under 80% || alert
    """
    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.analysis.diagnostics import Diagnostics
    from tlssniff.analysis.parallel import analyze_captures
    from tlssniff.output import display
    from tlssniff.output.report import fail_under_lines, write_bundle
    from tlssniff.output.report.spool import VerdictSpool

    rate = fail_under
    for path in captures:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: no such readable file")
    from tlssniff.output.files import OutputDir

    odir = OutputDir(output, force=force)  # refused now, not after the analysis
    err = display.console(stderr=True)
    started = time.time()
    verdicts = VerdictSpool()
    agg = Aggregator()
    diag = Diagnostics()

    bar = _Progress(err) if not quiet and err.is_terminal else None

    def on_verdict(v) -> None:
        verdicts.append(v)
        agg.add(v)
        diag.add(v)
        if bar is not None and len(verdicts) % 500 == 0:
            bar.step(f"analyzing: {len(verdicts)} connections")

    limits = options.limits(max_flows, idle_timeout, max_buffer, max_pending_memory)
    with odir, verdicts, (bar or contextlib.nullcontext()):
        if bar is not None:
            bar.step("analyzing")
        totals = analyze_captures([str(p) for p in captures], on_verdict, limits,
                                  jobs or os.cpu_count() or 1, None, one_stream)
        bundle = write_bundle(
            odir, verdicts, agg, diag, totals.to_dict(), [str(p) for p in captures],
            _argv(),
            anonymize=anonymize, redact=redact, cross_check=verify, fail_under_rate=rate,
            min_handshakes=min_handshakes, started=started,
            progress=bar.step if bar is not None else None,
        )
    if not quiet:
        for w in totals.warnings:
            err.print(f"tlssniff: warning: {display.for_terminal(w, 0)}", markup=False,
                      soft_wrap=True)
        err.print(display.for_terminal(
            f"tlssniff: bundle written to {output}/ ({len(verdicts)} connections, "
            f"{len(bundle.findings)} findings; cross-check: "
            f"{bundle.cross_check.get('summary')})", 0), markup=False, soft_wrap=True)
        if "seconds" in bundle.cross_check:
            err.print(f"tlssniff: cross-check: {bundle.cross_check['seconds']:.1f} s of "
                      f"{time.time() - started:.1f} s; --no-verify skips it", markup=False,
                      soft_wrap=True)
    if totals.errors:
        raise CaptureError("; ".join(totals.errors))
    if bundle.failing:
        for line in fail_under_lines(bundle.failing, rate):
            err.print(f"tlssniff: {display.for_terminal(line, 0)}", markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.BELOW_THRESHOLD)


class _Progress:
    """The whole run's progress on a terminal's stderr: the step, its own elapsed time and the
    run's (rich; nothing when stderr is not a terminal)."""

    def __init__(self, console) -> None:
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("tlssniff report: {task.description}",
                                                             markup=False),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task("starting", total=None)

    def __enter__(self) -> "_Progress":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def step(self, what: str) -> None:
        self.progress.update(self.task, description=what, refresh=True)


def _argv() -> list[str]:
    """The command line as it was typed (``python -m tlssniff`` shows as such)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        return [sys.executable, "-m", "tlssniff", *argv[1:]]
    return argv
