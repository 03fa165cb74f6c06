"""Options shared by the commands, declared once (one line each; used by analyze, live, report).

A command takes one as ``max_flows: options.MaxFlows = options.LIMITS.max_flows``. Every value
goes through one parser of :mod:`tlssniff.units` (or :func:`count`), so a bad value gets the
same message whichever command it was given to: ``tlssniff: error: Invalid value for
'--max-pending-memory': '1' is below the minimum 1M ...``, exit status 2.
"""

from __future__ import annotations

from typing import Annotated, Callable, Optional, TypeVar

import typer

from tlssniff.flow.table import PENDING_COST, Limits
from tlssniff.units import BadValue, format_size, parse_duration, parse_rate, parse_size

T = TypeVar("T", int, float)
V = TypeVar("V")

LIMITS = Limits()
# A connection without a verdict is charged PENDING_COST plus what it buffers, a whole hello
# (up to Limits.max_message) included: below this budget not even one handshake fits, and every
# connection would be evicted before its verdict.
MIN_PENDING_MEMORY = 1 << 20
assert MIN_PENDING_MEMORY > PENDING_COST + LIMITS.max_message


def for_option(parse: Callable[[str], V]) -> Callable[[str], V]:
    """``parse`` as an option's ``parser=``: its :class:`BadValue` becomes click's BadParameter.

    click keeps a BadParameter's message ("Invalid value for '--jobs': 'x' is not a whole
    number"); a ValueError it replaces with the bare value, and so did every typer before 0.29.
    """

    def convert(text: str) -> V:
        try:
            return parse(text)
        except BadValue as err:
            raise typer.BadParameter(str(err)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def at_least(parse: Callable[[str], T], low: T, shown: str = "") -> Callable[[str], T]:
    """``parse``, then refuse values below ``low`` (named ``shown`` in the message)."""

    def check(text: str) -> T:
        value = parse(text)
        if value < low:
            raise BadValue(f"{text!r} is below the minimum {shown or low}")
        return value

    check.__name__ = getattr(parse, "__name__", "value")
    return for_option(check)


def count(text: str | int) -> int:
    """A whole number (``--jobs``, ``--max-flows``)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    try:
        return int(str(text).strip().replace("_", ""))
    except ValueError:
        raise BadValue(f"{text!r} is not a whole number") from None


def choice(*names: str) -> Callable[[str], str]:
    """One of ``names`` (``--format``)."""

    def check(text: str) -> str:
        if text not in names:
            raise BadValue(f"{text!r} is not one of {', '.join(names)}")
        return text

    check.__name__ = "choice"
    return for_option(check)


def _positive_duration(text: str | float) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise BadValue(f"{text!r} must be more than 0 seconds")
    return value


MaxFlows = Annotated[int, typer.Option(
    "--max-flows", parser=at_least(count, 1), metavar="N",
    help="Connections tracked at once; the least active are evicted beyond.")]
IdleTimeout = Annotated[float, typer.Option(
    "--idle-timeout", parser=for_option(_positive_duration), metavar="SECONDS",
    show_default=False,
    help="Capture time (300, 90s, 5m) after which an idle connection is closed. "
    "Default: 300s.")]
MaxBuffer = Annotated[int, typer.Option(
    "--max-buffer", parser=for_option(parse_size), metavar="SIZE", show_default=False,
    help="Out-of-order bytes buffered per direction before a verdict (256K, 1M). "
    f"Default: {format_size(LIMITS.max_buffer)}.")]
MaxPendingMemory = Annotated[int, typer.Option(
    "--max-pending-memory", parser=at_least(parse_size, MIN_PENDING_MEMORY, "1M"),
    metavar="SIZE", show_default=False,
    help="Memory of all connections still without a verdict (64M, 1G; at least 1M); "
    f"the least active are evicted beyond. Default: {format_size(LIMITS.max_pending_memory)}.")]
Jobs = Annotated[int, typer.Option(
    "--jobs", "-j", parser=at_least(count, 0), metavar="N",
    help="N processes: up to N captures at once, or one capture split over N by flow hash; "
    "the output is identical to --jobs 1. 0: one per core.")]
OneStream = Annotated[bool, typer.Option(
    "--one-stream",
    help="The captures are consecutive pieces of one capture (tcpdump -C/-G rotation): "
    "follow connections across files. Without it each file is analyzed on its own.")]
FailUnder = Annotated[Optional[float], typer.Option(
    "--fail-under", parser=for_option(parse_rate), metavar="RATE",
    help="Exit with status 3 when a server with at least --min-handshakes handshakes resumes "
    "less than RATE (80% or 0.8; a bare number is a fraction, 1 = 100%) of its classified "
    "handshakes; the servers are named on stderr.")]
MinHandshakes = Annotated[int, typer.Option(
    "--min-handshakes", parser=at_least(count, 1), metavar="N",
    help="Servers with fewer handshakes are not held to --fail-under.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No warnings or notes on stderr.")]


def limits(max_flows: int, idle_timeout: float, max_buffer: int,
           max_pending_memory: int) -> Limits:
    """The :class:`Limits` of the four options above."""
    return Limits(max_flows=max_flows, idle_timeout=idle_timeout, max_buffer=max_buffer,
                  max_pending_memory=max_pending_memory)
