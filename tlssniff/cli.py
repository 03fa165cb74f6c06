"""Command line: thin typer commands over the pipeline; errors become one line and an exit code.

Exit status: 0 success; 1 unexpected internal error; 2 unusable input (unreadable capture,
bad option); 3 a server resumes less than --fail-under; 130 interrupted.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from tlssniff import __version__
from tlssniff.analysis.aggregate import MAX_SERVERS, Aggregator
from tlssniff.analysis.parallel import Split, analyze_captures
from tlssniff.errors import CaptureError, TlssniffError, UsageError
from tlssniff.flow.table import Limits
from tlssniff.output.formats import FORMATS, VerdictWriter
from tlssniff.output.table import TOP_SERVERS, print_report

app = typer.Typer(
    name="tlssniff",
    help="Passive TLS handshake analyzer: proves whether TLS session resumption really happens.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

err_console = Console(stderr=True, highlight=False)
_DEFAULT_LIMITS = Limits()


def _version(value: bool) -> None:
    if value:
        from tlssniff import _native

        build = "hot path compiled with mypyc" if _native.built() else "pure Python"
        print(f"tlssniff {__version__}, {build}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
) -> None:
    """Passive TLS handshake analyzer: classifies every handshake (full, session-id, ticket,
    TLS 1.3 PSK; offers refused; HelloRetryRequest; 0-RTT) and reports resumption per server."""


def _check_inputs(captures: list[Path]) -> None:
    for path in captures:
        if not path.exists():
            raise CaptureError(f"{path}: no such file")
        if path.is_dir():
            raise CaptureError(f"{path}: is a directory, not a capture file")
        if not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: permission denied")


@contextlib.contextmanager
def _progress(enabled: bool, total_files: int):
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
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=None)

        def update(position: int, size: int | None) -> None:
            bar.update(task, completed=position, total=size)

        yield update


@app.command()
def analyze(
    captures: Annotated[
        list[Path],
        typer.Argument(
            help="pcap or pcapng files (optionally .gz). Several files are read in order as one "
            "stream, like rotated captures of one link.",
            show_default=False,
        ),
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table (default): per-server table; json: summary and every connection; "
            "jsonl: one object per TLS connection, streamed; csv: one row per connection; "
            "ecs: JSON lines in Elastic Common Schema names.",
        ),
    ] = "table",
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
    max_flows: Annotated[
        int, typer.Option(help="Connections tracked at once; the least active are evicted beyond.")
    ] = _DEFAULT_LIMITS.max_flows,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds (capture time) after which an idle connection is closed.")
    ] = _DEFAULT_LIMITS.idle_timeout,
    max_buffer: Annotated[
        int, typer.Option(help="Out-of-order bytes buffered per direction before a verdict.")
    ] = _DEFAULT_LIMITS.max_buffer,
    max_pending_memory: Annotated[
        int, typer.Option(help="Bytes charged to connections still without a verdict, all "
                          "together; the least active are evicted beyond.")
    ] = _DEFAULT_LIMITS.max_pending_memory,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar on stderr (only when it is a terminal).")
    ] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No warnings on stderr.")] = False,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", "-j",
            help="Analyze up to N captures at once in N processes; the output is identical to "
            "--jobs 1. 0: one per core.",
        ),
    ] = 1,
    one_stream: Annotated[
        bool,
        typer.Option(
            "--one-stream",
            help="The captures are consecutive pieces of one capture (tcpdump -C/-G rotation): "
            "follow connections across files. Without it each file is analyzed on its own.",
        ),
    ] = False,
    fail_under: Annotated[
        Optional[str],
        typer.Option(
            "--fail-under", metavar="RATE",
            help="Exit with status 3 when a server with at least --min-handshakes handshakes "
            "resumes less than RATE (0.8 or 80%) of its classified handshakes; the servers "
            "are named on stderr. For cron and CI monitoring.",
        ),
    ] = None,
    min_handshakes: Annotated[
        int, typer.Option("--min-handshakes", metavar="N",
                          help="Servers with fewer handshakes are not held to --fail-under.")
    ] = 10,
    top: Annotated[
        int, typer.Option("--top", metavar="N",
                          help="The table shows the N busiest servers and the rest as one row; "
                          "0: every server (-f json lists every server too).")
    ] = TOP_SERVERS,
    max_servers: Annotated[
        int, typer.Option("--max-servers", metavar="N",
                          help="Servers with figures of their own; beyond, the busiest are kept "
                          "(a space-saving summary) and the others counted together as "
                          "'other servers', exactly. 0: no bound (memory grows with the "
                          "servers).")
    ] = MAX_SERVERS,
) -> None:
    """Classify every TLS handshake in capture files and report resumption per server.

    Every TLS connection gets a verdict: [b]handshake[/b] (full, session_id, ticket, psk or
    unknown), what the client [b]offered[/b], whether it [b]resumed[/b], the negotiated
    version, SNI, HelloRetryRequest and 0-RTT. See docs/verdicts.md for the exact rules.

    Examples:

      tlssniff analyze capture.pcapng

      tlssniff analyze day1.pcap.gz day2.pcap.gz --format jsonl | jq 'select(.offered != "none")'

      tlssniff analyze --one-stream rotated.pcap0 rotated.pcap1

      tlssniff analyze capture.pcap --fail-under 80% --min-handshakes 20 || alert

    Exit status: 0 done; 2 unusable input; 3 a server is under --fail-under.
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if max_flows < 1 or idle_timeout <= 0 or max_buffer < 0 or max_pending_memory < 0:
        raise UsageError("--max-flows, --idle-timeout and --max-buffer must be positive")
    if jobs < 0:
        raise UsageError("--jobs must be 0 (one per core) or more")
    if top < 0 or max_servers < 0:
        raise UsageError("--top and --max-servers must be 0 (no limit) or more")
    jobs = jobs or os.cpu_count() or 1
    from tlssniff.output.report import FAIL_UNDER_EXIT, fail_under_lines, parse_rate
    from tlssniff.output.report import fail_under as _fail_under

    rate = parse_rate(fail_under) if fail_under is not None else None
    if min_handshakes < 1:
        raise UsageError("--min-handshakes must be at least 1")
    _check_inputs(captures)
    limits = Limits(max_flows=max_flows, idle_timeout=idle_timeout, max_buffer=max_buffer,
                    max_pending_memory=max_pending_memory)

    with contextlib.ExitStack() as stack:
        if output is not None:
            try:
                out = stack.enter_context(open(output, "w", encoding="utf-8", newline=""))
            except OSError as err:
                raise UsageError(f"{output}: cannot write: {err.strerror}") from None
        else:
            out = sys.stdout
        agg = Aggregator(max_servers)
        writer = VerdictWriter(fmt, out, [str(p) for p in captures])
        # Findings (docs/diagnostics.md) for the summary outputs; streams stay as they were.
        diag = None
        if fmt in ("table", "json"):
            from tlssniff.analysis.diagnostics import Diagnostics

            diag = Diagnostics()

        def on_verdict(v) -> None:
            agg.add(v)
            writer.write(v)
            if diag is not None:
                diag.add(v)

        with _progress(progress, len(captures)) as update:
            # Streamed lines: --jobs workers aggregate and write their own (parallel.Split).
            split = Split(fmt, agg, out) if fmt in ("jsonl", "ecs") else None
            totals = analyze_captures(
                [str(p) for p in captures], on_verdict, limits, jobs, update, one_stream, split
            )
        counters = totals.to_dict()
        if fmt == "json":
            writer.finish(agg, counters, diag)
        elif fmt == "table":
            console = Console(file=out, highlight=False) if output is not None else Console(highlight=False)
            print_report(console, agg, counters, diag.findings(), top=top)
        out.flush()
    if not quiet:
        for warning in totals.warnings:
            err_console.print(f"tlssniff: warning: {warning}", markup=False, soft_wrap=True)
    if totals.errors:
        # What came before the damage was reported above; the run still failed.
        raise CaptureError("; ".join(totals.errors))
    if rate is not None:
        failing = _fail_under(agg, rate, min_handshakes)
        for line in fail_under_lines(failing, rate):
            err_console.print(f"tlssniff: {line}", markup=False, soft_wrap=True)
        if failing:
            raise typer.Exit(FAIL_UNDER_EXIT)


def main() -> None:
    """Console entry point: domain errors become one line on stderr and an exit status."""
    # The analysis allocates many short-lived objects and makes no reference cycles worth
    # collecting early: a larger first generation saves ~5% (bench/bench.py, callgrind).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        # With standalone_mode=False click returns a command's typer.Exit code instead of
        # exiting: pass it on.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except TlssniffError as err:
        err_console.print(f"tlssniff: error: {err}", markup=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
        sys.exit(0)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):  # usage errors: click's own message
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("TLSSNIFF_DEBUG"):
            raise
        err_console.print(
            f"tlssniff: internal error: {type(exc).__name__}: {exc} (a bug: please report it; "
            "TLSSNIFF_DEBUG=1 shows the traceback)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(1)


# -- further commands (tlssniff/commands/), one registration line each ------------------------
from tlssniff.commands import live as _live  # noqa: E402

app.command("live")(_live.live)
from tlssniff.commands import probe as _probe  # noqa: E402

app.command("probe")(_probe.probe)
from tlssniff.commands import report as _report  # noqa: E402

app.command("report")(_report.report)
from tlssniff.commands import verify as _verify  # noqa: E402

app.command("verify")(_verify.verify)
