"""Write an evidence bundle (docs/report.md) from an analysis held in memory.

:func:`write_bundle` is what ``tlssniff report`` calls (and a capture loop of one's own may): it takes
the verdicts (and, when the caller has them, the aggregator, diagnostics and counters of the
same run), re-reads the input captures for the evidence packets, and writes:

summary.md, report.html, summary.json, handshakes.jsonl, evidence.pcapng, provenance.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tlssniff import __version__
from tlssniff.analysis.aggregate import Aggregator, ServerStats
from tlssniff.analysis.aggregate import servers_under as fail_under  # noqa: F401 - re-exported
from tlssniff.analysis.diagnostics import Diagnostics
from tlssniff.analysis.findings import Finding
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered
from tlssniff.output.display import clip, for_comment
from tlssniff.output.files import OutputDir
from tlssniff.output.report.evidence import Chosen, EvidenceStats, collect, write_pcapng
from tlssniff.output.report.privacy import (
    Anonymizer,
    Redactor,
    Scrubber,
    split_endpoint,
    verdict_dict,
)
from tlssniff.output.report.spool import (
    LineSpool,
    ListStore,
    Row,
    VerdictSpool,
    open_store,
    row_of,
)
from tlssniff.units import parse_rate  # noqa: F401 - re-exported (tlssniff.output.report)

LOW_HIT_RATE = 0.5  # below this share of offers accepted a server is marked (the terminal's rule)
SAMPLE_PER_KIND = 2  # uncited connections kept per (server, handshake, offered)
MAX_SAMPLE = 60
# Servers listed one by one in summary.md and report.html (the busiest, and any flagged beyond):
# a document to read, where summary.json holds every server.
REPORT_SERVERS = 500
REPORT_FINDINGS_PER_CODE = 20  # findings of one code shown in full (summary.json: all)
REPORT_SERVERS_PER_FINDING = 20  # servers a finding's heading names


@dataclass
class Bundle:
    """What :func:`write_bundle` wrote, for the caller's exit status and messages."""

    out_dir: Path
    files: list[str]
    connections: int
    failing: list[ServerStats]  # servers under --fail-under (empty without it)
    problem_servers: list[str]  # servers named by an error or warning finding
    evidence: EvidenceStats
    cross_check: dict
    findings: list[Finding] = field(default_factory=list)


def stats_label(s: ServerStats) -> str:
    return f"{s.server} {s.sni}" if s.sni else s.server


def low_hit(s: ServerStats) -> bool:
    """The server accepts fewer than :data:`LOW_HIT_RATE` of the offers it gets: the terminal
    table shows it in yellow, the report names it in its headline and marks it in its tables."""
    return s.resumption_rate is not None and bool(s.offered) and (s.hit_rate or 0) < LOW_HIT_RATE


def describe(v: ConnectionVerdict) -> str:
    """A verdict in a few plain words."""
    mech = {"session_id": "session id", "ticket": "session ticket", "psk": "TLS 1.3 PSK"}
    if v.resumed:
        return f"resumed ({mech[v.handshake.value]})"
    if v.handshake is Handshake.FULL:
        if v.offered is not Offered.NONE:
            return f"offer refused: full handshake although the client presented a " \
                   f"{mech[v.offered.value]}"
        return "full handshake, nothing offered"
    return f"unknown ({v.note.value if v.note else 'not proven by the capture'})"


