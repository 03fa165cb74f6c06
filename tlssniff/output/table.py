"""The terminal report: a per-server table readable at 80 columns, colour only on a TTY."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from tlssniff.analysis.aggregate import Aggregator, ServerStats
from tlssniff.output.display import for_terminal, terminal_text

if TYPE_CHECKING:
    from rich.table import Table

# A finding's message quotes names (SNI); one holding a 64 KB name is shortened (JSON has it whole).
MESSAGE_LIMIT = 4096
FINDINGS_PER_CODE = 10  # findings of one code on the screen; -f json has them all
SERVERS_PER_FINDING = 10  # servers named in a finding's header line
TOP_SERVERS = 25  # rows of the table by default (--top); the rest are one row
_MECH_SHORT = (("session_id", "id"), ("ticket", "tkt"), ("psk", "psk"), ("full", "full"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _mix(s: ServerStats) -> str:
    h = s.by_handshake
    parts = [f"{short} {h[name]}" for name, short in _MECH_SHORT if h.get(name)]
    if h.get("unknown"):
        parts.append(f"? {h['unknown']}")
    return " ".join(parts)


def _server_label(s: ServerStats) -> Text:
    """The server cell: captured values as Text (tlssniff.output.display), never markup; ``*``
    marks a row whose earliest handshakes may be counted under "other servers"."""
    label = s.server + (" *" if s.untracked else "")
    kind = s.starttls or (s.transport if s.transport != "tcp" else None)
    if kind:  # "quic", "udp" (DTLS), or the STARTTLS protocol ("smtp", ...)
        label += f" {kind}"
    text = terminal_text(label)
    if s.sni:
        text.append("\n")
        text.append(for_terminal(s.sni), style="dim")
    return text


def server_table(agg: Aggregator, title: str | None = "TLS resumption per server",
                 top: int = 0) -> Table:
    """The busiest ``top`` servers (0: every server with a row), then one row for the rest
    (the hidden rows and the aggregator's "other servers", exact figures) and the totals."""
    from rich.table import Table  # only when a table is drawn: 8 ms of every start-up otherwise

    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("server / SNI", overflow="fold", max_width=30)
    table.add_column("hs", justify="right")
    table.add_column("resumed", justify="right")
    table.add_column("offered", justify="right")
    table.add_column("hit", justify="right")
    table.add_column("mix", overflow="fold", max_width=20)
    ranked = agg.sorted_servers()
    shown = ranked[:top] if top else ranked
    for s in shown:
        rate = s.resumption_rate
        style = None
        if rate is not None and s.offered and (s.hit_rate or 0) < 0.5:
            style = "yellow"
        table.add_row(
            _server_label(s),
            str(s.handshakes),
            f"{s.resumed} ({_pct(rate)})",
            str(s.offered),
            _pct(s.hit_rate),
            _mix(s),
            style=style,
        )
    rest = rest_of(agg, len(shown))
    if rest is not None:
        stats, label = rest
        table.add_row(
            f"[i]{label}[/i]", str(stats.handshakes),
            f"{stats.resumed} ({_pct(stats.resumption_rate)})", str(stats.offered),
            _pct(stats.hit_rate), _mix(stats),
        )
    t = agg.total
    if len(agg.servers) > 1 or agg.other is not None:
        table.add_section()
        table.add_row(
            "[b]all servers[/b]", str(t.handshakes), f"{t.resumed} ({_pct(t.resumption_rate)})",
            str(t.offered), _pct(t.hit_rate), _mix(t),
        )
    return table


def rest_of(agg: Aggregator, shown: int) -> tuple[ServerStats, str] | None:
    """The servers after the ``shown`` busiest as one row: exact figures, and a label with how
    many servers they are (an estimate beyond the aggregator's bound: "about")."""
    hidden = agg.sorted_servers()[shown:]
    if not hidden and agg.other is None:
        return None
    stats = ServerStats(server="", sni=None)
    for s in hidden:
        stats.merge(s)
    if agg.other is not None:
        stats.merge(agg.other)
        n = agg.servers_seen() - shown
        return stats, f"about {n:,} other servers"
    return stats, f"{len(hidden):,} other servers"


def print_report(console: Console, agg: Aggregator, counters: dict, findings=None,
                 top: int = 0) -> None:
    """The table of the ``top`` busiest servers (0: all), findings and what was skipped."""
    if not agg.servers:
        console.print("No TLS handshakes found.")
    else:
        console.print(server_table(agg, top=top))
        console.print(
            "[dim]hs: TLS connections; resumed: % of classified handshakes; offered: clients "
            "presenting a session, ticket or PSK; hit: offers accepted; mix: id = session id, "
            "tkt = ticket, psk = TLS 1.3 PSK, ? = unknown[/dim]"
        )
        notes = []
        if top and len(agg.servers) > top:
            notes.append(f"the {top} busiest of {agg.servers_seen():,} servers"
                         + (" (about)" if agg.other is not None else "")
                         + "; --top 0 shows every server with its own figures, "
                         "as -f json lists them")
        if agg.other is not None:
            notes.append(f"beyond {agg.max_servers:,} servers the busiest keep their own "
                         "figures and the others are counted together (--max-servers)")
        if any(s.untracked for s in agg.servers.values()):
            notes.append("*: the row was taken late; some earlier handshakes of that server "
                         "are counted with the other servers")
        for note in notes:
            console.print(Text(f"{note}.", style="dim"))
    if findings:
        print_findings(console, findings)
    skipped = []
    for name, label in (
        ("midstream_tls", "seen mid-stream (start not captured)"),
        ("not_tls_connections", "TCP connections not TLS (or STARTTLS)"),
        ("malformed_tls", "malformed TLS handshakes"),
        ("oversized_tls", "oversized handshake messages"),
        ("gaps", "connections with bytes missing"),
        ("buffer_overflows", "out-of-order buffers overflowed"),
        ("evicted", "connections evicted (flow or memory limit)"),
        ("evicted_memory", "of them for the pending-memory limit"),
        ("idle_expired", "connections expired idle before a verdict"),
        ("malformed_frames", "unparsable frames"),
    ):
        if counters.get(name):
            skipped.append(f"{counters[name]} {label}")
    read = counters.get("verdicts_read")
    console.print(
        ("" if read and not counters["frames"] else
         f"{counters['frames']} frames, {counters['tcp_connections']} TCP connections"
         + (f", {counters['udp_flows']} UDP flows" if counters.get("udp_flows") else "")
         + f", {counters['tls_connections']} TLS." + (" " if read else ""))
        + (f"{read} verdicts read from verdict files." if read else "")
        + (" Not analyzed: " + "; ".join(skipped) + "." if skipped else "")
    )


_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def print_findings(console: Console, findings: list) -> None:
    """Findings (tlssniff.analysis.findings.Finding), most severe first: one header line each
    (``SEVERITY code server...``), the message, and the connections that prove it by
    ``client -> server @ ts`` as the JSONL output has them (docs/diagnostics.md).

    A screen, not a record: at most :data:`FINDINGS_PER_CODE` findings of one code and
    :data:`SERVERS_PER_FINDING` servers per header, the rest counted with where to see them
    (``-f json``). An egress capture can hold a finding per server; printing 50,000 of them
    took minutes and helped nobody."""
    console.print()
    console.print("[b]Findings[/b]")
    shown: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for f in findings:
        if shown.get(f.code, 0) >= FINDINGS_PER_CODE:
            hidden[f.code] = hidden.get(f.code, 0) + 1
            continue
        shown[f.code] = shown.get(f.code, 0) + 1
        sev = f.severity.value
        servers = ", ".join(for_terminal(s) for s in f.servers[:SERVERS_PER_FINDING])
        if len(f.servers) > SERVERS_PER_FINDING:
            servers += f" and {len(f.servers) - SERVERS_PER_FINDING} more servers"
        # Servers, messages and reasons quote captured names (SNI): Text, escaped, no markup.
        console.print(Text.assemble(
            (sev.upper(), _SEVERITY_STYLE.get(sev, "")), " ", (for_terminal(f.code), "bold"),
            " ", servers,
        ))
        console.print(Text("  " + for_terminal(f.message, MESSAGE_LIMIT)))
        for e in f.evidence:
            frames = f" frames {','.join(map(str, e.frames))}" if e.frames else ""
            console.print(Text(
                f"  - {for_terminal(e.client)} -> {for_terminal(e.server)} @ {e.ts:.6f}{frames}"
                + (f": {for_terminal(e.why, MESSAGE_LIMIT)}" if e.why else ""), style="dim",
            ))
    if hidden:
        console.print(Text(
            "Not shown: " + ", ".join(f"{n} more {for_terminal(code)}"
                                      for code, n in hidden.items())
            + " (-f json lists every finding with its evidence).", style="dim"))
