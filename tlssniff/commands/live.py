"""``tlssniff live IFACE``: classify the handshakes on an interface as they happen.

The capture loop is single-threaded: read what the kernel ring holds, feed every frame to the
same :class:`~tlssniff.analysis.pipeline.Analyzer` as offline analysis, write the handshake
frames to ``--write``, redraw the dashboard once a second, check the stop conditions. SIGINT
and SIGTERM only set a flag; the loop then drains the ring, decides every open connection with
what was seen (``Analyzer.finish``), writes the summary and exits 0.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlssniff import options
from tlssniff.errors import ExitCode, UsageError
from tlssniff.units import parse_duration

_FORMATS = ("table", "jsonl", "csv", "ecs")
# How long the drain after a stop may take, at most (seconds). The kernel hands over a partly
# filled ring block after BLOCK_TIMEOUT_MS, so a drain waits at least that long for the last one.
_DRAIN_SECONDS = 1.0
_WAIT_SECONDS = 0.25  # longest sleep of the loop without traffic: the stop flag's latency


def live(
    iface: Annotated[str, typer.Argument(help="Interface to capture on (eth0, lo, any).",
        metavar="IFACE",
                                         show_default=False)],
    bpf: Annotated[Optional[str], typer.Option(
        "--filter", help="BPF capture filter, applied in the kernel. Default: tcp or udp port 443 (QUIC).",
        metavar="BPF")] = None,
    duration: Annotated[Optional[float], typer.Option(
        "--duration", parser=options.at_least(parse_duration, 0.001, "1ms"), metavar="SECONDS",
        help="Stop after this long (600, 90s, 10m, 1h).")] = None,
    count: Annotated[Optional[int], typer.Option(
        "--count", parser=options.at_least(options.count, 1), metavar="N",
        help="Stop after N captured frames.")] = None,
    snaplen: Annotated[int, typer.Option(
        "--snaplen", parser=options.at_least(options.count, 64), metavar="BYTES",
        help="Bytes kept of each frame (handshake frames must be whole).")] = 262144,
    promisc: Annotated[bool, typer.Option(
        "--promisc/--no-promisc", help="Put the interface in promiscuous mode.")] = True,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", parser=options.choice(*_FORMATS), metavar="FORMAT",
        help="table: live dashboard on a terminal and a per-server summary at the end; "
        "jsonl, csv, ecs: one line per TLS connection, flushed as it is decided (the formats "
        "of analyze; json, which holds every connection, is analyze's only).")] = "table",
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the stream or the summary to FILE.", metavar="FILE")] = None,
    write: Annotated[Optional[Path], typer.Option(
        "--write", help="Keep the frames of TLS handshakes (not the bulk data) in FILE.pcapng.",
        metavar="FILE.pcapng")] = None,
    user: Annotated[str, typer.Option(
        help="Once the capture is open, run as this user (like tcpdump -Z).",
        metavar="USER")] = "nobody",
    drop_privileges: Annotated[bool, typer.Option(
        "--drop-privileges/--no-drop-privileges",
        help="Drop root privileges to --user after opening the capture.")] = True,
    buffer_mb: Annotated[int, typer.Option(
        "--buffer-mb", parser=options.at_least(options.count, 1), metavar="MB",
        help="Kernel ring buffer in MB (what absorbs bursts and pauses).")] = 64,
    backend: Annotated[str, typer.Option(
        "--backend", parser=options.choice("auto", "ring", "pcap"), metavar="BACKEND",
        help="auto: a memory-mapped AF_PACKET ring on Ethernet and loopback interfaces, "
        "libpcap elsewhere; ring; pcap.")] = "auto",
    max_flows: options.MaxFlows = options.LIMITS.max_flows,
    idle_timeout: options.IdleTimeout = options.LIMITS.idle_timeout,
    max_buffer: options.MaxBuffer = options.LIMITS.max_buffer,
    max_pending_memory: options.MaxPendingMemory = options.LIMITS.max_pending_memory,
    fail_under: options.FailUnder = None,
    min_handshakes: options.MinHandshakes = 10,
    quiet: options.Quiet = False,
    metrics: Annotated[Optional[str], typer.Option(
        "--metrics", help="Serve Prometheus metrics at http://HOST:PORT/metrics while capturing "
        "(docs/monitoring.md).", metavar="HOST:PORT")] = None,
    metrics_top: Annotated[int, typer.Option(
        help="Busiest (server, SNI) pairs with their own metric labels; the rest count as "
        "server=\"other\".", metavar="N")] = 100,
    metrics_window: Annotated[float, typer.Option(
        help="Window of the tlssniff_findings gauge: the findings of the last S/2 to S "
        "seconds of verdicts.",
        metavar="S")] = 600.0,
    workers: Annotated[int, typer.Option(
        "--workers", metavar="N",
        help="Analyze in N processes: the kernel splits the frames among N AF_PACKET rings by "
        "flow hash (PACKET_FANOUT_HASH); one dashboard and one summary for all.")] = 1,
) -> None:
    """Capture on an interface and classify every TLS handshake live.

    Needs root (or CAP_NET_RAW). Stop with Ctrl-C (or SIGTERM): what is buffered is analyzed,
    connections still open are decided with what was seen, and the summary is printed.

    Examples:

      tlssniff live eth0

      tlssniff live eth0 --filter 'tcp port 8443' -f jsonl | jq .sni

      tlssniff live eth0 --duration 10m --write evidence.pcapng -o summary.txt

      tlssniff live eth0 --duration 1h --fail-under 80% -q || alert

      tlssniff live eth0 --metrics 127.0.0.1:9815
    """

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.analysis.pipeline import Analyzer
    from tlssniff.capture.live import DEFAULT_FILTER, LiveCapture
    from tlssniff.capture.live import drop_privileges as _drop
    from tlssniff.output import display
    from tlssniff.output.formats import VerdictWriter
    from tlssniff.output.report import fail_under as _fail_under
    from tlssniff.output.report import fail_under_lines
    from tlssniff.output.table import print_report

    listen = _metrics_listen(metrics, metrics_top, metrics_window)
    bpf = DEFAULT_FILTER if bpf is None else bpf
    if drop_privileges and os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"--user {user}: no such user") from None
    err = display.console(stderr=True)

    def note(message: str) -> None:
        if not quiet:
            err.print(f"tlssniff: {display.for_terminal(message, 0)}", markup=False,
                      soft_wrap=True)

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    if workers > 1:
        if count is not None or write is not None or backend == "pcap":
            raise UsageError("--workers N works with the ring backend, without --count and "
                             "--write")
        if listen is not None or fail_under is not None:
            raise UsageError("--workers N does not serve --metrics or apply --fail-under; "
                             "run one process for those")
        from tlssniff.commands import live_workers

        live_workers.run(iface, bpf, duration=duration, snaplen=snaplen, promisc=promisc,
                         fmt=fmt, output=output, buffer_mb=buffer_mb,
                         limits=options.limits(max_flows, idle_timeout, max_buffer,
                                               max_pending_memory),
                         workers=workers, user=user, drop_privileges=drop_privileges, note=note)
        return
    cap = LiveCapture(iface, bpf, snaplen=snaplen, promisc=promisc, buffer_mb=buffer_mb,
                      backend=backend)
    with contextlib.ExitStack() as stack:
        cap.open()
        stack.callback(cap.close)
        # Every file is opened before the privileges go.
        out = sys.stdout
        if output is not None:
            out = stack.enter_context(_open(output, "w"))
        pcapng = None
        if write is not None:
            from tlssniff.capture.pcapng import PcapngWriter

            wfile = stack.enter_context(_open(write, "wb"))
            pcapng = PcapngWriter(wfile, cap.linktype, snaplen, if_name=iface, if_filter=bpf)
        if cap.warning:
            note(f"warning: {cap.warning}")

        sink = None
        if listen is not None:  # listening before the privileges go, like the capture
            sink = _metrics_sink(listen, metrics_top, metrics_window)
            stack.callback(sink.close)
            note(f"metrics on http://{metrics}/metrics")

        agg = Aggregator()
        writer = VerdictWriter(fmt, out) if fmt != "table" else None
        broken = []  # the jsonl reader went away (a closed pipe): stop

        def on_verdict(v) -> None:
            agg.add(v)
            if sink is not None:
                sink.add(v)
            if writer is not None and not broken:
                try:
                    writer.write(v)
                    out.flush()
                except BrokenPipeError:
                    broken.append(True)

        analyzer = Analyzer(on_verdict, options.limits(max_flows, idle_timeout, max_buffer,
                                                        max_pending_memory))
        analyzer.capture_name = f"live:{iface}"
        dashboard_on = fmt == "table" and sys.stdout.isatty()
        summary_console = _summary_console(fmt, output, out)
        _warm_up(summary_console, dashboard_on)
        if drop_privileges:
            done = _drop(user)
            if done:
                note(done)

        stop = stop_on_signals(stack)
        note(f"listening on {iface} ({cap.backend}), link type {cap.linktype}, filter {bpf!r}")

        dash = None
        if dashboard_on:
            from tlssniff.output.dashboard import Dashboard

            dash = Dashboard(display.console(), iface, bpf, agg)
            dash.start()
            stack.callback(dash.stop)
            dash.active = lambda: analyzer.table.active
            dash.tick(0, analyzer.counters, cap.stats(), force=True)
        started = time.monotonic()
        deadline = None if duration is None else started + duration
        feed = analyzer.feed_frame
        read = cap.read
        frame_no = 0
        last_flush = started
        while not stop and not broken:
            limit = 4096 if count is None else min(4096, count - frame_no)
            batch = read(limit)
            if batch:
                if count is not None and len(batch) > limit:
                    batch = batch[:limit]  # the ring hands out whole blocks
                if pcapng is None:
                    for ts, lt, frame in batch:
                        frame_no += 1
                        feed(ts, lt, frame, frame_no)
                else:
                    pw = pcapng.write
                    for ts, lt, frame in batch:
                        frame_no += 1
                        if feed(ts, lt, frame, frame_no):
                            pw(ts, frame)
                if count is not None and frame_no >= count:
                    break
            else:
                cap.wait(_WAIT_SECONDS)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now - last_flush >= 1.0:
                last_flush = now
                if pcapng is not None:
                    pcapng.flush()
                if dash is not None:
                    dash.tick(frame_no, analyzer.counters, cap.stats())
                if sink is not None:
                    _metrics_tick(sink, analyzer, cap)
        # Stop: what the ring already holds is analyzed too (not after --count: it is exact).
        if count is None or frame_no < count:
            frame_no = _drain(cap, feed, pcapng, frame_no, count)
        kernel = cap.stats()
        elapsed = time.monotonic() - started
        if dash is not None:
            dash.stop()
        analyzer.finish()  # connections still open: decided with what was seen
        if sink is not None:
            _metrics_tick(sink, analyzer, cap)
        if pcapng is not None:
            pcapng.close(kernel.received, kernel.dropped)
        counters = analyzer.counters.to_dict()
        for warning in analyzer.counters.warnings:  # an unsupported link type, say
            note(f"warning: {warning}")
        why = stop[0] if stop else ("closed output" if broken else
                                     "count" if count is not None and frame_no >= count else
                                     "duration")
        if not broken:
            if summary_console is not None:
                print_report(summary_console, agg, counters)
                summary_console.print(
                    display.for_terminal(_kernel_line(iface, kernel, elapsed, frame_no, why,
                                                      pcapng, write), 0),
                    markup=False, soft_wrap=True)
                summary_console.file.flush()
            out.flush()
    if broken:
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")
    if fail_under is not None:  # as in analyze: status 3 at the end of the run
        failing = _fail_under(agg, fail_under, min_handshakes)
        for line in fail_under_lines(failing, fail_under):
            err.print(f"tlssniff: {display.for_terminal(line, 0)}", markup=False, soft_wrap=True)
        if failing:
            raise typer.Exit(ExitCode.BELOW_THRESHOLD)


def _metrics_listen(spec: Optional[str], top: int, window: float):
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


def _metrics_sink(listen, top: int, window: float):
    """The metrics sink, its HTTP server listening, its exposition exercised (see _warm_up)."""
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


def _metrics_tick(sink, analyzer, cap) -> None:
    table = analyzer.table
    sink.tick(analyzer.counters, cap.stats(), table.active, table.held,
              table.limits.max_pending_memory)


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


def _open(path: Path, mode: str):
    """Opened as root before the privileges go: never through a link, 0600
    (:func:`tlssniff.output.files.open_output`)."""
    from tlssniff.output.files import open_output

    return open_output(path, mode)


def _summary_console(fmt: str, output: Optional[Path], out):
    """Where the final summary goes: stdout (or -o FILE), unless the jsonl stream is there."""
    from tlssniff.output import display

    if fmt == "table":
        return display.console(file=out) if output is not None else display.console()
    if output is not None:
        return display.console()
    return display.console(stderr=True)


def _warm_up(console, dashboard: bool) -> None:
    """Import and exercise everything the loop and the summary use while still root: after the
    privileges drop, Python's own files (say, under /root/.pyenv) may no longer be readable."""
    import json  # noqa: F401

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.analysis.verdict import ConnectionVerdict
    from tlssniff.capture.live import KernelStats
    from tlssniff.output import display
    from tlssniff.output.formats import VerdictWriter
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
        sink.print(display.for_terminal(_kernel_line("lo", KernelStats(), 1.0, 0, "SIGINT",
                                                     None, None), 0), markup=False)