def write_bundle(
    out_dir: str | os.PathLike | OutputDir,
    verdicts: Sequence[ConnectionVerdict] | VerdictSpool | LineSpool,
    aggregator: Aggregator | None = None,
    diagnostics: Diagnostics | None = None,
    counters: dict | None = None,
    inputs: list[str] | None = None,
    argv: list[str] | None = None,
    *,
    digests: InputDigests | None = None,
    charts_worker=None,
    anonymize: bool = False,
    redact: bool = False,
    cross_check: bool = True,
    fail_under_rate: float | None = None,
    min_handshakes: int = 10,
    started: float | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Bundle:
    """Write the bundle into ``out_dir``: created 0700 when missing; an existing directory
    must belong to the effective user (or root) and be empty unless ``force`` (its bundle
    files are then replaced). Every file is written 0600 without following links
    (:class:`tlssniff.output.files.OutputDir`); :class:`~tlssniff.errors.UsageError` otherwise.

    ``verdicts``: every connection of the analysis, in the order they came: a list, or any
    sequence that can be iterated again (``report`` passes a
    :class:`~tlssniff.output.report.spool.VerdictSpool`; it is read a few times, and only the
    chosen evidence and summaries are kept in memory). ``aggregator``,
    ``diagnostics``: built from ``verdicts`` when not given. ``counters``: the pipeline's
    ``Counters.to_dict()``. ``inputs``: the capture files the evidence packets are read from
    (for live capture: the ``--write`` file, or none: the pcapng is then empty and says so).
    ``argv``: the command line to record (default ``sys.argv``). ``progress``: called with
    the name of each step as it starts (the cross-check, the evidence, the documents).
    ``digests``: the inputs' hashes, already started (:class:`InputDigests`); made here when
    not given. ``charts_worker``: a :class:`~tlssniff.output.report.html.ChartsInBackground`
    started before the analysis; made here when not given.
    """
    if isinstance(out_dir, OutputDir):  # checked and opened by the caller, who closes it
        odir = out_dir
    else:
        odir = OutputDir(out_dir, force=force)
    with contextlib.ExitStack() as stack:
        if odir is not out_dir:
            stack.enter_context(odir)
        return _write(odir, verdicts, aggregator, diagnostics, counters, inputs, argv,
                      stack, digests=digests, charts_worker=charts_worker,
                      anonymize=anonymize, redact=redact, cross_check=cross_check,
                      fail_under_rate=fail_under_rate, min_handshakes=min_handshakes,
                      started=started, progress=progress or (lambda step: None))


def _write(
    odir: OutputDir,
    verdicts: list[ConnectionVerdict],
    aggregator: Aggregator | None,
    diagnostics: Diagnostics | None,
    counters: dict | None,
    inputs: list[str] | None,
    argv: list[str] | None,
    stack: contextlib.ExitStack,
    *,
    digests: InputDigests | None,
    charts_worker,
    anonymize: bool,
    redact: bool,
    cross_check: bool,
    fail_under_rate: float | None,
    min_handshakes: int,
    started: float | None,
    progress: Callable[[str], None],
) -> Bundle:
    out = odir.path
    inputs = [str(p) for p in (inputs or [])]
    if digests is None or digests.paths != inputs:
        digests = InputDigests(inputs)
    argv = list(sys.argv if argv is None else argv)
    started = started or time.time()
    store = open_store(verdicts)
    if store.lines_written and (anonymize or redact):
        raise ValueError("write_bundle: --anonymize and --redact rewrite handshakes.jsonl; "
                         "give a VerdictSpool or a list, not a LineSpool")
    if aggregator is None:
        aggregator = Aggregator()
        for v in store.verdicts():
            aggregator.add(v)
    if diagnostics is None:
        diagnostics = Diagnostics()
        for v in store.verdicts():
            diagnostics.add(v)
    counters = dict(counters or {})
    findings = diagnostics.findings()

    anon = None
    if anonymize:
        clients: set[str] = set()
        servers: set[str] = set()
        for r in store.rows():
            clients.add(split_endpoint(r.client)[0])
            servers.add(split_endpoint(r.server)[0])
        anon = Anonymizer(clients, servers)
    redactor = Redactor() if redact else None
    # What every document shows of the findings: pseudonyms and redactions applied to their
    # text, details and evidence (the originals still pick the evidence packets).
    scrubber = Scrubber(anon, redactor, store.verdicts() if redactor is not None else [])
    public = [scrubber.finding(f) for f in findings]

    # -- the cross-check first: its result is part of every document -----------------------
    if not cross_check:
        check = {"ran": False, "error": "skipped (--no-verify)"}
    elif not inputs:
        check = {"ran": False, "error": "no capture file to check"}
    else:
        from tlssniff.verify import verify_verdicts

        progress("cross-check with tshark")
        t = time.monotonic()
        result = verify_verdicts(inputs, list(store.verdicts()))  # it holds them all
        check = result.to_dict()
        check["seconds"] = round(time.monotonic() - t, 1)
        check["summary"] = result.summary()
        for c in check["contradictions"]:
            if anon is not None:
                c["client"] = anon.endpoint(c["client"])
        check["contradictions"] = scrubber(check["contradictions"])
    check.setdefault("summary", "not run: " + str(check.get("error")))

    # -- handshakes.jsonl, and the evidence chosen in the same pass ----------------------------
    chooser = _Chooser(findings, public, anon)
    ranked = aggregator.sorted_servers()
    span = ChartSpan(ranked)  # the charts' first pass, in this one (a spool read less)
    if store.lines_written:  # written as the analysis went (LineSpool): rows only here
        progress("choosing the evidence")
        for r in store.rows():
            span.add(r)
            chooser.add(r)
    else:
        progress("handshakes.jsonl")
        with odir.open("handshakes.jsonl") as f:
            for v in store.verdicts():
                r = row_of(v, v)
                span.add(r)
                if anon is None and redactor is None:
                    f.write(v.to_json_line())  # the same text, built directly
                else:
                    f.write(json.dumps(verdict_dict(v, anon, redactor),
                                       separators=(",", ":")) + "\n")
                chooser.add(r)
    chosen = chooser.chosen(store.verdict)
    from tlssniff.output.report import charts as charts_mod, html, markdown

    # The charts are drawn by a child process while this one writes the evidence, summary.json
    # and summary.md (html.ChartsInBackground).
    drawing = None
    if charts_mod.available() is None:
        if charts_worker is None:
            charts_worker = html.ChartsInBackground()
            stack.callback(charts_worker.close)
        drawing = charts_worker
        drawing.draw(html.chart_inputs(store, ranked, span, diagnostics))

    # -- evidence.pcapng -----------------------------------------------------------------------
    progress("evidence.pcapng")
    for c in chosen:
        c.comment = scrubber.text(c.comment)
    if inputs:
        collect(inputs, chosen)
    with odir.open("evidence.pcapng", "wb") as f:
        ev = write_pcapng(f, chosen, anon, redactor)

    # -- summary.json, summary.md, report.html ------------------------------------------------
    failing = fail_under(aggregator, fail_under_rate, min_handshakes) \
        if fail_under_rate is not None else []
    # The servers an error or warning names, first mention first (a dict: a list's "in" made
    # this quadratic, 1.9 s for an egress capture's thousands of named servers).
    named_servers: dict[str, None] = {}
    for f_ in public:
        if f_.severity.value in ("error", "warning"):
            named_servers.update(dict.fromkeys(f_.servers))
    problems = list(named_servers)
    ctx = _Context(
        verdicts=store, agg=aggregator, diag=diagnostics, findings=public, scrub=scrubber,
        counters=counters, inputs=digests.records(), argv=argv, started=started, anon=anon,
        redacted=redactor is not None, evidence=ev, check=check, failing=failing,
        fail_under=fail_under_rate, min_handshakes=min_handshakes, problems=problems,
        span=span, ranked_servers=ranked,
    )
    # The scrubber runs once more over each whole document: whatever quotes an address or a
    # session value (a warning, the command line) is covered too.
    progress("summary.json, summary.md, report.html")
    doc = scrubber(ctx.summary_json())
    with odir.open("summary.json") as f:  # encoded piece by piece
        write_json_document(f, doc)
    odir.write_text("summary.md", scrubber.text(markdown.render(ctx)))
    if drawing is not None:
        ctx.charts = drawing.result()
    odir.write_text("report.html", scrubber.text(html.render(ctx)))
    prov = scrubber(ctx.provenance(odir.files))
    odir.write_text("provenance.json", json.dumps(prov, indent=2) + "\n")
    return Bundle(out, odir.names(), len(store), failing, problems, ev, check, public)


def write_json_document(f, doc: dict) -> None:
    """``doc`` as JSON: one line per top-level key, and per item of a top-level list or dict
    (a server, a finding), each item by the C encoder, compact. ``json.dump(indent=2)`` used
    the pure-Python encoder: 9 s of a report on an egress capture's 20,000 servers; this is
    one line per server that ``jq`` and ``grep`` read as well."""
    f.write("{")
    for i, (key, value) in enumerate(doc.items()):
        f.write(("," if i else "") + "\n  " + json.dumps(key) + ": ")
        if isinstance(value, list) and value:
            for j, item in enumerate(value):
                f.write(("," if j else "[") + "\n    " + json.dumps(item))
            f.write("\n  ]")
        elif isinstance(value, dict) and value:
            for j, (k, item) in enumerate(value.items()):
                f.write(("," if j else "{") + "\n    " + json.dumps(k) + ": " + json.dumps(item))
            f.write("\n  }")
        else:
            f.write(json.dumps(value))
    f.write("\n}\n")


def shown_findings(ctx: _Context) -> tuple[list[tuple[int, Finding, dict]], dict[str, int]]:
    """The findings summary.md and report.html show in full, numbered as in summary.json:
    at most :data:`REPORT_FINDINGS_PER_CODE` of each code; and how many of each code are left
    out (summary.json has them all)."""
    shown: list[tuple[int, Finding, dict]] = []
    per: dict[str, int] = {}
    hidden: dict[str, int] = {}
    for n, (f, d) in enumerate(zip(ctx.findings, ctx.finding_dicts()), 1):
        if per.get(f.code, 0) >= REPORT_FINDINGS_PER_CODE:
            hidden[f.code] = hidden.get(f.code, 0) + 1
            continue
        per[f.code] = per.get(f.code, 0) + 1
        shown.append((n, f, d))
    return shown, hidden


def named(servers: list[str]) -> tuple[list[str], int]:
    """The servers a finding's heading names, and how many more it concerns."""
    return servers[:REPORT_SERVERS_PER_FINDING], max(0, len(servers) - REPORT_SERVERS_PER_FINDING)


def listed_servers(ctx: _Context) -> tuple[list[ServerStats], int]:
    """The per-server rows summary.md and report.html list: the :data:`REPORT_SERVERS`
    busiest and, beyond them, up to as many that fail --fail-under or a finding names; and how
    many servers are left out (summary.json lists every one)."""
    ranked = ctx.ranked()
    if len(ranked) <= REPORT_SERVERS:
        return ranked, 0
    flagged = {stats_label(s) for s in ctx.failing} | set(ctx.problems)
    rows = ranked[:REPORT_SERVERS] + [s for s in ranked[REPORT_SERVERS:]
                                      if stats_label(s) in flagged][:REPORT_SERVERS]
    return rows, len(ranked) - len(rows)


class ChartSpan:
    """The first pass of report.html's charts over the verdicts: the table rows' classified
    handshakes and refused offers, and the time span of their classified handshakes (the
    aggregation is complete, so the rows are known before any verdict is read again)."""

    __slots__ = ("order", "known", "classified", "refused", "t0", "tmax")

    def __init__(self, ranked: list[ServerStats]) -> None:
        self.order = list(dict.fromkeys(stats_label(s) for s in ranked))
        self.known = set(self.order)
        self.classified: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.t0: float | None = None
        self.tmax: float | None = None

    def add(self, v: Row) -> None:
        label = f"{v.server} {v.sni}" if v.sni else v.server
        if label not in self.known:
            return
        if v.handshake != "unknown":
            self.classified[label] = self.classified.get(label, 0) + 1
            if self.t0 is None or v.ts < self.t0:
                self.t0 = v.ts
            if self.tmax is None or v.ts > self.tmax:
                self.tmax = v.ts
        if v.refused:
            self.refused[label] = self.refused.get(label, 0) + 1


# -- choosing the evidence ---------------------------------------------------------------------


class _Chooser:
    """The connections evidence.pcapng shows, chosen in one pass over the verdicts: every
    connection a finding the documents show in full cites (the first one of its client and server within 2 µs of the
    cited time), then up to :data:`SAMPLE_PER_KIND` uncited ones per (server, transport,
    handshake, offered), :data:`MAX_SAMPLE` in all. Memory: the findings' citations and the
    chosen verdicts, not the verdicts seen."""

    def __init__(self, findings: list[Finding], public: list[Finding],
                 anon: Anonymizer | None) -> None:
        self.anon = anon
        # (client, server) -> [[ts, why, taken]] in finding order: matched with ``findings``,
        # the comment quoting ``public`` (the findings as the bundle shows them, scrubbed)
        self.wanted: dict[tuple[str, str], list[list]] = {}
        per_code: dict[str, int] = {}
        for f, shown in zip(findings, public):
            # The findings summary.md and report.html show in full (shown_findings): a fleet's
            # thousands of findings would otherwise put their every citation in memory.
            per_code[f.code] = per_code.get(f.code, 0) + 1
            if per_code[f.code] > REPORT_FINDINGS_PER_CODE:
                continue
            for e, e_shown in zip(f.evidence, shown.evidence):
                why = f"{f.code} ({f.severity.value})" + (f": {e_shown.why}" if e_shown.why
                                                          else "")
                self.wanted.setdefault((e.client, e.server), []).append([e.ts, why, False])
        self.cited: list[tuple[Row, list[str]]] = []
        self.sample: list[Row] = []
        self.seen: dict[tuple, int] = {}

    def add(self, v: Row) -> None:
        cites: list[str] = []
        wanted = self.wanted.get((v.client, v.server)) if self.wanted else None
        if wanted:
            for w in wanted:
                if not w[2] and abs(v.ts - w[0]) < 2e-6:
                    w[2] = True
                    if w[1] not in cites:
                        cites.append(w[1])
        if cites:
            self.cited.append((v, cites))
            return
        if len(self.sample) >= MAX_SAMPLE:
            return
        kind = (f"{v.server} {v.sni}" if v.sni else v.server, v.transport, v.handshake,
                v.offered)
        if self.seen.get(kind, 0) >= SAMPLE_PER_KIND:
            return
        self.seen[kind] = self.seen.get(kind, 0) + 1
        self.sample.append(v)

    def chosen(self, verdict: Callable[[Row], ConnectionVerdict]) -> list[Chosen]:
        """The chosen connections, each verdict fetched whole by ``verdict`` (the store's)."""
        out = []
        for row, cites in self.cited:
            v = verdict(row)
            out.append(Chosen(v, _comment(v, cites, self.anon), True))
        for row in self.sample:
            v = verdict(row)
            out.append(Chosen(v, _comment(v, [], self.anon), False))
        return out


def _comment(v: ConnectionVerdict, cites: list[str], anon: Anonymizer | None) -> str:
    client = anon.endpoint(v.client) if anon is not None else v.client
    # Captured values are clipped here and the whole comment escaped once (for_comment): no
    # NUL or control byte in it, and it fits the 16-bit pcapng option length.
    parts = [f"tlssniff: {client} -> {v.server}" + (f" sni {clip(v.sni, 256)}" if v.sni else "")
             + f": {describe(v)}",
             f"handshake={v.handshake.value} offered={v.offered.value} "
             f"version={v.version or '-'}" + (" hrr" if v.hrr else "")
             + (f" early_data={v.early_data.value}" if v.early_data.value != "none" else "")]
    if cites:
        parts.append("cited by finding " + "; ".join(clip(c, 1024) for c in cites[:8])
                     + (f" (and {len(cites) - 8} more)" if len(cites) > 8 else ""))
    else:
        parts.append("sample (not cited by a finding)")
    if v.frames:
        name = Path(v.capture).name if v.capture else "the input"
        parts.append(f"original frames {','.join(map(str, v.frames))} of {clip(name, 256)}")
    return for_comment(" | ".join(parts))


# -- what the documents share ------------------------------------------------------------------


class InputDigests:
    """The sha256 and size of each input capture for provenance.json, computed on a thread of
    their own from the moment :meth:`start` is called: ``report`` starts it before the
    analysis, so hashing (hashlib releases the GIL) runs on another core while the analysis
    reads the same files. The 400,000-connection egress capture's 2 GB cost about 1.8 s of CPU
    either way, which no longer adds to the wall time."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = [str(p) for p in paths]
        self._results: dict[str, dict] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> InputDigests:
        self._thread = threading.Thread(target=self._early, name="tlssniff-sha256", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for p in self.paths:
            if p not in self._results:
                self._results[p] = _digest(p)

    def _early(self) -> None:
        # Only regular files: a pipe read here would take its bytes from the analysis (those
        # are hashed afterwards, as they always were: what is left of them).
        for p in self.paths:
            try:
                regular = stat.S_ISREG(os.stat(p).st_mode)
            except OSError:
                regular = False
            if not regular:
                return
            self._results[p] = _digest(p)

    def records(self) -> list[dict]:
        """One record per input, in order (computed now if :meth:`start` was not called)."""
        if self._thread is not None:
            self._thread.join()
        self._run()
        return [self._results[p] for p in self.paths]


def _digest(p: str) -> dict:
    try:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return {"path": p, "name": Path(p).name, "size": os.path.getsize(p),
                "sha256": h.hexdigest()}
    except OSError as err:
        return {"path": p, "name": Path(p).name, "error": err.strerror}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


@dataclass
class _Context:
    verdicts: VerdictSpool | ListStore | LineSpool
    agg: Aggregator
    diag: Diagnostics
    findings: list
    counters: dict
    inputs: list
    argv: list
    started: float
    anon: Anonymizer | None
    redacted: bool
    evidence: EvidenceStats
    check: dict
    failing: list
    fail_under: float | None
    min_handshakes: int
    problems: list
    scrub: Scrubber
    span: ChartSpan | None = None  # the charts' first pass, when the bundle made it
    ranked_servers: list[ServerStats] | None = None
    charts: list | None = None  # (svg, notes) of each chart, when drawn before report.html

    def ranked(self) -> list[ServerStats]:
        """The aggregation's servers, busiest first: sorted once (it was sorted eleven times,
        0.1 s each for an egress capture's 50,000 rows)."""
        if self.ranked_servers is None:
            self.ranked_servers = self.agg.sorted_servers()
        return self.ranked_servers

    def client(self, endpoint: str) -> str:
        return self.anon.endpoint(endpoint) if self.anon is not None else endpoint

    def time_range(self) -> tuple[float | None, float | None]:
        first = self.counters.get("first_ts")
        last = self.counters.get("last_ts")
        if first is None and len(self.verdicts):
            first = min(v.ts for v in self.verdicts.verdicts())
            last = max(v.handshake_end_ts or v.ts for v in self.verdicts.verdicts())
        return first, last

    def counts(self) -> dict:
        c = self.counters
        ev = self.evidence
        return {
            "frames": c.get("frames"),
            "tcp_connections": c.get("tcp_connections"),
            "udp_flows": c.get("udp_flows"),
            "tls_connections": c.get("tls_connections", len(self.verdicts)),
            "handshakes_jsonl": len(self.verdicts),
            "servers": len(self.agg.servers),
            "findings": len(self.findings),
            "evidence": {"connections": ev.connections - ev.missing, "cited": ev.cited,
                         "sampled": ev.sampled, "packets": ev.packets, "not_found": ev.missing,
                         "redacted_values": ev.redacted_values},
        }

    def finding_dicts(self) -> list[dict]:
        out = []
        for f in self.findings:
            out.append(f.to_dict())  # published findings: already scrubbed
        return out

    def summary_json(self) -> dict:
        d = self.diag.to_dict()
        d.pop("findings", None)
        doc = {
            "tlssniff": __version__,
            "captures": [i["path"] for i in self.inputs],
            "counts": self.counts(),
            "failing_servers": self.problems,
            "low_hit_rate_servers": [stats_label(s) for s in self.ranked()
                                     if low_hit(s)],
            "refusing_servers": [{"server": stats_label(s), "refused": s.refused,
                                  "offered": s.offered} for s in self.ranked()
                                 if s.refused],
            "fail_under": None if self.fail_under is None else {
                "rate": self.fail_under, "min_handshakes": self.min_handshakes,
                "servers": [stats_label(s) for s in self.failing]},
            "findings": self.finding_dicts(),
            "totals": self.agg.total.to_dict(),
            "servers": [s.to_dict() for s in self.ranked()],
            "diagnostics": self.scrub(d),
            "counters": self.counters,
            "cross_check": self.check,
        }
        return doc

    def provenance(self, written: dict[str, tuple[int, str]]) -> dict:
        """``written``: name -> (size, sha256) of the files written so far."""
        first, last = self.time_range()
        files = {}
        for name in ("summary.md", "report.html", "summary.json", "handshakes.jsonl",
                     "evidence.pcapng"):
            if name in written:
                files[name] = {"size": written[name][0], "sha256": written[name][1]}
        return {
            "tlssniff": __version__,
            "command": self.argv,
            "command_line": shlex.join(self.argv),
            "working_directory": os.getcwd(),
            "analyzed_at": iso(self.started),
            "written_at": iso(time.time()),
            "python": sys.version.split()[0],
            "inputs": self.inputs,
            "capture": {"first_ts": first, "last_ts": last, "first": iso(first),
                        "last": iso(last),
                        "duration_s": None if first is None else round(last - first, 6)},
            "counts": self.counts(),
            "cross_check": {k: v for k, v in self.check.items() if k != "contradictions"}
            | {"contradictions": len(self.check.get("contradictions") or [])},
            "privacy": {
                "anonymized_clients": self.anon is not None,
                "redacted_sessions": self.redacted,
                "key": "random for this bundle, not stored" if self.anon or self.redacted
                else None,
            },
            "files": files,
        }


def fail_under_lines(servers: list[ServerStats], rate: float) -> list[str]:
    """One stderr line per server under ``--fail-under`` (what analyze, report and live say)."""
    return [f"resumption rate under {100 * rate:g}%: "
            f"{s.server + ' ' + clip(s.sni, 256) if s.sni else s.server}: "
            f"{100 * (s.resumption_rate or 0):.0f}% ({s.resumed} of {s.classified} classified, "
            f"{s.handshakes} handshakes)" for s in servers]
