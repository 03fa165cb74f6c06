"""A run: its limits, its sinks, what its source counted, and the exit policy (once).

Every source (capture files, verdict files, a live interface, ``--jobs`` workers, a Dask
cluster) feeds :meth:`Session.add` with verdicts and ends with :meth:`Session.done` and the
:class:`~tlssniff.engine.pipeline.Counters` it counted; every sink (a verdict writer, the
aggregation, diagnostics, the report spool, the dashboard's aggregate, metrics) is a callable
taking one verdict. :func:`conclude` is the exit policy of every command that analyzes: the
warnings (unless ``--quiet``), the errors (exit 2, after the output), ``--fail-under`` (exit 3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import typer

from tlssniff.analysis.aggregate import Aggregator, servers_under
from tlssniff.engine.pipeline import Analyzer, Counters
from tlssniff.analysis.verdict import ConnectionVerdict
from tlssniff.errors import CaptureError, ExitCode
from tlssniff.flow.table import Limits
from tlssniff.output import display

Sink = Callable[[ConnectionVerdict], None]

#: Counters whose meaning depends on the source, everything else being counted the same way
#: by every source (tests/test_live_equals_file.py): ``bytes`` is what was read of a capture
#: file (its file and record headers included, the compressed size of a .gz: what the progress
#: bar shows and the golden outputs pin), and the captured bytes of the frames of a live
#: capture (there is no file).
SOURCE_COUNTERS = {
    "bytes": {"file": "bytes read of the capture file", "live": "bytes of the captured frames"},
}


@dataclass
class Session:
    """One run. ``source`` is ``"file"`` or ``"live"`` (see :data:`SOURCE_COUNTERS`)."""

    limits: Limits
    sinks: list[Sink] = field(default_factory=list)
    source: str = "file"
    counters: Counters | None = None
    verdicts_read: int | None = None  # verdicts read back from verdict files (sources.py)

    def add(self, v: ConnectionVerdict) -> None:
        for sink in self.sinks:
            sink(v)

    def analyzer(self, name: str | None = None) -> Analyzer:
        """The engine for a frame source of this session (the live path's)."""
        analyzer = Analyzer(self.add, self.limits)
        analyzer.capture_name = name
        return analyzer

    def done(self, counters: Counters) -> Counters:
        self.counters = counters
        return counters

    def counter_dict(self) -> dict:
        """The counters as the outputs print them (``verdicts_read`` only with verdict files)."""
        assert self.counters is not None
        out = self.counters.to_dict()
        if self.verdicts_read is not None:
            out["verdicts_read"] = self.verdicts_read
        return out

    @property
    def warnings(self) -> list[str]:
        return self.counters.warnings if self.counters is not None else []

    @property
    def errors(self) -> list[str]:
        return self.counters.errors if self.counters is not None else []


@dataclass
class FailUnder:
    """``--fail-under RATE --min-handshakes N``: exit 3 when a server resumes too little."""

    rate: float | None
    min_handshakes: int = 10

    def failing(self, agg: Aggregator) -> list:
        if self.rate is None:
            return []
        return servers_under(agg, self.rate, self.min_handshakes)


def say(console, message: str) -> None:
    """One ``tlssniff: ...`` line on ``console``, captured values shown by the display rule."""
    console.print(f"tlssniff: {display.for_terminal(message, 0)}", markup=False, soft_wrap=True)


def conclude(err_console, *, warnings: Iterable[str] = (), errors: Iterable[str] = (),
             policy: FailUnder | None = None, agg: Aggregator | None = None,
             failing: list | None = None, quiet: bool = False,
             notes: Iterable[str] = ()) -> None:
    """The end of a run, after its output: the warnings and ``notes`` on stderr (not with
    ``quiet``); the errors as one :class:`CaptureError` (exit 2: what came before the damage
    was written, the run still failed); then ``policy``: the servers under the rate, each on a
    line, and exit 3. ``failing``: those servers when the output already computed them."""
    if not quiet:
        for warning in warnings:
            say(err_console, f"warning: {warning}")
        for note in notes:
            say(err_console, note)
    errors = list(errors)
    if errors:
        raise CaptureError("; ".join(errors))
    if policy is None or policy.rate is None:
        return
    if failing is None:
        assert agg is not None
        failing = policy.failing(agg)
    # Imported here, not at start-up (the report package costs 15 ms); live imports it while
    # still root (run/live.py warm_up).
    from tlssniff.output.report import fail_under_lines

    for line in fail_under_lines(failing, policy.rate):
        say(err_console, line)
    if failing:
        raise typer.Exit(ExitCode.BELOW_THRESHOLD)
