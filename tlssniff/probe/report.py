"""What a probe found: findings (the codes of ``analyze`` where they apply), the JSON document and
the terminal tables."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from tlssniff import __version__
from tlssniff.analysis.findings import Evidence, Finding, Severity
from tlssniff.errors import ExitCode, TlssniffError
from tlssniff.output.display import for_markup as _m
from tlssniff.output.display import terminal_text
from tlssniff.probe.client import DESCRIPTIONS, OFFERS
from tlssniff.probe.engine import Attempt, MechanismRun, ProbeResult, Rate

_HINTS = {
    "id": "nginx: ssl_session_cache shared:SSL:10m; Apache: SSLSessionCache shmcb:...",
    "ticket": "nginx: ssl_session_tickets on and one ssl_session_ticket_key on every node; "
    "Apache: SSLSessionTickets on",
    "psk": "TLS 1.3 tickets: nginx ssl_session_tickets / ssl_session_ticket_key; "
    "OpenSSL servers need stateless tickets or a session cache",
}


class BelowThreshold(TlssniffError):
    """Not a failure of the probe: the lowest rate measured is under ``--fail-under``."""

    exit_code = ExitCode.BELOW_THRESHOLD


def _evidence(attempts: list[Attempt], why: str, limit: int = 3) -> list[Evidence]:
    out = []
    for a in attempts[:limit]:
        if a.outcome.client is None:
            continue
        frames = tuple(a.wire["frames"]) if a.wire else ()
        out.append(Evidence(client=a.outcome.client, server=a.server, ts=a.outcome.started,
                            frames=frames, why=why))
    return out


def _is_single_use(run: MechanismRun) -> bool:
    """TLS 1.3 ticket accepted on its first use only: RFC 8446 §8.1 anti-replay."""
    seq = [a for a in run.sequential if a.ok]
    if run.mechanism != "psk" or len(seq) < 2:
        return False
    return seq[0].accepted and not any(a.accepted for a in seq[1:])


def single_use(run: MechanismRun) -> bool:
    return run.status == "ok" and _is_single_use(run)


def age_bracket(run: MechanismRun) -> tuple[float | None, float | None]:
    """(largest planned age accepted, smallest planned age refused) among completed attempts."""
    done = [a for a in run.ages if a.ok]
    acc = [a.planned_age for a in done if a.accepted]
    ref = [a.planned_age for a in done if not a.accepted]
    return (max(acc) if acc else None), (min(ref) if ref else None)


def matrix_cells(result: ProbeResult, mechanism: str) -> dict[tuple[str, str], Rate]:
    return {k: Rate.of(v) for k, v in result.matrix.get(mechanism, {}).items()}


def findings(result: ProbeResult) -> list[Finding]:
    out: list[Finding] = []
    mechs = result.config.mechanisms
    for t in result.targets:
        runs = {m: result.run(m, t) for m in mechs}
        server = [t.endpoint]
        tls12 = [runs[m] for m in ("id", "ticket") if m in runs]
        nothing12 = len(tls12) == 2 and all(r.status == "not_issued" for r in tls12)
        if nothing12:
            out.append(Finding(
                "session_not_resumable", Severity.ERROR, server,
                "TLS 1.2 full handshakes issue neither a session id nor a ticket: no TLS 1.2 "
                f"client can resume ({_HINTS['id']}; {_HINTS['ticket']})",
                {"mechanisms": ["id", "ticket"]},
                _evidence([r.issue for r in tls12 if r.issue], "full handshake, nothing issued"),
            ))
        for m, run in runs.items():
            if run.status == "not_issued" and not (m in ("id", "ticket") and nothing12):
                out.append(Finding(
                    "not_issued", Severity.INFO, server,
                    f"{DESCRIPTIONS[m]}: {run.reason}; clients cannot resume this way "
                    f"({_HINTS[m]})", {"mechanism": m},
                    _evidence([run.issue], "full handshake, nothing issued"),
                ))
            if run.status != "ok":
                continue
            seq, conc = Rate.of(run.sequential), Rate.of(run.concurrent)
            single = _is_single_use(run)
            if seq.completed and seq.accepted == 0:
                out.append(Finding(
                    "resumption_disabled", Severity.ERROR, server,
                    f"{DESCRIPTIONS[m]}: issued, but none of {seq.completed} offers was accepted: "
                    f"the server does not keep or cannot decrypt what it issues ({_HINTS[m]})",
                    {"mechanism": m, "offers": seq.completed, "accepted": 0},
                    _evidence(run.sequential, f"offered {OFFERS[m]}, refused"),
                ))
            elif single:
                out.append(Finding(
                    "single_use_tickets", Severity.INFO, server,
                    "TLS 1.3: each ticket is accepted once (RFC 8446 §8.1 anti-replay; OpenSSL "
                    "stateful tickets, e.g. nginx with ssl_session_tickets off). Clients that use "
                    "a fresh ticket per connection (RFC 8446 §C.4) resume; parallel connections "
                    "sharing one ticket resume once per ticket",
                    {"mechanism": m, "offers": seq.completed, "accepted": seq.accepted,
                     "concurrent_offers": conc.completed, "concurrent_accepted": conc.accepted},
                    _evidence(run.sequential[:2], "same ticket: first use accepted, then refused"),
                ))
            elif seq.rate is not None and seq.rate < 1:
                out.append(Finding(
                    "resumption_unreliable", Severity.WARNING, server,
                    f"{DESCRIPTIONS[m]}: {seq.accepted} of {seq.completed} sequential offers of "
                    "one session accepted (per-worker caches? a cache too small?)",
                    {"mechanism": m, "offers": seq.completed, "accepted": seq.accepted},
                    _evidence([a for a in run.sequential if a.ok and not a.accepted],
                              "offered, refused"),
                ))
            if (not single and seq.rate is not None and conc.rate is not None
                    and conc.rate < seq.rate):
                out.append(Finding(
                    "concurrent_refused", Severity.WARNING, server,
                    f"{DESCRIPTIONS[m]}: {conc.accepted} of {conc.completed} concurrent offers "
                    f"accepted (bursts of {result.config.concurrency}) against {seq.accepted} of "
                    f"{seq.completed} sequential: the session is not visible to every worker at "
                    "once (use a shared cache: nginx shared:, Apache shmcb)",
                    {"mechanism": m, "offers": conc.completed, "accepted": conc.accepted,
                     "sequential_offers": seq.completed, "sequential_accepted": seq.accepted},
                    _evidence([a for a in run.concurrent if a.ok and not a.accepted],
                              "concurrent offer refused"),
                ))
            acc, ref = age_bracket(run)
            if ref is not None and run.ages:
                refused = [a for a in run.ages if a.ok and not a.accepted]
                hint = ""
                if run.ticket_lifetime is not None:
                    hint = f"; the ticket lifetime hint is {run.ticket_lifetime} s"
                bracket = (f"accepted at {acc:g} s, refused at {ref:g} s" if acc is not None
                           else f"refused already at {ref:g} s")
                out.append(Finding(
                    "cache_timeout", Severity.WARNING, server,
                    f"{DESCRIPTIONS[m]}: sessions {bracket}{hint} (nginx: ssl_session_timeout; "
                    "Apache: SSLSessionCacheTimeout)",
                    {"mechanism": m, "accepted_max_age": acc, "refused_min_age": ref,
                     "ticket_lifetime": run.ticket_lifetime},
                    _evidence(refused, f"offered at age {ref:g} s, refused"),
                ))
    for m in mechs:
        cells = matrix_cells(result, m)
        if not cells:
            continue
        own_ok = all(r.accepted for (i, j), r in cells.items() if i == j and r.completed)
        refused = sorted((i, j) for (i, j), r in cells.items()
                         if i != j and r.completed and r.accepted < r.completed)
        if not refused:
            continue
        ends = {t.label: t.endpoint for t in result.targets}
        servers = sorted({ends[x] for pair in refused for x in pair})
        pairs = [f"{i} -> {j}" for i, j in refused]
        attempts = [a for (i, j) in refused for a in result.matrix[m][(i, j)] if a.ok
                    and not a.accepted]
        out.append(Finding(
            "cross_server_refused", Severity.WARNING, servers,
            f"{DESCRIPTIONS[m]}: sessions issued by one node are refused by another "
            f"({', '.join(pairs)}); behind one name, clients moving between nodes do full "
            f"handshakes ({_HINTS[m]})",
            {"mechanism": m, "pairs": [list(p) for p in refused]},
            _evidence(attempts, "issued by another node, refused"),
        ))
        if m in ("ticket", "psk") and own_ok:
            out.append(Finding(
                "ticket_keys_differ", Severity.WARNING, servers,
                f"{DESCRIPTIONS[m]}: every node accepts its own tickets but not the others': "
                "the nodes encrypt tickets under different keys (nginx: the same "
                "ssl_session_ticket_key file on every node; Apache: SSLSessionTicketKeyFile)",
                {"mechanism": m, "pairs": [list(p) for p in refused]},
                _evidence(attempts, "ticket of another node, refused"),
            ))
    sc = result.self_check
    if sc is not None and getattr(sc, "disagreements", None):
        ds = sc.disagreements
        out.append(Finding(
            "self_check_disagrees", Severity.ERROR, sorted({d["server"] for d in ds}),
            f"{len(ds)} connection(s) where the client's view and the wire's view differ "
            f"(first: {ds[0]['why']}): one of the two witnesses is wrong; please report it",
            {"disagreements": len(ds)},
            [Evidence(d["client"], d["server"], d["ts"],
                      tuple(d["wire_view"]["frames"]) if d["wire_view"] else (), why=d["why"])
             for d in ds[:3]],
        ))
    errors = [a for a in result.attempts() if a.outcome.error is not None
              and a.outcome.error.kind != "version"]
    if errors:
        kinds = sorted({a.outcome.error.kind for a in errors})
        out.append(Finding(
            "probe_errors", Severity.WARNING, sorted({a.server for a in errors}),
            f"{len(errors)} connection(s) failed ({', '.join(kinds)}); first: "
            f"{errors[0].outcome.error}. Rates count completed handshakes only",
            {"errors": len(errors), "kinds": kinds},
            _evidence(errors, "connection failed"),
        ))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    out.sort(key=lambda f: order[f.severity])
    return out


def score(result: ProbeResult) -> float | None:
    """The lowest accept rate measured: sequential and concurrent of every mechanism and target
    (a mechanism not issued or unavailable counts 0), and the node matrix of each mechanism."""
    rates = []
    for run in result.runs:
        if run.status != "ok":
            rates.append(0.0)
            continue
        for r in (Rate.of(run.sequential), Rate.of(run.concurrent)):
            if r.rate is not None:
                rates.append(r.rate)
    for m in result.matrix:
        total = Rate()
        for r in matrix_cells(result, m).values():
            total.completed += r.completed
            total.accepted += r.accepted
        if total.rate is not None:
            rates.append(total.rate)
    return min(rates) if rates else None


def document(result: ProbeResult, found: list[Finding]) -> dict:
    matrix = {}
    for m in result.matrix:
        cells = matrix_cells(result, m)
        matrix[m] = [
            {"issuer": i, "acceptor": j, **r.to_dict()} for (i, j), r in sorted(cells.items())
        ]
    s = score(result)
    return {
        "tlssniff": __version__,
        "command": "probe",
        "config": result.config.to_dict(),
        "targets": [{"target": t.label, "server": t.endpoint, "host": t.host}
                    for t in result.targets],
        "started": round(result.started, 6),
        "elapsed_seconds": round(result.elapsed, 3),
        "matrix_seconds": (None if result.matrix_seconds is None
                           else round(result.matrix_seconds, 3)),
        "score": None if s is None else round(s, 4),
        "mechanisms": [r.to_dict() for r in result.runs],
        "matrix": matrix,
        "self_check": result.self_check.to_dict() if result.self_check is not None else None,
        "findings": [f.to_dict() for f in found],
        "attempts": [a.to_dict() for a in result.attempts()],
    }


# --------------------------------------------------------------------------------------------
# Terminal


def _rate(r: Rate) -> str:
    if not r.attempts:
        return "-"
    text = f"{r.accepted}/{r.completed}"
    if r.rate is not None:
        text += f" {100 * r.rate:.0f}%"
    if r.errors:
        text += f" [red]({r.errors} failed)[/red]"
    colour = "green" if r.rate == 1 else "red" if not r.accepted else "yellow"
    return f"[{colour}]{text}[/{colour}]"


def _issued(run: MechanismRun) -> str:
    if run.status == "unavailable":
        return f"[red]unavailable[/red]\n[dim]{_m(run.reason)}[/dim]"
    if run.status == "not_issued":
        return f"[red]no[/red]\n[dim]{_m(run.reason)}[/dim]"
    s = run.session
    version = run.issue.outcome.version if run.issue else ""
    if run.mechanism == "id":
        return f"id {len(s.id)} B, {_m(version)}"
    return f"ticket, {run.ticket_lifetime} s, {_m(version)}"


def _ages(run: MechanismRun) -> str:
    parts = []
    for a in sorted(run.ages, key=lambda a: a.planned_age or 0):
        if not a.ok:
            parts.append(f"{a.planned_age:g}s [red]err[/red]")
        elif a.accepted:
            parts.append(f"{a.planned_age:g}s [green]yes[/green]")
        elif a.offered == "none":
            parts.append(f"{a.planned_age:g}s [red]no[/red] (expired)")
        else:
            parts.append(f"{a.planned_age:g}s [red]no[/red]")
    return "\n".join(parts) if parts else "-"


def print_report(console: Console, result: ProbeResult, found: list[Finding]) -> None:
    c = result.config
    table = Table(title="Resumption by mechanism", title_justify="left")
    table.add_column("target", overflow="fold")
    table.add_column("mechanism")
    table.add_column("issued", overflow="fold", max_width=34)
    table.add_column(f"sequential\n(×{c.attempts})", justify="right")
    table.add_column(f"concurrent\n(bursts of {c.concurrency})", justify="right")
    if c.ages:
        table.add_column("ages")
    for t in result.targets:
        for m in c.mechanisms:
            run = result.run(m, t)
            row = [terminal_text(t.label), m, _issued(run), _rate(Rate.of(run.sequential)),
                   _rate(Rate.of(run.concurrent))]
            if c.ages:
                row.append(_ages(run))
            table.add_row(*row)
        table.add_section()
    console.print(table)

    for m, cells in result.matrix.items():
        if not cells:
            continue
        rates = matrix_cells(result, m)
        mt = Table(title=f"Node matrix: {DESCRIPTIONS[m]}", title_justify="left",
                   caption="row: node that issued the session; column: node it was presented "
                   "to; accepted/presented", caption_justify="left")
        mt.add_column("issued by \\ to")
        for t in result.targets:
            mt.add_column(terminal_text(t.label), justify="center")
        for i in result.targets:
            row = [terminal_text(i.label)]
            for j in result.targets:
                r = rates.get((i.label, j.label))
                row.append("[dim]not issued[/dim]" if r is None else _rate(r))
            mt.add_row(*row)
        console.print(mt)

    sc = result.self_check
    if sc is not None and sc.ran:
        st = Table(title="Self-check: client view vs wire view", title_justify="left",
                   caption="client: SSLObject.session_reused; wire: tlssniff's passive verdicts "
                   "of the probe's own capture. id = session id, tkt = ticket, psk = TLS 1.3 "
                   "PSK, full = full handshake (issuing, or refused)", caption_justify="left")
        for name in ("mechanism", "phase", "client", "wire", "agree"):
            st.add_column(name)
        merged: dict = {}
        for g in sc.groups:
            key = (g.mechanism, g.phase)
            if key not in merged:
                merged[key] = [Counter(), Counter(), 0]
            merged[key][0].update(g.client)
            merged[key][1].update(g.wire)
            merged[key][2] += g.disagree
        for (m, phase), (client, wire, bad) in merged.items():
            agree = "[green]yes[/green]" if not bad else f"[red]NO ({bad})[/red]"
            st.add_row(m, phase, _counts(client), _counts(wire), agree)
        console.print(st)
        line = (f"self-check: {sc.agree} of {sc.connections} connections agree (captured on "
                f"{_m(sc.interface)})")
        if sc.dropped:
            line += f", [red]{sc.dropped} packets dropped by the kernel[/red]"
        if sc.unseen_reason:
            line += f"; {sc.unseen} not classified: {_m(sc.unseen_reason)}"
        if sc.capture:
            line += f"; capture kept in {_m(sc.capture)}"
        console.print(line)
        for d in sc.disagreements[:10]:
            console.print(f"  [red]disagree[/red] {_m(d['client'])} -> {_m(d['server'])} "
                          f"{_m(d['mechanism'])} {_m(d['phase'])}: {_m(d['why'], 0)}")
    elif sc is not None:
        console.print(f"[dim]self-check not run: {_m(sc.reason, 0)}[/dim]")

    if found:
        console.print("[b]Findings[/b]")
        colours = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in found:
            col = colours[f.severity.value]
            console.print(f"  [{col}]{f.severity.value:7}[/{col}] [b]{_m(f.code)}[/b] "
                          f"{', '.join(_m(s) for s in f.servers)}: {_m(f.message, 0)}",
                          soft_wrap=False)
    timing = f"probe took {result.elapsed:.2f} s"
    if result.matrix_seconds is not None:
        timing += f" (node matrix known after {result.matrix_seconds:.2f} s)"
    console.print(f"[dim]{timing}[/dim]")


_SHORT = {"session_id": "id", "ticket": "tkt", "psk": "psk", "full": "full",
          "unknown": "?", "failed": "failed", "unseen": "unseen"}


def _counts(counter) -> str:
    order = list(_SHORT)
    items = sorted(counter.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
    return " ".join(f"{_SHORT.get(k, k)} {v}" for k, v in items if v) or "-"