class _Zero:
    def __getattr__(self, name):
        return 0


def _kernel_line(iface, kernel, elapsed, frames, why, pcapng, write) -> str:
    line = (f"Captured {frames} frames on {iface} in {elapsed:.1f} s (stopped by {why}); "
            f"kernel: {kernel.received} received, {kernel.dropped} dropped")
    if kernel.if_dropped:
        line += f", {kernel.if_dropped} dropped by the interface"
    line += "."
    if pcapng is not None:
        line += f" Wrote {pcapng.frames} handshake frames to {write}."
    return line


def _drain(cap, feed, pcapng, frame_no: int, count: int | None) -> int:
    """Analyze what the kernel ring holds at the stop, for at most _DRAIN_SECONDS: the ring's
    last, partly filled block comes out after the block timeout."""
    from tlssniff.capture.live import BLOCK_TIMEOUT_MS

    end = time.monotonic() + _DRAIN_SECONDS
    quiet_until = time.monotonic() + 2 * BLOCK_TIMEOUT_MS / 1000
    while time.monotonic() < end:
        limit = 4096 if count is None else min(4096, count - frame_no)
        batch = cap.read(limit)[:limit]
        if batch:
            for ts, lt, frame in batch:
                frame_no += 1
                if feed(ts, lt, frame, frame_no) and pcapng is not None:
                    pcapng.write(ts, frame)
            if count is not None and frame_no >= count:
                break
            quiet_until = time.monotonic() + 2 * BLOCK_TIMEOUT_MS / 1000
        elif time.monotonic() >= quiet_until:
            break
        else:
            cap.wait(0.05)
    return frame_no
