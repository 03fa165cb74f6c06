"""``tlssniff live IFACE --workers N``: N analysis processes fed by the kernel's flow hashing.

The parent opens N AF_PACKET rings on the interface, all members of one ``PACKET_FANOUT_HASH``
group: the kernel gives every frame to one ring by a symmetric hash of its flow, so both
directions of a connection reach the same worker (as Suricata's and Zeek's AF_PACKET workers
do). Each worker (a forked process, privileges already dropped) runs its own
:class:`~tlssniff.engine.pipeline.Analyzer` on its ring and sends its verdicts, in batches, and
its counters to the parent, which alone aggregates, writes the JSONL stream, draws the one
dashboard and prints the one summary (counters and kernel counts summed over the workers).
At the stop each worker drains its ring, decides its open connections and sends the rest.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Callable

from tlssniff.capture.live import KernelStats, LiveCapture
from tlssniff.run.session import Session

if TYPE_CHECKING:
    from tlssniff.run.live import LiveRun

_SEND_SECONDS = 0.2  # a worker sends its verdicts at least this often (the JSONL latency)
_WAIT_SECONDS = 0.25


def fanout_group() -> int:
    """A fanout group id for this process's rings (16 bits; distinct per tlssniff process)."""
    return (os.getpid() * 2654435761 >> 8) & 0xFFFF


def open_rings(iface: str, bpf: str, snaplen: int, promisc: bool, buffer_mb: int,
               workers: int) -> list[LiveCapture]:
    """The workers' rings, opened (as root) before any worker starts."""
    group = fanout_group()
    caps: list[LiveCapture] = []
    try:
        for _ in range(workers):
            cap = LiveCapture(iface, bpf, snaplen=snaplen, promisc=promisc, buffer_mb=buffer_mb,
                              backend="ring", fanout=group)
            caps.append(cap.open())
    except BaseException:
        for cap in caps:
            cap.close()
        raise
    return caps


def _worker(index: int, cap: LiveCapture, conn: Connection, stop, limits, name: str) -> None:
    """One worker: its ring into its Analyzer; batches of verdicts and its counters home."""
    from tlssniff.engine.pipeline import Analyzer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batch: list = []
    analyzer = Analyzer(batch.append, limits)
    analyzer.capture_name = name
    feed = analyzer.feed_frame
    frame_no = 0
    last_send = time.monotonic()

    def send(kind: str) -> None:
        table = analyzer.table
        conn.send((kind, index, list(batch), analyzer.counters, cap.stats(), table.active,
                   table.held))
        batch.clear()

    while not stop.is_set():
        frames = cap.read(4096)
        if frames:
            for ts, lt, frame in frames:
                frame_no += 1
                feed(ts, lt, frame, frame_no)
        else:
            cap.wait(_WAIT_SECONDS)
        now = time.monotonic()
        if batch and now - last_send >= _SEND_SECONDS or now - last_send >= 1.0:
            send("tick")
            last_send = now
    # Stop: what the ring holds is analyzed (the last block comes out after the block timeout).
    end = time.monotonic() + 1.0
    quiet_until = time.monotonic() + 0.25
    while time.monotonic() < end:
        frames = cap.read(4096)
        if frames:
            for ts, lt, frame in frames:
                frame_no += 1
                feed(ts, lt, frame, frame_no)
            quiet_until = time.monotonic() + 0.25
        elif time.monotonic() >= quiet_until:
            break
        else:
            cap.wait(0.05)
    kernel = cap.stats()
    analyzer.finish()
    conn.send(("end", index, list(batch), analyzer.counters, kernel, 0, 0))
    conn.close()
    cap.close()


