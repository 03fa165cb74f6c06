"""``tlssniff live IFACE``: classify the handshakes on an interface as they happen.

Thin: the options, declared here (the shared ones in :mod:`tlssniff.options`), go to
:class:`tlssniff.run.live.LiveRun`: the capture loop, its sinks, the summary and the exit
policy live in the run layer (``--workers N``: :mod:`tlssniff.run.workers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tlssniff import options
from tlssniff.units import parse_duration

_FORMATS = ("table", "jsonl", "csv", "ecs")

Iface = Annotated[str, typer.Argument(
    help="Interface to capture on (eth0, lo, any).", metavar="IFACE", show_default=False)]
Bpf = Annotated[Optional[str], typer.Option(
    "--filter", help="BPF capture filter, applied in the kernel. Default: tcp or udp port 443 (QUIC).",
    metavar="BPF")]
Duration = Annotated[Optional[float], typer.Option(
    "--duration", parser=options.at_least(parse_duration, 0.001, "1ms"), metavar="SECONDS",
    help="Stop after this long (600, 90s, 10m, 1h).")]
Count = Annotated[Optional[int], typer.Option(
    "--count", parser=options.at_least(options.count, 1), metavar="N",
    help="Stop after N captured frames.")]
Snaplen = Annotated[int, typer.Option(
    "--snaplen", parser=options.at_least(options.count, 64), metavar="BYTES",
    help="Bytes kept of each frame (handshake frames must be whole).")]
Promisc = Annotated[bool, typer.Option(
    "--promisc/--no-promisc", help="Put the interface in promiscuous mode.")]
Format = Annotated[str, typer.Option(
    "--format", "-f", parser=options.choice(*_FORMATS), metavar="FORMAT",
    help="table: live dashboard on a terminal and a per-server summary at the end; "
    "jsonl, csv, ecs: one line per TLS connection, flushed as it is decided (the formats "
    "of analyze; json, which holds every connection, is analyze's only).")]
Output = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Write the stream or the summary to FILE.", metavar="FILE")]
Write = Annotated[Optional[Path], typer.Option(
    "--write", help="Keep the frames of TLS handshakes (not the bulk data) in FILE.pcapng.",
    metavar="FILE.pcapng")]
User = Annotated[str, typer.Option(
    help="Once the capture is open, run as this user (like tcpdump -Z).", metavar="USER")]
DropPrivileges = Annotated[bool, typer.Option(
    "--drop-privileges/--no-drop-privileges",
    help="Drop root privileges to --user after opening the capture.")]
BufferMb = Annotated[int, typer.Option(
    "--buffer-mb", parser=options.at_least(options.count, 1), metavar="MB",
    help="Kernel ring buffer in MB (what absorbs bursts and pauses).")]
Backend = Annotated[str, typer.Option(
    "--backend", parser=options.choice("auto", "ring", "pcap"), metavar="BACKEND",
    help="auto: a memory-mapped AF_PACKET ring on Ethernet and loopback interfaces, "
    "libpcap elsewhere; ring; pcap.")]
Metrics = Annotated[Optional[str], typer.Option(
    "--metrics", help="Serve Prometheus metrics at http://HOST:PORT/metrics while capturing "
    "(docs/monitoring.md).", metavar="HOST:PORT")]
MetricsTop = Annotated[int, typer.Option(
    help="Busiest (server, SNI) pairs with their own metric labels; the rest count as "
    "server=\"other\".", metavar="N")]
MetricsWindow = Annotated[float, typer.Option(
    help="Window of the tlssniff_findings gauge: the findings of the last S/2 to S "
    "seconds of verdicts.", metavar="S")]
Workers = Annotated[int, typer.Option(
    "--workers", metavar="N",
    help="Analyze in N processes: the kernel splits the frames among N AF_PACKET rings by "
    "flow hash (PACKET_FANOUT_HASH); one stream, dashboard, summary, --metrics endpoint and "
    "--fail-under for all (ring backend; not with --count or --write).")]


def live(
    iface: Iface,
    bpf: Bpf = None,
    duration: Duration = None,
    count: Count = None,
    snaplen: Snaplen = 262144,
    promisc: Promisc = True,
    fmt: Format = "table",
    output: Output = None,
    write: Write = None,
    user: User = "nobody",
    drop_privileges: DropPrivileges = True,
    buffer_mb: BufferMb = 64,
    backend: Backend = "auto",
    max_flows: options.MaxFlows = options.LIMITS.max_flows,
    idle_timeout: options.IdleTimeout = options.LIMITS.idle_timeout,
    max_buffer: options.MaxBuffer = options.LIMITS.max_buffer,
    max_pending_memory: options.MaxPendingMemory = options.LIMITS.max_pending_memory,
    fail_under: options.FailUnder = None,
    min_handshakes: options.MinHandshakes = 10,
    quiet: options.Quiet = False,
    metrics: Metrics = None,
    metrics_top: MetricsTop = 100,
    metrics_window: MetricsWindow = 600.0,
    workers: Workers = 1,
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
    from tlssniff.run.live import LiveRun
    from tlssniff.run.session import FailUnder

    LiveRun(iface, bpf, duration, count, snaplen, promisc, fmt, output, write, user,
            drop_privileges, buffer_mb, backend,
            options.limits(max_flows, idle_timeout, max_buffer, max_pending_memory),
            FailUnder(fail_under, min_handshakes), quiet, metrics, metrics_top,
            metrics_window, workers).run()
