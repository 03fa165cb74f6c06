"""summary.md: the bundle's text, written for a reader who never saw the capture.

Order: the answer first (which server fails and why), then each finding with the connections
that prove it, the per-server table, what the verdicts mean, and how the capture was analyzed.
"""

from __future__ import annotations

from tlssniff.output.display import for_markdown, for_markdown_code
from tlssniff.output.report.bundle import (
    LOW_HIT_RATE,
    _Context,
    iso,
    listed_servers,
    low_hit,
    named,
    shown_findings,
    stats_label,
)

MAX_NAMED = 8  # servers named one by one in the headline's "also refused" line
# Servers given a bullet of their own in the headline, per kind (a problem, below --fail-under,
# refusing unexplained); the others are counted in one more bullet.
HEADLINE_SERVERS = 20

# Finding messages quote captured names; longer ones are shortened (summary.json has them whole).
MESSAGE_LIMIT = 4096

MIX_NAMES = (("session_id", "session id"), ("ticket", "ticket"), ("psk", "TLS 1.3 PSK"),
             ("full", "full"), ("unknown", "unknown"))

VERDICT_TEXT = """\
Every TLS connection gets one verdict, read from the handshake messages that travel in the
clear (RFC 5246, RFC 5077, RFC 8446; the exact rules are in tlssniff's docs/verdicts.md):

- **offered**: what the client presented to resume an earlier session: `session_id` (TLS 1.2
  session id), `ticket` (TLS 1.2 session ticket), `psk` (TLS 1.3 pre-shared key) or `none`.
- **handshake**: how the server answered: `full` (a new session: the expensive handshake),
  `session_id`, `ticket` or `psk` (the session was resumed), or `unknown` when the capture does
  not prove either (the `note` says why: start of the connection not captured, no answer...).
- **resumed**: the handshake is `session_id`, `ticket` or `psk`.
- A **refused offer** is a client presenting a session (`offered` is not `none`) and the server
  answering with a `full` handshake: the server did not find, or would not use, that session.
- **Resumption rate** of a server: resumed / classified handshakes (unknown ones excluded).
  **Hit rate**: accepted offers / offers. A low hit rate is the server's doing; a low
  resumption rate with few offers is usually the clients' (they keep no session).

In TLS 1.3 only a `pre_shared_key` in the ServerHello proves resumption (the echoed session id
means nothing); in TLS 1.2 the server's ChangeCipherSpec right after its ServerHello does (a
missing certificate alone does not).
"""


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def esc(text, limit: int | None = None) -> str:
    """A captured value for any place of the markdown: tlssniff.output.display.for_markdown
    (controls escaped, metacharacters neutralised, long values shortened)."""
    return for_markdown(text) if limit is None else for_markdown(text, limit)


def mix(by_handshake) -> str:
    return ", ".join(f"{label} {by_handshake[k]}" for k, label in MIX_NAMES if by_handshake.get(k))