class Workers:
    """The running workers, seen from the parent: :meth:`poll` hands their verdicts to
    ``on_verdict`` and keeps their latest counters; :meth:`finish` stops them and collects the
    rest."""

    def __init__(self, caps: list[LiveCapture], limits, name: str,
                 on_verdict: Callable) -> None:
        ctx = multiprocessing.get_context("fork")
        from multiprocessing import popen_fork  # noqa: F401  (imported while files are readable)

        self.on_verdict = on_verdict
        self._stop = ctx.Event()
        self._conns: list[Connection] = []
        self._procs = []
        self.counters: dict[int, object] = {}
        self.kernel: dict[int, KernelStats] = {}
        self.active: dict[int, int] = {}  # connections in handshake, per worker
        self.held: dict[int, int] = {}  # bytes pending reassembly, per worker
        self._ended: set[int] = set()
        self._children: list[Connection] = []
        for i, cap in enumerate(caps):
            parent_end, child_end = ctx.Pipe(duplex=False)
            self._procs.append(ctx.Process(
                target=_worker, args=(i, cap, child_end, self._stop, limits, name),
                name=f"tlssniff-live-{i}", daemon=True))
            self._conns.append(parent_end)
            self._children.append(child_end)
        self._caps = caps

    def start(self) -> None:
        """Fork the workers (after the privileges were dropped: they inherit that)."""
        for proc, child_end, cap in zip(self._procs, self._children, self._caps):
            proc.start()
            child_end.close()
            cap.close()  # the worker owns its ring now

    def poll(self, timeout: float) -> None:
        live = [c for i, c in enumerate(self._conns) if i not in self._ended]
        if not live:
            time.sleep(timeout)
            return
        for conn in wait(live, timeout):
            assert isinstance(conn, Connection)
            try:
                kind, i, verdicts, counters, kernel, active, held = conn.recv()
            except EOFError:
                self._ended.add(self._conns.index(conn))
                continue
            for v in verdicts:
                self.on_verdict(v)
            self.counters[i] = counters
            self.kernel[i] = kernel
            self.active[i] = active
            self.held[i] = held
            if kind == "end":
                self._ended.add(i)

    def total_counters(self):
        from tlssniff.engine.parallel import merge_counters
        from tlssniff.engine.pipeline import Counters

        total = Counters()
        for i in sorted(self.counters):
            merge_counters(total, self.counters[i])  # type: ignore[arg-type]
        return total

    def total_kernel(self) -> KernelStats:
        k = KernelStats()
        for s in self.kernel.values():
            k.received += s.received
            k.dropped += s.dropped
            k.if_dropped += s.if_dropped
        return k

    def frames(self) -> int:
        return sum(getattr(c, "frames", 0) for c in self.counters.values())

    def finish(self, timeout: float = 30.0) -> None:
        if not any(p.pid for p in self._procs):
            return
        self._stop.set()
        deadline = time.monotonic() + timeout
        while len(self._ended) < len(self._conns) and time.monotonic() < deadline:
            self.poll(0.25)
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def run(live: "LiveRun", listen=None) -> None:
    """``live`` with ``--workers N`` (N > 1): the same outputs as one process, from N: the
    stream, the dashboard, the summary, ``--metrics`` (served by the parent, ``listen``: its
    host and port) and ``--fail-under``."""
    import contextlib
    import sys

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.capture.live import drop_privileges as _drop
    from tlssniff.output.formats import VerdictWriter
    from tlssniff.output import display
    from tlssniff.run.live import (
        metrics_sink,
        open_file,
        stop_on_signals,
        summary_console,
        warm_up,
    )
    from tlssniff.run.session import conclude

    note, iface, fmt, workers = live.note, live.iface, live.fmt, live.workers
    with contextlib.ExitStack() as stack:
        caps = open_rings(iface, live.filter, live.snaplen, live.promisc, live.buffer_mb,
                          workers)
        for cap in caps:
            stack.callback(cap.close)
        out = sys.stdout
        if live.output is not None:
            out = stack.enter_context(open_file(live.output, "w"))
        if caps[0].warning:
            note(f"warning: {caps[0].warning}")
        agg = Aggregator()
        writer = VerdictWriter(fmt, out) if fmt == "jsonl" else None
        broken: list[bool] = []

        def stream(v) -> None:  # flushed once a second by the loop
            if writer is not None and not broken:
                try:
                    writer.write(v)
                except BrokenPipeError:
                    broken.append(True)

        metrics = None
        if listen is not None:  # listening before the privileges go, like the rings
            metrics = metrics_sink(listen, live.metrics_top, live.metrics_window)
            stack.callback(metrics.close)
            note(f"metrics on http://{live.metrics}/metrics")
        session = Session(live.limits, [agg.add, stream], source="live")
        if metrics is not None:
            session.sinks.append(metrics.add)

        dashboard_on = fmt == "table" and sys.stdout.isatty()
        summary = summary_console(fmt, live.output, out)
        warm_up(summary, dashboard_on)
        import tlssniff.engine.parallel  # noqa: F401  (merge_counters, before the drop)
        import tlssniff.engine.pipeline  # noqa: F401

        pool = Workers(caps, live.limits, f"live:{iface}", session.add)
        stack.callback(pool.finish)
        if live.drop_privileges:
            done = _drop(live.user)
            if done:
                note(done)
        stop = stop_on_signals(stack)
        pool.start()
        note(f"listening on {iface} (ring, {workers} workers, PACKET_FANOUT_HASH), "
             f"link type {caps[0].linktype}, filter {live.filter!r}")
        dash = _dashboard(stack, live, agg, pool) if dashboard_on else None

        def tick() -> None:
            if dash is not None:
                dash.tick(pool.frames(), pool.total_counters(), pool.total_kernel())
            if metrics is not None:
                metrics.tick(pool.total_counters(), pool.total_kernel(),
                             sum(pool.active.values()), sum(pool.held.values()),
                             live.limits.max_pending_memory * workers)

        started = time.monotonic()
        _loop(pool, stop, broken, live.duration, writer, out, tick)
        pool.finish()
        session.done(pool.total_counters())
        if metrics is not None:
            tick()
        elapsed = time.monotonic() - started
        if dash is not None:
            dash.stop()
        if not broken:
            if summary is not None:
                _summary(summary, live, agg, session, pool, elapsed,
                         stop[0] if stop else ("closed output" if broken else "duration"))
            out.flush()
    if broken:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
    conclude(display.console(stderr=True), policy=live.policy, agg=agg)  # as one process


