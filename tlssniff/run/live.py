"""The live source and ``live``'s run: one capture loop into one :class:`~.session.Session`.

:class:`CaptureLoop` is single-threaded: read what the kernel ring holds, feed every frame to
the same :class:`~tlssniff.engine.pipeline.Analyzer` as offline analysis, write the handshake
frames to ``--write``, call ``on_tick`` once a second (dashboard, metrics), check the stop
conditions. SIGINT and SIGTERM only set a flag (:func:`stop_on_signals`); the loop then drains
the ring (the same loop, draining), decides every open connection with what was seen
(``Analyzer.finish``) and hands its counters to the session. Any object with the
:class:`~tlssniff.capture.live.LiveCapture` methods ``read``, ``wait`` and ``stats`` is a
source (tests/test_live_equals_file.py feeds capture files through it).

:class:`LiveRun` is the ``live`` command's run: the capture opened and every output file
opened as root, the privileges dropped, the sinks (the stream, the aggregation, the metrics,
the dashboard), the summary with the kernel's counts, and the exit policy.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.capture.live import BLOCK_TIMEOUT_MS, KernelStats
from tlssniff.errors import UsageError
from tlssniff.flow.table import Limits
from tlssniff.output import display
from tlssniff.run.session import FailUnder, Session, conclude

# How long the drain after a stop may take, at most (seconds). The kernel hands over a partly
# filled ring block after BLOCK_TIMEOUT_MS, so a drain waits at least that long for the last one.
DRAIN_SECONDS = 1.0
#: The drain ends when the ring stayed empty this long (two block timeouts).
DRAIN_QUIET = 2 * BLOCK_TIMEOUT_MS / 1000
WAIT_SECONDS = 0.25  # longest sleep of the loop without traffic: the stop flag's latency
BATCH = 4096  # frames asked of the ring per read


@dataclass
class LoopEnd:
    """How a capture loop ended: frames read, the kernel's counts, seconds, why it stopped."""

    frames: int
    kernel: KernelStats
    elapsed: float
    why: str


class CaptureLoop:
    """A live source's frames into a session's engine (see the module docstring)."""

    def __init__(self, cap, session: Session, name: str | None) -> None:
        self.cap = cap
        self.session = session
        self.analyzer = session.analyzer(name)
        self.frames = 0

    def run(self, stop: list[str], broken: list[bool], *, count: int | None = None,
            duration: float | None = None, pcapng=None,
            on_tick: Callable[[int], None] | None = None,
            drain_quiet: float = DRAIN_QUIET) -> LoopEnd:
        """Read until ``stop`` (a signal's name) or ``broken`` (the stream's reader went away)
        holds something, ``duration`` seconds passed or ``count`` frames were read; then, but
        after --count (it is exact), the same loop drains what the ring holds, for at most
        DRAIN_SECONDS, until it stayed empty ``drain_quiet`` seconds. ``on_tick(frames)`` once
        a second while capturing. :meth:`finish` then decides the open connections."""
        cap, feed = self.cap, self.analyzer.feed_frame
        pw = pcapng.write if pcapng is not None else None
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        last_tick = started
        draining = False
        drain_end = quiet_until = 0.0
        frame_no = 0
        counted = False
        while True:
            if not draining and (stop or broken):
                draining = True
                drain_end = time.monotonic() + DRAIN_SECONDS
                quiet_until = time.monotonic() + drain_quiet
            limit = BATCH if count is None else min(BATCH, count - frame_no)
            batch = cap.read(limit)
            if batch:
                if count is not None and len(batch) > limit:
                    batch = batch[:limit]  # the ring hands out whole blocks
                for ts, lt, frame in batch:
                    frame_no += 1
                    if feed(ts, lt, frame, frame_no) and pw is not None:
                        pw(ts, frame)
                if count is not None and frame_no >= count:
                    counted = True
                    break
                if draining:
                    quiet_until = time.monotonic() + drain_quiet
            elif draining:
                if time.monotonic() >= quiet_until:
                    break
                cap.wait(0.05)
            else:
                cap.wait(WAIT_SECONDS)
            now = time.monotonic()
            if draining:
                if now >= drain_end:
                    break
                continue
            if deadline is not None and now >= deadline:
                draining = True
                drain_end = now + DRAIN_SECONDS
                quiet_until = now + drain_quiet
                continue
            if now - last_tick >= 1.0:
                last_tick = now
                if on_tick is not None:
                    on_tick(frame_no)
        self.frames = frame_no
        kernel = cap.stats()
        elapsed = time.monotonic() - started
        why = stop[0] if stop else ("closed output" if broken else
                                     "count" if counted else "duration")
        return LoopEnd(frame_no, kernel, elapsed, why)

    def finish(self) -> None:
        """Decide the connections still open with what was seen; the counters to the session."""
        self.analyzer.finish()
        self.session.done(self.analyzer.counters)


