"""``tlssniff report CAPTURE... -o DIR``: an evidence bundle for an incident ticket.

Thin: analyze the captures exactly as ``analyze`` does (same pipeline, limits, jobs), keep the
verdicts, and hand everything to :func:`tlssniff.output.report.write_bundle` (docs/report.md).
Exit status: 0; 3 when ``--fail-under`` finds a server below the rate; 2 unusable input.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tlssniff import options
from tlssniff.errors import CaptureError, ExitCode, UsageError


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

    rate = fail_under
    for path in captures:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: no such readable file")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a directory")
    err = display.console(stderr=True)
    started = time.time()
    verdicts = []
    agg = Aggregator()
    diag = Diagnostics()

    def on_verdict(v) -> None:
        verdicts.append(v)
        agg.add(v)
        diag.add(v)

    limits = options.limits(max_flows, idle_timeout, max_buffer, max_pending_memory)
    totals = analyze_captures([str(p) for p in captures], on_verdict, limits,
                              jobs or os.cpu_count() or 1, None, one_stream)
    bundle = write_bundle(
        output, verdicts, agg, diag, totals.to_dict(), [str(p) for p in captures],
        _argv(),
        anonymize=anonymize, redact=redact, cross_check=verify, fail_under_rate=rate,
        min_handshakes=min_handshakes, started=started,
    )
    if not quiet:
        for w in totals.warnings:
            err.print(f"tlssniff: warning: {display.for_terminal(w, 0)}", markup=False,
                      soft_wrap=True)
        err.print(display.for_terminal(
            f"tlssniff: bundle written to {output}/ ({len(verdicts)} connections, "
            f"{len(bundle.findings)} findings; cross-check: "
            f"{bundle.cross_check.get('summary')})", 0), markup=False, soft_wrap=True)
    if totals.errors:
        raise CaptureError("; ".join(totals.errors))
    if bundle.failing:
        for line in fail_under_lines(bundle.failing, rate):
            err.print(f"tlssniff: {display.for_terminal(line, 0)}", markup=False, soft_wrap=True)
        raise typer.Exit(ExitCode.BELOW_THRESHOLD)


def _argv() -> list[str]:
    """The command line as it was typed (``python -m tlssniff`` shows as such)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        return [sys.executable, "-m", "tlssniff", *argv[1:]]
    return argv