def _dashboard(stack, live: "LiveRun", agg, pool: Workers):
    from tlssniff.output import display
    from tlssniff.output.dashboard import Dashboard

    dash = Dashboard(display.console(), live.iface, live.filter, agg)
    dash.start()
    stack.callback(dash.stop)
    dash.active = lambda: sum(pool.active.values())  # type: ignore[assignment]
    dash.tick(0, pool.total_counters(), pool.total_kernel(), force=True)
    return dash


def _loop(pool: Workers, stop: list[str], broken: list[bool], duration: float | None, writer,
          out, tick: Callable[[], None]) -> None:
    """The parent's loop: the workers' verdicts in, the stream flushed and ``tick`` (the
    dashboard, the metrics' health) once a second, until a signal, a closed stream or
    ``duration``."""
    import contextlib

    started = time.monotonic()
    deadline = None if duration is None else started + duration
    last_flush = started
    while not stop and not broken:
        pool.poll(_WAIT_SECONDS)
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if now - last_flush >= 1.0:
            last_flush = now
            if writer is not None and not broken:
                with contextlib.suppress(BrokenPipeError):
                    out.flush()
            tick()


def _summary(console, live: "LiveRun", agg, session: Session, pool: Workers, elapsed: float,
             why: str) -> None:
    """The summary of all workers: counters and kernel counts summed, each worker's share."""
    from tlssniff.output.table import print_report
    from tlssniff.run.live import kernel_line

    counters = session.counter_dict()
    print_report(console, agg, counters)
    line = kernel_line(live.iface, pool.total_kernel(), elapsed, counters["frames"], why, None,
                       None)
    split = " + ".join(str(pool.counters[i].tls_connections)  # type: ignore[attr-defined]
                       for i in sorted(pool.counters))
    console.print(f"{line} {live.workers} workers (PACKET_FANOUT_HASH): "
                  f"{split} TLS connections.", soft_wrap=True, markup=False)
    console.file.flush()