def stop_on_signals(stack: contextlib.ExitStack) -> list[str]:
    """SIGINT and SIGTERM append their name to the returned list (the capture loop stops at
    its next turn and writes its summary); the old handlers come back when ``stack`` closes."""
    import signal

    stop: list[str] = []

    def on_signal(signum, frame) -> None:
        stop.append(signal.Signals(signum).name)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack.callback(lambda: [signal.signal(s, h) for s, h in old.items()])
    return stop


def open_file(path: Path, mode: str):
    """Opened as root before the privileges go: never through a link, 0600
    (:func:`tlssniff.output.files.open_output`)."""
    from tlssniff.output.files import open_output

    return open_output(path, mode)


def summary_console(fmt: str, output: Optional[Path], out):
    """Where the final summary goes: stdout (or -o FILE), unless the jsonl stream is there."""
    if fmt == "table":
        return display.console(file=out) if output is not None else display.console()
    if output is not None:
        return display.console()
    return display.console(stderr=True)


def warm_up(console, dashboard: bool) -> None:
    """Import and exercise everything the loop and the summary use while still root: after the
    privileges drop, Python's own files (say, under /root/.pyenv) may no longer be readable."""
    import json  # noqa: F401

    from tlssniff.analysis.verdict import ConnectionVerdict
    from tlssniff.output.formats import VerdictWriter
    from tlssniff.output.report import fail_under_lines  # noqa: F401 - run.session's --fail-under
    from tlssniff.output.table import print_report

    agg = Aggregator()
    v = ConnectionVerdict(ts=0.0, client="10.0.0.1:1", server="10.0.0.2:443", capture=None)
    agg.add(v)
    agg.add(ConnectionVerdict(ts=0.0, client="10.0.0.1:2", server="10.0.0.3:443", capture=None))
    for fmt in ("jsonl", "csv", "ecs"):
        VerdictWriter(fmt, io.StringIO()).write(v)
    sink = display.console(file=io.StringIO(),
                           force_terminal=console is not None and console.is_terminal, width=100)
    print_report(sink, agg, {"frames": 0, "tcp_connections": 0, "tls_connections": 0})
    if dashboard:
        from tlssniff.output.dashboard import Dashboard

        d = Dashboard(sink, "lo", "tcp", agg)
        sink.print(d.render(0, _Zero(), KernelStats()))
        sink.print(display.for_terminal(kernel_line("lo", KernelStats(), 1.0, 0, "SIGINT",
                                                    None, None), 0), markup=False)


class _Zero:
    def __getattr__(self, name):
        return 0


def kernel_line(iface, kernel, elapsed, frames, why, pcapng, write) -> str:
    """The summary's last line: frames, time, why the capture stopped, the kernel's counts."""
    line = (f"Captured {frames} frames on {iface} in {elapsed:.1f} s (stopped by {why}); "
            f"kernel: {kernel.received} received, {kernel.dropped} dropped")
    if kernel.if_dropped:
        line += f", {kernel.if_dropped} dropped by the interface"
    line += "."
    if pcapng is not None:
        line += f" Wrote {pcapng.frames} handshake frames to {write}."
    return line