def headline(ctx: _Context, val=esc) -> list[str]:
    """The answer in plain words, one bullet per failing server. ``val(value, limit=None)``
    shows a captured value (report.html passes its own)."""
    lines = []
    errors = {}
    for f in ctx.findings:
        if f.severity.value in ("error", "warning"):
            for s in f.servers:
                errors.setdefault(s, []).append(f)
    for s, fs in list(errors.items())[:HEADLINE_SERVERS]:
        codes = ", ".join(f"`{code}`" for code in dict.fromkeys(f.code for f in fs))
        lines.append(f"- **{val(s)}** has a problem ({codes}): {val(fs[0].message, MESSAGE_LIMIT)}")
    if len(errors) > HEADLINE_SERVERS:
        codes = ", ".join(f"`{code}`" for code in dict.fromkeys(
            f.code for fs in list(errors.values())[HEADLINE_SERVERS:] for f in fs))
        lines.append(f"- And {len(errors) - HEADLINE_SERVERS} more servers with a problem "
                     f"({codes}): see the findings below and summary.json.")
    for s in ctx.failing[:HEADLINE_SERVERS]:
        lines.append(
            f"- **{val(stats_label(s))}** resumes {pct(s.resumption_rate)} of {s.classified} "
            f"classified handshakes, below the required {pct(ctx.fail_under)} "
            f"(--fail-under, servers with at least {ctx.min_handshakes} handshakes).")
    if len(ctx.failing) > HEADLINE_SERVERS:
        lines.append(f"- And {len(ctx.failing) - HEADLINE_SERVERS} more servers below the "
                     f"required {pct(ctx.fail_under)}: see summary.json's failing_servers.")
    named = set(errors) | {stats_label(s) for s in ctx.failing}
    # Refused offers are named even when no finding explains them: a reader must not be told
    # all is well while a server turns clients away.
    unexplained = 0
    for s in ctx.ranked():
        label = stats_label(s)
        if low_hit(s) and label not in named:
            named.add(label)
            unexplained += 1
            if unexplained > HEADLINE_SERVERS:
                continue
            lines.append(
                f"- **{label}** refuses {s.refused} of {s.offered} resumption offers (hit rate "
                f"{pct(s.hit_rate)}, under {pct(LOW_HIT_RATE)}); no finding explains it: see "
                "its row in the per-server table and its connections in `handshakes.jsonl`.")
    if unexplained > HEADLINE_SERVERS:
        lines.append(f"- And {unexplained - HEADLINE_SERVERS} more servers refuse most offers "
                     f"(hit rate under {pct(LOW_HIT_RATE)}) with no finding to explain it: see "
                     "summary.json's low_hit_rate_servers.")
    also = [s for s in ctx.ranked() if s.refused and stats_label(s) not in named]
    if also:
        shown = ", ".join(f"**{stats_label(s)}** ({s.refused} of {s.offered})"
                          for s in also[:MAX_NAMED])
        more = f" and {len(also) - MAX_NAMED} more" if len(also) > MAX_NAMED else ""
        lines.append(f"- {'Other servers' if lines else 'Servers'} refusing some offers "
                     f"(refused of offered): {shown}{more}.")
    if not lines:
        if not ctx.agg.servers:
            lines.append("- No TLS handshake was found in the capture.")
        else:
            lines.append("- No server shows a resumption problem tlssniff can prove: no finding "
                         "of severity error or warning"
                         + (f", and every server with at least {ctx.min_handshakes} handshakes "
                            f"resumes at least {pct(ctx.fail_under)}" if ctx.fail_under
                            is not None else "") + ".")
    return lines


