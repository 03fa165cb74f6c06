"""report.html: the summary and the charts in one file that opens offline.

No external resource at all: the styles are inline and the charts are SVG drawn by matplotlib
(:mod:`tlssniff.output.report.charts`) and pasted in. Every piece of text from the capture
(SNI, messages) is HTML-escaped.
"""

from __future__ import annotations

import shlex

from tlssniff import __version__
from tlssniff.output.display import DOCUMENT_LIMIT, for_html
from tlssniff.output.report import charts
from tlssniff.output.report.bundle import (
    ChartSpan,
    _Context,
    iso,
    listed_servers,
    low_hit,
    named,
    shown_findings,
    stats_label,
)
from tlssniff.output.report.markdown import MESSAGE_LIMIT, VERDICT_TEXT, mix, pct

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right}tr.fail td{background:#fff1f0}
tr.low td{background:#fff8d6}
.sev-error{color:#b00020;font-weight:bold}.sev-warning{color:#a05a00;font-weight:bold}
.sev-info{color:#00639b;font-weight:bold}.finding{border-left:4px solid #ccc;padding:.2em .8em;
margin:.8em 0}.finding.error{border-color:#b00020}.finding.warning{border-color:#e69500}
.finding.info{border-color:#00639b}code{background:#f4f4f4;padding:0 3px}
.chart svg{max-width:100%;height:auto}.muted{color:#666}ul.short li{margin:.3em 0}
"""


def e(x, limit: int = 0) -> str:
    """Text for the page: controls escaped, HTML escaped (tlssniff.output.display.for_html);
    captured values are shortened to ``limit`` (``v``)."""
    return for_html(x, limit)


def v(x) -> str:
    """A captured value (server label, SNI, address, file name): :func:`e`, shortened."""
    return for_html(x, DOCUMENT_LIMIT)


def _verdict_html() -> str:
    """The markdown verdict text as simple HTML (bullets, bold, code)."""
    import re

    out = []

    def inline(t: str) -> str:
        t = e(t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        return re.sub(r"`(.+?)`", r"<code>\1</code>", t)

    for block in VERDICT_TEXT.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("- "):
            items, cur = [], ""
            for line in lines:
                if line.startswith("- "):
                    if cur:
                        items.append(cur)
                    cur = line[2:]
                else:
                    cur += " " + line.strip()
            items.append(cur)
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>")
        elif lines:
            out.append(f"<p>{inline(' '.join(lines))}</p>")
    return "\n".join(out)


def render(ctx: _Context) -> str:
    first, last = ctx.time_range()
    counts = ctx.counts()
    ev = counts["evidence"]
    from tlssniff.output.report.markdown import headline

    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>tlssniff: TLS session resumption report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>TLS session resumption report</h1>",
        f"<p class='muted'>tlssniff {e(__version__)}: {counts['handshakes_jsonl']} TLS "
        f"connections to {counts['servers']} servers, captured {e(iso(first))} to "
        f"{e(iso(last))} (UTC), from "
        f"{', '.join(v(i['name']) for i in ctx.inputs) or 'a live capture'}.</p>",
        "<h2>In short</h2><ul class='short'>",
    ]
    import re

    # The headline is markdown; captured values go in as placeholders (no * or ` in them) and
    # come back HTML-escaped after the markdown emphasis became tags.
    held: list[str] = []

    def hold(x, limit=None) -> str:
        held.append(for_html(x, DOCUMENT_LIMIT if limit is None else limit))
        return f"\ue000{len(held) - 1}\ue001"

    for line in headline(ctx, hold):
        t = e(line[2:])
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
        t = re.sub("\ue000(\\d+)\ue001", lambda m: held[int(m.group(1))], t)
        parts.append(f"<li>{t}</li>")
    parts.append("</ul>")

    parts.append("<h2>Charts</h2>")
    why = charts.available()
    if why:
        parts.append(f"<p class='muted'>No charts: {e(why)}.</p>")
    else:
        drawn = ctx.charts if ctx.charts is not None else draw_charts(
            chart_inputs(ctx.verdicts, ctx.ranked(), ctx.span, ctx.diag))
        for svg, notes in drawn:
            if svg:
                parts.append(f"<div class='chart'>{svg}</div>")
            for note in notes:
                parts.append(f"<p class='muted'>{e(note)}</p>")

    parts.append("<h2>Findings</h2>")
    if not ctx.findings:
        parts.append("<p>No findings: nothing in the capture explains a low resumption rate.</p>")
    shown, hidden = shown_findings(ctx)
    for _n, f, d in shown:
        sev = f.severity.value
        servers, more = named(f.servers)
        parts.append(f"<div class='finding {sev}'><p><span class='sev-{sev}'>{sev.upper()}</span> "
                     f"<code>{e(f.code)}</code> {', '.join(v(s) for s in servers)}"
                     f"{f' and {more} more servers' if more else ''}</p>"
                     f"<p>{e(f.message, MESSAGE_LIMIT)}</p>")
        if d["evidence"]:
            parts.append("<table><tr><th>client</th><th>server</th><th>time (UTC)</th>"
                         "<th>frames</th><th>what it shows</th></tr>")
            for x in d["evidence"]:
                parts.append(f"<tr><td>{v(x['client'])}</td><td>{v(x['server'])}</td>"
                             f"<td>{e(iso(x['ts']))}</td><td>{e(','.join(map(str, x['frames'])))}"
                             f"</td><td>{e(x['why'], MESSAGE_LIMIT)}</td></tr>")
            parts.append("</table>")
        parts.append("</div>")
    if hidden:
        parts.append("<p class='muted'>Not shown here: " + e(", ".join(
            f"{k} more {code}" for code, k in hidden.items()))
            + " (summary.json has every finding with its evidence).</p>")

    parts.append("<h2>Resumption per server</h2><table><tr><th>server</th><th>SNI</th>"
                 "<th>handshakes</th><th>classified</th><th>resumed</th><th>offered</th>"
                 "<th>accepted</th><th>refused</th><th>hit rate</th><th>mix</th>"
                 "<th>versions</th></tr>")
    flagged = {stats_label(s) for s in ctx.failing} | set(ctx.problems)
    rows, left_out = listed_servers(ctx)
    for s in rows:
        fail = stats_label(s) in flagged
        low = not fail and low_hit(s)
        mark = " (fails)" if fail else " (low hit rate)" if low else ""
        cls = " class=fail" if fail else " class=low" if low else ""
        parts.append(
            f"<tr{cls}><td>{v(s.server)}{mark}</td>"
            f"<td>{v(s.sni or '-')}</td><td class=n>{s.handshakes}</td>"
            f"<td class=n>{s.classified}</td><td class=n>{s.resumed} ({pct(s.resumption_rate)})</td>"
            f"<td class=n>{s.offered}</td><td class=n>{s.accepted}</td><td class=n>{s.refused}</td>"
            f"<td class=n>{pct(s.hit_rate)}</td><td>{e(mix(s.by_handshake))}</td>"
            f"<td>{e(', '.join(f'{k} {n}' for k, n in sorted(s.by_version.items())))}</td></tr>")
    parts.append("</table>")
    if left_out:
        parts.append(f"<p class='muted'>{left_out} other servers are not listed here; "
                     "summary.json lists every server.</p>")

    parts.append("<h2>What the verdicts mean</h2>" + _verdict_html())

    parts.append("<h2>How this was analyzed</h2><ul>")
    parts.append(f"<li>Command: <code>{e(shlex.join(ctx.argv))}</code></li>")
    parts.append(f"<li>Analyzed at {e(iso(ctx.started))} (UTC), passively.</li>")
    for i in ctx.inputs:
        parts.append(f"<li>Input <code>{v(i['path'])}</code>: {e(i.get('size'))} bytes, sha256 "
                     f"<code>{e(i.get('sha256'))}</code></li>")
    c = ctx.counters
    if c:
        parts.append(f"<li>{e(c.get('frames'))} frames, {e(c.get('tcp_connections'))} TCP "
                     f"connections, {e(c.get('tls_connections'))} TLS connections.</li>")
    parts.append(f"<li>Cross-check by Wireshark's dissector: {e(ctx.check.get('summary'))}</li>")
    parts.append(f"<li>evidence.pcapng: {ev['connections']} connections ({ev['cited']} cited, "
                 f"{ev['sampled']} sampled), {ev['packets']} packets with verdict comments.</li>")
    if ctx.anon is not None:
        parts.append("<li>Client addresses are pseudonyms (--anonymize).</li>")
    if ctx.redacted:
        parts.append("<li>Session ids, tickets and PSK identities are keyed hashes "
                     "(--redact).</li>")
    parts.append("</ul></body></html>\n")
    return "\n".join(parts)


def chart_inputs(verdicts, ranked: list, span: ChartSpan | None,
                 diag) -> list[tuple[str, tuple]]:
    """What each chart is drawn from, as ``(charts function name, arguments)`` or
    ``("", (None, notes))`` for a chart with only a note: plain data, so the drawing can happen
    in another process (:class:`ChartsInBackground`). Two passes over the verdicts (a spool on
    disk for ``report``), keeping only counts: the first finds the time span, the classified
    handshakes per server and the refused offers (done during the bundle's evidence pass when
    it ran: ``ctx.span``), the second bins the rate of each server of the table's rows (at most
    --max-servers)."""
    if span is None:
        span = ChartSpan(ranked)
        for r in verdicts.rows():
            span.add(r)
    order, classified, refused = span.order, span.classified, span.refused
    t0, tmax = span.t0, span.tmax
    out: list[tuple[str, tuple]] = []
    if t0 is None or tmax is None:
        out.append(("", (None, ["Resumption over time: no classified handshake."])))
    else:
        busiest = max(classified.values())
        width = charts.rate_bin_width(tmax - t0, busiest)
        if width is None:
            out.append(("", (None, [charts.too_few_note(busiest)])))
        else:
            # A server with fewer classified handshakes than two full bins cannot get a line:
            # it is named as thin without bins (an egress capture's 20,000 table rows).
            two_bins = 2 * charts.MIN_PER_BIN
            binned: dict[str, dict[int, list[int]] | None] = {
                k: {} if classified[k] >= two_bins else None for k in order if k in classified}
            for v in verdicts.rows() if any(b is not None for b in binned.values()) else ():
                if v.handshake == "unknown":
                    continue
                bins = binned.get(f"{v.server} {v.sni}" if v.sni else v.server)
                if bins is not None:
                    b = bins.setdefault(int((v.ts - t0) // width), [0, 0])
                    b[0] += 1
                    b[1] += v.resumed
            out.append(("rate_over_time_binned", (binned, width, classified)))
    rows = [(stats_label(s), charts.mix_counts(s, refused.get(stats_label(s), 0)))
            for s in ranked]
    out.append(("mechanism_mix", (rows,)))
    out.append(("session_ages", (diag.session_ages(),
                                 {stats_label(s): s.refused for s in ranked if s.refused})))
    return out


def draw_charts(inputs: list[tuple[str, tuple]]) -> list[tuple[str | None, list[str]]]:
    """The charts of :func:`chart_inputs`: ``(svg or None, notes)`` each."""
    return [getattr(charts, name)(*args) if name else args for name, args in inputs]


class ChartsInBackground:
    """The charts drawn by a child process while this one goes on (the evidence walk,
    summary.json, summary.md): matplotlib's import and drawing, about 2 s of a report on one
    core, overlap the rest on another. The SVG text is what drawing here gives (the same
    functions, the same inputs); where no process can be forked the charts are drawn here.

    ``report`` makes one before its analysis (:func:`tlssniff.run.report`): the child is
    forked while this process is small, and imports matplotlib at once, beside the analysis;
    forked at the end, it would count a copy of the whole process in its RSS."""

    def __init__(self) -> None:
        self._pool = None
        self._future = None
        self._inputs: list[tuple[str, tuple]] = []
        try:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
            if charts.available() is None:
                self._pool.submit(_warm)  # forks the child now; matplotlib imported there
        except (OSError, ValueError, ImportError):
            self.close()

    def draw(self, inputs: list[tuple[str, tuple]]) -> None:
        """Start drawing the charts of ``inputs`` (:func:`chart_inputs`)."""
        self._inputs = inputs
        if self._pool is not None:
            try:
                self._future = self._pool.submit(draw_charts, inputs)
            except RuntimeError:  # the pool broke (its child died) or was shut down
                self._future = None

    def drawn_by_child(self) -> bool:
        return self._future is not None

    def result(self) -> list[tuple[str | None, list[str]]]:
        """The charts, ``(svg or None, notes)`` each: the child's, or drawn here."""
        if self._future is not None:
            from concurrent.futures.process import BrokenProcessPool

            try:
                return self._future.result()
            except BrokenProcessPool:
                pass  # the child died (out of memory, killed): drawn here instead
        return draw_charts(self._inputs)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ChartsInBackground:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _warm() -> None:
    charts._plt()