def metrics_listen(spec: Optional[str], top: int, window: float):
    """--metrics HOST:PORT as (host, port), None without it; UsageError when malformed."""
    from tlssniff.output.metrics import MAX_TOP, MAX_WINDOW, parse_listen

    if not 1 <= top <= MAX_TOP:
        raise UsageError(f"--metrics-top must be between 1 and {MAX_TOP}, not {top}")
    if not 1 <= window <= MAX_WINDOW:
        raise UsageError(f"--metrics-window must be between 1 and {MAX_WINDOW:.0f} seconds")
    if spec is None:
        return None
    try:
        return parse_listen(spec)
    except ValueError as err:
        raise UsageError(f"--metrics {spec!r}: {err}") from None


def metrics_sink(listen, top: int, window: float):
    """The metrics sink, its HTTP server listening, its exposition exercised (see warm_up)."""
    from tlssniff.output.metrics import MetricsSink

    sink = MetricsSink(top=top, window=window)
    sink.warm_up()
    host, port = listen
    try:
        sink.serve(host, port)
    except OSError as err:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise UsageError(f"--metrics {where}: cannot listen: {err.strerror or err}") from None
    return sink


def metrics_tick(sink, analyzer, cap) -> None:
    table = analyzer.table
    sink.tick(analyzer.counters, cap.stats(), table.active, table.held,
              table.limits.max_pending_memory)