def render(ctx: _Context) -> str:
    first, last = ctx.time_range()
    counts = ctx.counts()
    ev = counts["evidence"]
    names = ", ".join(for_markdown_code(i['name']) for i in ctx.inputs) or "a live capture"
    out = [
        "# TLS session resumption report",
        "",
        f"Made by tlssniff {__import__('tlssniff').__version__} from {names}: "
        f"{counts['handshakes_jsonl']} TLS connections to {counts['servers']} servers, "
        f"captured {iso(first) or '?'} to {iso(last) or '?'} (UTC).",
        "",
        "## In short",
        "",
        *headline(ctx),
        "",
    ]
    out += ["## Findings", ""]
    if not ctx.findings:
        out += ["No findings: nothing in the capture explains a low resumption rate.", ""]
    shown, hidden = shown_findings(ctx)
    for n, f, d in shown:
        servers, more = named(f.servers)
        out += [
            f"### {n}. {f.severity.value.upper()} `{f.code}`: "
            + ", ".join(esc(s) for s in servers) + (f" and {more} more servers" if more else ""),
            "",
            esc(f.message, MESSAGE_LIMIT),
            "",
        ]
        if d["evidence"]:
            out += ["The connections that show it (also in `evidence.pcapng`, with a packet "
                    "comment naming this finding; in `handshakes.jsonl` by client, server and "
                    "time):", "",
                    "| client | server | time (UTC) | frames in the input | what it shows |",
                    "|---|---|---|---|---|"]
            for e in d["evidence"]:
                out.append(f"| {esc(e['client'])} | {esc(e['server'])} | {iso(e['ts'])} | "
                           f"{','.join(map(str, e['frames'])) or '-'} | "
                           f"{esc(e['why'] or '', MESSAGE_LIMIT)} |")
            out.append("")
    if hidden:
        out += ["Not shown here: " + ", ".join(f"{k} more `{code}`" for code, k in hidden.items())
                + " (summary.json has every finding with its evidence).", ""]
    out += ["## Resumption per server", "",
            "| server | SNI | handshakes | classified | resumed | offered | accepted | refused "
            "| hit rate | mix | versions |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    flagged = {stats_label(s) for s in ctx.failing} | set(ctx.problems)
    rows, left_out = listed_servers(ctx)
    for s in rows:
        mark = " **(fails)**" if stats_label(s) in flagged else \
            " **(low hit rate)**" if low_hit(s) else ""
        kind = s.starttls or (s.transport if s.transport != "tcp" else "")
        out.append(
            f"| {esc(s.server)}{' ' + kind if kind else ''}{mark} | {esc(s.sni or '-')} | "
            f"{s.handshakes} | {s.classified} | {s.resumed} ({pct(s.resumption_rate)}) | "
            f"{s.offered} | {s.accepted} | {s.refused} | {pct(s.hit_rate)} | {mix(s.by_handshake)} "
            f"| {esc(', '.join(f'{k} {n}' for k, n in sorted(s.by_version.items())))} |")
    t = ctx.agg.total
    if left_out:
        out.append(f"| *{left_out} other servers* (every server is in summary.json) | | | | | "
                   "| | | | | |")
    if len(ctx.agg.servers) > 1:
        out.append(f"| **all servers** | | {t.handshakes} | {t.classified} | {t.resumed} "
                   f"({pct(t.resumption_rate)}) | {t.offered} | {t.accepted} | {t.refused} | "
                   f"{pct(t.hit_rate)} | {mix(t.by_handshake)} | |")
    out += ["", "## What the verdicts mean", "", VERDICT_TEXT]
    out += ["## How this was analyzed", ""]
    out += [f"- Command: {for_markdown_code(ctx.argv and __import__('shlex').join(ctx.argv), 0)}",
            f"- Analyzed at {iso(ctx.started)} (UTC) by tlssniff "
            f"{__import__('tlssniff').__version__}, passively: only packets already captured "
            "were read, nothing was sent to any server."]
    for i in ctx.inputs:
        if "sha256" in i:
            out.append(f"- Input {for_markdown_code(i['path'])}: {i['size']} bytes, sha256 "
                       f"`{i['sha256']}`")
        else:
            out.append(f"- Input {for_markdown_code(i['path'])}: {esc(i.get('error'))}")
    c = ctx.counters
    if c:
        skipped = [f"{c[k]} {label}" for k, label in (
            ("midstream_tls", "seen mid-stream"), ("not_tls_connections", "not TLS"),
            ("malformed_tls", "malformed TLS"), ("gaps", "with bytes missing"),
            ("evicted", "evicted (flow limit)"), ("malformed_frames", "unparsable frames"))
            if c.get(k)]
        out.append(f"- Read {c.get('frames')} frames: {c.get('tcp_connections')} TCP "
                   f"connections, {c.get('udp_flows') or 0} UDP flows, "
                   f"{c.get('tls_connections')} TLS connections"
                   + (f" (not classified: {'; '.join(skipped)})" if skipped else "") + ".")
        for w in (c.get("warnings") or []) + (c.get("errors") or []):
            out.append(f"- Warning while reading: {esc(w, MESSAGE_LIMIT)}")
    out.append(f"- Cross-check by Wireshark's dissector (`tlssniff verify`): "
               f"{esc(ctx.check.get('summary'), MESSAGE_LIMIT)}"
               + (f" (took {ctx.check['seconds']:.1f} s)" if "seconds" in ctx.check else ""))
    for k in (ctx.check.get("contradictions") or [])[:20]:
        out.append(f"  - {esc(k['client'])} -> {esc(k['server'])}: {esc(k['field'])}: tlssniff "
                   f"says {esc(k['tlssniff'])}, tshark {esc(k['tshark'])} (tshark frames "
                   f"{','.join(map(str, k['frames']))})")
    if ctx.anon is not None:
        out.append("- Client addresses are pseudonyms (`--anonymize`): the same client has the "
                   "same pseudonym in every file of this bundle, packets included; server "
                   "addresses are real.")
    if ctx.redacted:
        out.append("- Session ids, tickets and PSK identities are replaced by keyed hashes "
                   "(`--redact`): an offer and the session it resumes still carry the same value.")
    out += ["", "## Files of this bundle", "",
            f"- `handshakes.jsonl`: {counts['handshakes_jsonl']} connections, one JSON object "
            "each (field names in tlssniff's README).",
            f"- `evidence.pcapng`: {ev['connections']} connections ({ev['cited']} cited by "
            f"findings, {ev['sampled']} sampled from the rest), {ev['packets']} packets, "
            "each with a comment giving its connection's verdict. Open it in Wireshark (packet "
            "comments, or the display filter `frame.comment contains \"tlssniff\"`) or run "
            "`tshark -r evidence.pcapng -Y frame.comment -T fields -e frame.comment`."
            + (f" {ev['not_found']} chosen connections had no packets left to copy."
               if ev["not_found"] else ""),
            "- `report.html`: this summary with charts (opens offline).",
            "- `summary.json`: the figures above, machine-readable.",
            "- `provenance.json`: inputs with sha256, command line, times, counts, cross-check.",
            ""]
    return "\n".join(out)
