"""``tlssniff report CAPTURE... -o DIR``: an evidence bundle for an incident ticket.

Thin: the options go to :class:`tlssniff.run.report.ReportRun`, which analyzes the captures
exactly as ``analyze`` does (same engine, limits, jobs), spools the verdicts to disk and hands
everything to :func:`tlssniff.output.report.write_bundle` (docs/report.md).
Exit status: 0; 3 when ``--fail-under`` finds a server below the rate; 2 unusable input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tlssniff import options

Captures = Annotated[list[Path], typer.Argument(
    help="pcap or pcapng files (optionally .gz).", show_default=False)]
BundleDir = Annotated[Path, typer.Option(
    "--output", "-o", help="Directory to write the bundle into (created).", metavar="DIR")]
Anonymize = Annotated[bool, typer.Option(
    "--anonymize", help="Replace client addresses by consistent pseudonyms everywhere, "
    "packets included (servers are kept).")]
Redact = Annotated[bool, typer.Option(
    "--redact", help="Replace session ids, tickets and PSK identities by short keyed "
    "hashes that still link offers to the sessions they resume.")]
Verify = Annotated[bool, typer.Option(
    "--verify/--no-verify", help="Cross-check the verdicts with tshark (when installed) "
    "and record the result.")]
Force = Annotated[bool, typer.Option(
    "--force", help="Replace the bundle in a directory that is not empty.")]


def report(
    captures: Captures,
    output: BundleDir,
    anonymize: Anonymize = False,
    redact: Redact = False,
    fail_under: options.FailUnder = None,
    min_handshakes: options.MinHandshakes = 10,
    verify: Verify = True,
    max_flows: options.MaxFlows = options.LIMITS.max_flows,
    idle_timeout: options.IdleTimeout = options.LIMITS.idle_timeout,
    max_buffer: options.MaxBuffer = options.LIMITS.max_buffer,
    max_pending_memory: options.MaxPendingMemory = options.LIMITS.max_pending_memory,
    jobs: options.Jobs = 1,
    one_stream: options.OneStream = False,
    force: Force = False,
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
    from tlssniff.run.report import ReportRun
    from tlssniff.run.session import FailUnder

    ReportRun(captures, output,
              options.limits(max_flows, idle_timeout, max_buffer, max_pending_memory),
              FailUnder(fail_under, min_handshakes), anonymize=anonymize, redact=redact,
              verify=verify, jobs=jobs, one_stream=one_stream, force=force, quiet=quiet).run()