@dataclass
class LiveRun:
    """What ``tlssniff live`` was asked (its options, parsed)."""

    iface: str
    bpf: Optional[str]
    duration: Optional[float]
    count: Optional[int]
    snaplen: int
    promisc: bool
    fmt: str
    output: Optional[Path]
    write: Optional[Path]
    user: str
    drop_privileges: bool
    buffer_mb: int
    backend: str
    limits: Limits
    policy: FailUnder
    quiet: bool
    metrics: Optional[str]
    metrics_top: int
    metrics_window: float
    workers: int

    @property
    def filter(self) -> str:
        """The BPF filter (--filter, else the default one; see :meth:`check`)."""
        from tlssniff.capture.live import DEFAULT_FILTER

        return DEFAULT_FILTER if self.bpf is None else self.bpf

    def note(self, message: str) -> None:
        if not self.quiet:
            display.console(stderr=True).print(f"tlssniff: {display.for_terminal(message, 0)}",
                                               markup=False, soft_wrap=True)

    def check(self):
        """The combinations the parser cannot refuse; returns --metrics' (host, port)."""
        listen = metrics_listen(self.metrics, self.metrics_top, self.metrics_window)
        self.bpf = self.filter
        if self.drop_privileges and os.geteuid() == 0:
            import pwd

            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise UsageError(f"--user {self.user}: no such user") from None
        if self.workers < 1:
            raise UsageError("--workers must be at least 1")
        if self.workers > 1:
            if self.count is not None or self.write is not None or self.backend == "pcap":
                raise UsageError("--workers N works with the ring backend, without --count "
                                 "and --write")
        return listen

    def run(self) -> None:
        listen = self.check()
        if self.workers > 1:
            from tlssniff.run import workers

            workers.run(self, listen)
            return
        agg = Aggregator()
        broken: list[bool] = []  # the stream's reader went away (a closed pipe): stop
        with contextlib.ExitStack() as stack:
            loop, out, pcapng, sink, summary = self._open(stack, listen, agg, broken)
            end = self._capture(stack, loop, pcapng, sink, agg, broken)
            if pcapng is not None:
                pcapng.close(end.kernel.received, end.kernel.dropped)
            for warning in loop.session.warnings:  # an unsupported link type, say
                self.note(f"warning: {warning}")
            if not broken:
                if summary is not None:
                    self._summary(summary, agg, loop.session, end, pcapng)
                out.flush()
        if broken:
            with contextlib.suppress(Exception):
                sys.stdout = open(os.devnull, "w")
        # As in analyze: status 3 at the end of the run.
        conclude(display.console(stderr=True), policy=self.policy, agg=agg)

    def _open(self, stack: contextlib.ExitStack, listen, agg: Aggregator, broken: list[bool]):
        """The capture and every output file, opened as root; the sinks; the privileges go."""
        from tlssniff.capture.live import LiveCapture
        from tlssniff.capture.live import drop_privileges as _drop
        from tlssniff.output.formats import VerdictWriter

        cap = LiveCapture(self.iface, self.filter, snaplen=self.snaplen, promisc=self.promisc,
                          buffer_mb=self.buffer_mb, backend=self.backend)
        cap.open()
        stack.callback(cap.close)
        # Every file is opened before the privileges go.
        out = sys.stdout
        if self.output is not None:
            out = stack.enter_context(open_file(self.output, "w"))
        pcapng = None
        if self.write is not None:
            from tlssniff.capture.pcapng import PcapngWriter

            wfile = stack.enter_context(open_file(self.write, "wb"))
            pcapng = PcapngWriter(wfile, cap.linktype, self.snaplen, if_name=self.iface,
                                  if_filter=self.bpf)
        if cap.warning:
            self.note(f"warning: {cap.warning}")
        sink = None
        if listen is not None:  # listening before the privileges go, like the capture
            sink = metrics_sink(listen, self.metrics_top, self.metrics_window)
            stack.callback(sink.close)
            self.note(f"metrics on http://{self.metrics}/metrics")
        session = Session(self.limits, [agg.add], source="live")
        if sink is not None:
            session.sinks.append(sink.add)
        if self.fmt != "table":
            session.sinks.append(_stream(VerdictWriter(self.fmt, out), out, broken))
        loop = CaptureLoop(cap, session, f"live:{self.iface}")
        summary = summary_console(self.fmt, self.output, out)
        warm_up(summary, self._dashboard_on())
        if self.drop_privileges:
            done = _drop(self.user)
            if done:
                self.note(done)
        return loop, out, pcapng, sink, summary

    def _dashboard_on(self) -> bool:
        return self.fmt == "table" and sys.stdout.isatty()

    def _capture(self, stack, loop: CaptureLoop, pcapng, sink, agg, broken) -> LoopEnd:
        """The capture loop with its dashboard and metrics ticks, then the engine's finish."""
        cap, analyzer = loop.cap, loop.analyzer
        stop = stop_on_signals(stack)
        self.note(f"listening on {self.iface} ({cap.backend}), link type {cap.linktype}, "
                  f"filter {self.bpf!r}")
        dash = None
        if self._dashboard_on():
            from tlssniff.output.dashboard import Dashboard

            dash = Dashboard(display.console(), self.iface, self.filter, agg)
            dash.start()
            stack.callback(dash.stop)
            dash.active = lambda: analyzer.table.active  # type: ignore[assignment]
            dash.tick(0, analyzer.counters, cap.stats(), force=True)

        def tick(frames: int) -> None:
            if pcapng is not None:
                pcapng.flush()
            if dash is not None:
                dash.tick(frames, analyzer.counters, cap.stats())
            if sink is not None:
                metrics_tick(sink, analyzer, cap)

        end = loop.run(stop, broken, count=self.count, duration=self.duration, pcapng=pcapng,
                       on_tick=tick)
        if dash is not None:
            dash.stop()
        loop.finish()  # connections still open: decided with what was seen
        if sink is not None:
            metrics_tick(sink, analyzer, cap)
        return end

    def _summary(self, console, agg: Aggregator, session: Session, end: LoopEnd,
                 pcapng) -> None:
        from tlssniff.output.table import print_report

        print_report(console, agg, session.counter_dict())
        console.print(display.for_terminal(kernel_line(self.iface, end.kernel, end.elapsed,
                                                       end.frames, end.why, pcapng, self.write),
                                           0), markup=False, soft_wrap=True)
        console.file.flush()


def _stream(writer, out, broken: list[bool]):
    """A sink writing each verdict as a line, flushed; a closed pipe sets ``broken``."""

    def write(v) -> None:
        if not broken:
            try:
                writer.write(v)
                out.flush()
            except BrokenPipeError:
                broken.append(True)

    return write
