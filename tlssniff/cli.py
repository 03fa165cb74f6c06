"""Command line: thin typer commands over the pipeline; errors become one line and an exit code.

:func:`run` is the boundary: every exception becomes one line on stderr and one
:class:`~tlssniff.errors.ExitCode` (0 done; 1 internal error; 2 bad usage or unusable input;
3 under --fail-under; 4 verify contradiction; 5 probe target unreachable; 130 interrupted).
Options shared by several commands are declared once, in :mod:`tlssniff.options`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from tlssniff import __version__
from tlssniff.analysis.aggregate import MAX_SERVERS
from tlssniff import options
from tlssniff.errors import ExitCode, TlssniffError, UsageError
from tlssniff.output import display
from tlssniff.run.outputs import OUTPUTS
from tlssniff.output.table import TOP_SERVERS

app = typer.Typer(
    name="tlssniff",
    help="Passive TLS handshake analyzer: proves whether TLS session resumption really happens.",
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: compact at 80 columns, no markup to interpret
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

err_console = display.console(stderr=True)


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


# analyze's own options (the shared ones are in tlssniff.options)
Captures = Annotated[list[Path], typer.Argument(
    metavar="CAPTURE",
    help="pcap or pcapng files (optionally .gz), or tlssniff's own JSONL verdict files "
    "(-f jsonl output, e.g. of each node's sensor), recognised by content. Each file is "
    "analyzed on its own (see --one-stream); findings follow time, not file order.",
    show_default=False)]
Format = Annotated[str, typer.Option(
    "--format", "-f", parser=options.choice(*OUTPUTS), metavar="FORMAT",
    help="table (default): per-server table; json: summary and every connection; "
    "jsonl: one object per TLS connection, streamed; csv: one row per connection; "
    "ecs: JSON lines in Elastic Common Schema names; parquet: one typed row per "
    "connection (needs --output FILE and pyarrow).")]
Output = Annotated[Optional[Path], typer.Option(
    "--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")]
ShowProgress = Annotated[bool, typer.Option(
    help="Show a progress bar on stderr (only when it is a terminal).")]
Dask = Annotated[Optional[str], typer.Option(
    "--dask", metavar="ADDRESS",
    help="Run the analysis on the Dask cluster whose scheduler is ADDRESS "
    "(tcp://HOST:8786); the captures must be readable by every worker under the same "
    "name (shared path or fsspec URL). The output is identical to a local run. "
    "--jobs N: flow-hash partitions per capture (default: one capture over every "
    "worker thread, several captures one task each). Needs 'tlssniff[dask]'.")]
Top = Annotated[int, typer.Option(
    "--top", metavar="N", min=0,
    help="The table shows the N busiest servers and the rest as one row; "
    "0: every server (-f json lists every server too).")]
MaxServers = Annotated[int, typer.Option(
    "--max-servers", metavar="N", min=0,
    help="Servers with figures of their own; beyond, the busiest are kept "
    "(a space-saving summary) and the others counted together as "
    "'other servers', exactly. 0: no bound (memory grows with the servers).")]


def analyze(
    captures: Captures,
    fmt: Format = "table",
    output: Output = None,
    max_flows: options.MaxFlows = options.LIMITS.max_flows,
    idle_timeout: options.IdleTimeout = options.LIMITS.idle_timeout,
    max_buffer: options.MaxBuffer = options.LIMITS.max_buffer,
    max_pending_memory: options.MaxPendingMemory = options.LIMITS.max_pending_memory,
    progress: ShowProgress = True,
    quiet: options.Quiet = False,
    jobs: options.Jobs = 1,
    one_stream: options.OneStream = False,
    dask: Dask = None,
    fail_under: options.FailUnder = None,
    min_handshakes: options.MinHandshakes = 10,
    top: Top = TOP_SERVERS,
    max_servers: MaxServers = MAX_SERVERS,
) -> None:
    """Classify every TLS handshake in capture files and report resumption per server.

    Every TLS connection gets a verdict: handshake (full, session_id, ticket, psk or
    unknown), what the client offered, whether it resumed, the negotiated
    version, SNI, HelloRetryRequest and 0-RTT. See docs/verdicts.md for the exact rules.

    Examples:

      tlssniff analyze capture.pcapng

      tlssniff analyze day1.pcap.gz -f jsonl | jq 'select(.offered != "none")'

      tlssniff analyze --one-stream rotated.pcap0 rotated.pcap1

      tlssniff analyze cap.pcap --fail-under 80% --min-handshakes 20 || alert

    Exit status: 0 done; 2 bad usage or unusable input; 3 a server is under --fail-under.
    """
    from tlssniff.run.analyze import AnalyzeRun
    from tlssniff.run.session import FailUnder

    AnalyzeRun(captures, fmt, output,
               options.limits(max_flows, idle_timeout, max_buffer, max_pending_memory),
               FailUnder(fail_under, min_handshakes), progress=progress, quiet=quiet,
               jobs=jobs, one_stream=one_stream, dask=dask, top=top,
               max_servers=max_servers).run(err_console)


# -- the boundary: every exception becomes one line on stderr and an ExitCode ------------------
# Recent typer releases carry their own copy of click (typer._click, and pip installs no click);
# older ones use click itself. The exception classes are found through typer's own
# BadParameter, whichever it is, and the command is run with click's make_context/invoke, not
# click's main(), which would exit 1 on a closed pipe and print usage errors over 3 lines.
_CLICK_ERRORS = {c.__name__: c for c in typer.BadParameter.__mro__}
_ClickUsageError: type[Exception] = _CLICK_ERRORS["UsageError"]
_ClickException: type[Exception] = _CLICK_ERRORS["ClickException"]


class _PipeClosed(Exception):
    """stdout's reader went away (``| head``): raised past click, which would exit 1."""


