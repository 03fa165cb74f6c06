"""The live dashboard of ``tlssniff live``: rich Live, redrawn about once a second.

Only used when stdout is a terminal. It is refreshed by the capture loop itself
(``auto_refresh=False``): no thread competes with the capture for the interpreter, and a
redraw (a few milliseconds for a 20-row table) is covered by the kernel ring buffer.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.output.display import for_terminal
from tlssniff.output.table import server_table

REFRESH_SECONDS = 1.0
MAX_ROWS = 20  # busiest servers shown; the totals row covers all of them


def _count(n: int) -> str:
    return f"{n:,}"


class Dashboard:
    """Call :meth:`tick` as often as convenient; it redraws at most once per second."""

    def __init__(self, console: Console, iface: str, bpf: str, agg: Aggregator,
                 max_rows: int = MAX_ROWS):
        self.console = console
        self.iface = iface
        self.bpf = bpf
        self.agg = agg
        self.max_rows = max_rows
        self.started = time.monotonic()
        self._next = 0.0
        self._last_frames = 0
        self._last_t = self.started
        self._pps = 0.0
        self._live = Live(console=console, auto_refresh=False, transient=True,
                          redirect_stdout=False, redirect_stderr=False)

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        """Remove the dashboard from the terminal (idempotent); the summary follows it."""
        if self._live.is_started:
            self._live.stop()

    def __enter__(self) -> Dashboard:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def tick(self, frames: int, counters, kernel, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next and not force:
            return
        self._next = now + REFRESH_SECONDS
        dt = now - self._last_t
        if dt > 0:
            self._pps = (frames - self._last_frames) / dt
        self._last_frames, self._last_t = frames, now
        self._live.update(self.render(frames, counters, kernel, now), refresh=True)

    def render(self, frames: int, counters, kernel, now: float | None = None):
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        head = Text.assemble(
            ("tlssniff live ", "bold"), (for_terminal(self.iface), "bold cyan"),
            f"  filter: {for_terminal(self.bpf)}  ",
            f"{int(elapsed // 60)}:{int(elapsed % 60):02d}  ",
            ("Ctrl-C", "bold"), " stops and prints the summary",
        )
        t = self.agg.total
        rate = "-" if t.resumption_rate is None else f"{100 * t.resumption_rate:.0f}%"
        hit = "-" if t.hit_rate is None else f"{100 * t.hit_rate:.0f}%"
        dropped_style = "bold red" if kernel.dropped else "green"
        stats = Text.assemble(
            f"{self._pps:,.0f} packets/s  ",
            f"frames {_count(frames)}  ",
            f"kernel: received {_count(kernel.received)}, ",
            (f"dropped {_count(kernel.dropped)}", dropped_style),
            f"\nTLS connections {_count(counters.tls_connections)}  ",
            f"resumed {rate}  hit {hit}  ",
            f"in handshake now {_count(self._active())}  ",
            f"not TLS {_count(counters.not_tls_connections)}  ",
            f"mid-stream {_count(counters.midstream_tls)}",
        )
        parts = [head, stats]
        if self.agg.servers:
            # the busiest rows, the rest as one row with exact figures, and the totals
            parts.append(server_table(self.agg, title=None, top=self.max_rows))
        else:
            parts.append(Text("waiting for TLS handshakes ...", "dim"))
        return Group(*parts)

    active = None  # set by the caller: a callable returning connections still in handshake

    def _active(self) -> int:
        return self.active() if self.active is not None else 0
