"""``tlssniff report CAPTURE... -o DIR``: an evidence bundle for an incident ticket.

Thin: analyze the captures exactly as ``analyze`` does (same pipeline, limits, jobs), spool the
verdicts to disk (:class:`~tlssniff.output.report.spool.VerdictSpool`: memory does not grow with
the connections), and hand everything to :func:`tlssniff.output.report.write_bundle` (docs/report.md).
Exit status: 0; 3 when ``--fail-under`` finds a server below the rate; 2 unusable input.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlssniff.errors import CaptureError, UsageError
from tlssniff.flow.table import Limits

_DEFAULT_LIMITS = Limits()


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
    fail_under: Annotated[Optional[str], typer.Option(
        "--fail-under", metavar="RATE", help="Exit with status 3 when a server with at "
        "least --min-handshakes handshakes resumes less than RATE (0.8 or 80%); the "
        "bundle is written anyway.")] = None,
    min_handshakes: Annotated[int, typer.Option(
        "--min-handshakes", metavar="N",
        help="Servers with fewer handshakes are not held to --fail-under.")] = 10,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Cross-check the verdicts with tshark (when installed) "
        "and record the result.")] = True,
    max_flows: Annotated[int, typer.Option(
        help="Connections tracked at once.")] = _DEFAULT_LIMITS.max_flows,
    idle_timeout: Annotated[float, typer.Option(
        help="Seconds (capture time) after which an idle connection is closed.")
    ] = _DEFAULT_LIMITS.idle_timeout,
    max_buffer: Annotated[int, typer.Option(
        help="Out-of-order bytes buffered per direction.")] = _DEFAULT_LIMITS.max_buffer,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Analyze up to N captures at once.")
                    ] = 1,
    one_stream: Annotated[bool, typer.Option(
        "--one-stream", help="The captures are consecutive pieces of one capture.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No notes on stderr.")] = False,
) -> None:
    """Write an evidence bundle for an incident ticket: summary.md, report.html (charts),
    handshakes.jsonl, evidence.pcapng (annotated packets), summary.json, provenance.json.

    Exit status 3 with --fail-under when a server resumes too little (for cron and CI).

    Examples:

      tlssniff report capture.pcapng -o incident-1234/

      tlssniff report cap.pcap --anonymize --redact -o bundle/ --fail-under 80%
    """
    from rich.console import Console

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.analysis.diagnostics import Diagnostics
    from tlssniff.analysis.parallel import analyze_captures
    from tlssniff.output.report import FAIL_UNDER_EXIT, fail_under_lines, parse_rate, write_bundle
    from tlssniff.output.report.spool import VerdictSpool

    rate = parse_rate(fail_under) if fail_under is not None else None
    if min_handshakes < 1:
        raise UsageError("--min-handshakes must be at least 1")
    if max_flows < 1 or idle_timeout <= 0 or max_buffer < 0 or jobs < 0:
        raise UsageError("--max-flows, --idle-timeout, --max-buffer and --jobs must be positive")
    for path in captures:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: no such readable file")
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a directory")
    err = Console(stderr=True, highlight=False)
    started = time.time()
    verdicts = VerdictSpool()
    agg = Aggregator()
    diag = Diagnostics()

    def on_verdict(v) -> None:
        verdicts.append(v)
        agg.add(v)
        diag.add(v)

    limits = Limits(max_flows=max_flows, idle_timeout=idle_timeout, max_buffer=max_buffer)
    totals = analyze_captures([str(p) for p in captures], on_verdict, limits,
                              jobs or os.cpu_count() or 1, None, one_stream)
    with verdicts:
        bundle = write_bundle(
            output, verdicts, agg, diag, totals.to_dict(), [str(p) for p in captures],
            _argv(),
            anonymize=anonymize, redact=redact, cross_check=verify, fail_under_rate=rate,
            min_handshakes=min_handshakes, started=started,
        )
    if not quiet:
        for w in totals.warnings:
            err.print(f"tlssniff: warning: {w}", markup=False, soft_wrap=True)
        err.print(f"tlssniff: bundle written to {output}/ ({len(verdicts)} connections, "
                  f"{len(bundle.findings)} findings; cross-check: "
                  f"{bundle.cross_check.get('summary')})", markup=False, soft_wrap=True)
    if totals.errors:
        raise CaptureError("; ".join(totals.errors))
    if bundle.failing:
        for line in fail_under_lines(bundle.failing, rate):
            err.print(f"tlssniff: {line}", markup=False, soft_wrap=True)
        raise typer.Exit(FAIL_UNDER_EXIT)


def _argv() -> list[str]:
    """The command line as it was typed (``python -m tlssniff`` shows as such)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith("__main__.py"):
        return [sys.executable, "-m", "tlssniff", *argv[1:]]
    return argv