def _one_line(text: str) -> str:
    """A message as one line of plain text: names in it (files, captured values) and controls,
    newlines included, shown as escapes by the one display rule (tlssniff.output.display)."""
    return display.for_terminal(text, 0)


def _say(message: str) -> None:
    err_console.print(f"tlssniff: {_one_line(message)}", markup=False, emoji=False,
                      highlight=False, soft_wrap=True)


def _commands() -> list[str]:
    return [info.name or info.callback.__name__ for info in app.registered_commands
            if info.callback is not None]


def _usage_line(err: Exception) -> str:
    """click's usage error as one line: what was wrong, and which --help to read."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    ctx = getattr(err, "ctx", None)
    path = ctx.command_path if ctx is not None else "tlssniff"
    return f"error: {message.strip()} (see '{path} --help')"


def _precheck(argv: list[str]) -> str | None:
    """The command name, checked before click: a missing or misspelt one is one line."""
    names = _commands()
    if not argv:
        return f"error: missing command: {', '.join(names)} (see 'tlssniff --help')"
    first = argv[0]
    if first.startswith("-") or first in names:
        return None
    import difflib

    close = difflib.get_close_matches(first, names, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"error: no such command {first!r}: {hint}the commands are {', '.join(names)} "
            "(see 'tlssniff --help')")


def run(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status.

    The one place where exceptions become exit statuses (:class:`ExitCode`): usage errors and
    :class:`~tlssniff.errors.TlssniffError` are one line on stderr; anything else is a bug,
    reported in one line (the traceback with ``TLSSNIFF_DEBUG=1``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        problem = _precheck(argv)
        if problem is not None:
            _say(problem)
            return ExitCode.USAGE
        command = typer.main.get_command(app)
        try:
            with command.make_context("tlssniff", argv) as ctx:
                command.invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        except BrokenPipeError:
            raise _PipeClosed() from None
        return ExitCode.OK
    except _PipeClosed:
        # Output piped into `head` and closed early: what was wanted was read. Further writes
        # (and the interpreter's own flush at exit) go nowhere.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except UsageError as err:  # found after parsing: the same line as click's own
        command = argv[0] if argv and argv[0] in _commands() else ""
        _say(f"error: {err} (see 'tlssniff {command + ' ' if command else ''}--help')")
        return err.exit_code
    except TlssniffError as err:
        _say(f"error: {err}")
        return err.exit_code
    except _ClickUsageError as err:
        _say(_usage_line(err))
        return ExitCode.USAGE
    except _ClickException as err:
        _say(f"error: {err.format_message()}")  # type: ignore[attr-defined]
        return ExitCode.USAGE
    except typer.Exit as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if os.environ.get("TLSSNIFF_DEBUG") == "1":
            raise
        _say(f"internal error: {type(exc).__name__}: {exc} (a bug: please report it; "
             "TLSSNIFF_DEBUG=1 shows the traceback)")
        return ExitCode.INTERNAL


def main() -> None:
    """Console entry point (``tlssniff``, ``python -m tlssniff``): exits with run()'s status."""
    # The analysis allocates many short-lived objects and makes no reference cycles worth
    # collecting early: a larger first generation saves ~5% (bench/bench.py, callgrind).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    sys.exit(int(run()))


# -- the commands, one registration line each (tlssniff/commands/ beyond analyze) --------------
def _help(doc: str | None) -> str:
    """A docstring as command help: each paragraph one line (the terminal wraps it, whatever
    its width), indented lines (the examples) kept as they are, whole and copyable."""
    import inspect

    out = []
    for para in inspect.cleandoc(doc or "").split("\n\n"):
        lines = para.splitlines()
        out.append(para if lines and lines[0].startswith(" ") else " ".join(lines))
    return "\n\n".join(out)


def _register(name: str, command) -> None:
    app.command(name, help=_help(command.__doc__))(command)


from tlssniff.commands import live as _live  # noqa: E402
from tlssniff.commands import probe as _probe  # noqa: E402
from tlssniff.commands import report as _report  # noqa: E402
from tlssniff.commands import verify as _verify  # noqa: E402

_register("analyze", analyze)
_register("live", _live.live)
_register("probe", _probe.probe)
_register("report", _report.report)
_register("verify", _verify.verify)
