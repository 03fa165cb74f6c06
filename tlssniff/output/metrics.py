"""Prometheus metrics of ``tlssniff live --metrics HOST:PORT`` (docs/monitoring.md).

:class:`MetricsSink` is a consumer of verdicts like the aggregator: the capture loop hands it
every :class:`~tlssniff.analysis.verdict.ConnectionVerdict` (:meth:`MetricsSink.add`) and, about
once a second, the capture's health (:meth:`MetricsSink.tick`). ``prometheus_client`` writes the
exposition (:meth:`MetricsSink.serve` starts its HTTP server in a daemon thread); the sink is a
custom collector, so a scrape reads the sink's counts under one lock and nothing else.

Wire values are data. The only wire bytes in the exposition are label values (``server`` is an
address, ``sni`` is what the client sent): each goes through :func:`label_value` (control and
other invisible characters written as ``\\xNN``/``\\uNNNN``, a backslash doubled, at most
:data:`LABEL_MAX` characters), then through the client library's own escaping. Metric names
and HELP texts are constants of this module.

Cardinality is bounded whatever the traffic: a *pair* is an ``ip:port`` plus the SNI asked for
(a row of the per-server table). The ``top`` busiest pairs get their own label values, every
other pair counts under ``server="other", sni="other"``. While fewer than ``top`` pairs were
seen, each new pair gets its labels at its first handshake (so small deployments have exact
per-server counts from the start). Once the slots are full, every :data:`RESELECT_SECONDS` the
busiest pairs take over: a pair counted under ``other`` replaces the quietest labelled pair when
its recent handshakes are more than twice as many (handshakes counted per interval, halved at
every reselection, so the ranking follows the present). A demoted pair's series disappear
(Prometheus marks them stale) and its later handshakes count under ``other``; a promoted pair's
series start at 0. At most ``TRACK_FACTOR * top`` unlabelled pairs are remembered as candidates
(the quietest forgotten first), so memory is bounded too.

Findings (``tlssniff_findings``) hold *now*. Two
:class:`~tlssniff.analysis.diagnostics.Diagnostics` (*panes*) are fed every verdict, through
their public entry points (``add``, ``findings``) only; a new pane starts every ``window / 2``
seconds, or every ``MAX_WINDOW_VERDICTS / 2`` verdicts if that comes first, and the oldest of
three is dropped. The findings, recomputed at most every :data:`EVAL_SECONDS`, are the older
pane's: the verdicts of the last half to whole window (at most :data:`MAX_WINDOW_VERDICTS`). A
finding leaves the gauge at most one window after the last connection that proved it. Fed
incrementally, the window costs two ``Diagnostics.add`` per verdict instead of a recomputation
over all its verdicts (which took 1.8-2.4 s per 20,000 verdicts on the project's loaded 2-core
machine, a pause the capture loop cannot afford); the findings themselves took 46 ms.
"""

from __future__ import annotations

import hashlib
import threading
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tlssniff.analysis.diagnostics import Diagnostics
from tlssniff.analysis.verdict import (
    RESUMED_HANDSHAKES,
    ConnectionVerdict,
    Handshake,
    Offered,
)

__all__ = [
    "DEFAULT_TOP",
    "DEFAULT_WINDOW",
    "HELP_TEXTS",
    "EVAL_SECONDS",
    "LABEL_MAX",
    "MAX_TOP",
    "MAX_WINDOW",
    "MAX_WINDOW_VERDICTS",
    "OTHER",
    "MetricsSink",
    "label_value",
    "parse_listen",
]

DEFAULT_TOP = 100  # labelled (server, sni) pairs (--metrics-top)
MAX_TOP = 10_000
DEFAULT_WINDOW = 600.0  # --metrics-window: findings over the last half to whole of it
MAX_WINDOW = 86_400.0
MAX_WINDOW_VERDICTS = 20_000  # the findings' bound in verdicts, whatever the traffic
EVAL_SECONDS = 10.0  # findings recomputed at most this often
RESELECT_SECONDS = 60.0  # the top-N of pairs re-ranked this often once all slots are taken
TRACK_FACTOR = 10  # candidates remembered for promotion: TRACK_FACTOR * top
LABEL_MAX = 128  # characters of a label value; longer ones are cut and tagged with a hash
OTHER = "other"

_HANDSHAKES = tuple(h.value for h in Handshake)  # full, session_id, ticket, psk, unknown
_OFFERED = tuple(o.value for o in Offered if o is not Offered.NONE)
_OUTCOMES = ("accepted", "refused")
_HS_INDEX = {h: i for i, h in enumerate(Handshake)}
_OFFER_INDEX = {o: i for i, o in enumerate(o for o in Offered if o is not Offered.NONE)}


def label_value(raw: str | None) -> str:
    """A wire value made safe to hand to the exposition as a label value.

    ``None`` (no SNI) is ``""``. Characters that are not visible (Unicode categories C and Z,
    the space excepted) are written as ``\\xNN``/``\\uNNNN``, a backslash as ``\\\\``, so the
    value shows what was sent and cannot act on a terminal that displays a scrape; beyond
    :data:`LABEL_MAX` characters the value is cut and ends with ``...`` and the first 8 hex
    digits of the SHA-256 of the whole value (distinct long names stay distinct)."""
    if not raw:
        return ""
    if raw.isascii() and raw.isprintable() and "\\" not in raw:
        out = raw
    else:
        parts = []
        for ch in raw:
            if ch == "\\":
                parts.append("\\\\")
            elif ch != " " and unicodedata.category(ch)[0] in "CZ":
                o = ord(ch)
                parts.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000
                             else f"\\U{o:08x}")
            else:
                parts.append(ch)
        out = "".join(parts)
    if len(out) > LABEL_MAX:
        digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        out = out[:LABEL_MAX - 11] + "..." + digest
    return out


def parse_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9815`` for IPv6) as ``(host, port)``; ValueError if malformed."""
    host, sep, port_s = spec.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9815 or [::1]:9815")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets: [::1]:9815")
    port = int(port_s)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return host, port


@dataclass(slots=True)
class _Pair:
    """The counts of one labelled (server, sni) pair, or of ``other``."""

    server: str  # label values (made by label_value)
    sni: str
    handshakes: list[int] = field(default_factory=lambda: [0] * len(_HANDSHAKES))
    # offers[mechanism][0 accepted, 1 refused]
    offers: list[list[int]] = field(default_factory=lambda: [[0, 0] for _ in _OFFERED])
    recent: float = 0.0  # handshakes since the last reselection (halved at each)


@dataclass(slots=True)
class _Health:
    frames: int = 0
    received: int = 0
    dropped: int = 0
    if_dropped: int = 0
    tcp_connections: int = 0
    tls_connections: int = 0
    not_tls_connections: int = 0
    midstream_tls: int = 0
    evicted_flows: int = 0
    evicted_memory: int = 0
    gaps: int = 0
    in_handshake: int = 0
    pending_bytes: int = 0
    pending_limit: int = 0


class MetricsSink(Collector):
    """Verdicts in (:meth:`add`), capture health in (:meth:`tick`), Prometheus metrics out.

    ``add`` and ``tick`` are called by the capture loop's thread; the exposition is collected
    by the HTTP server's threads: one lock guards the counts."""

    def __init__(self, top: int = DEFAULT_TOP, window: float = DEFAULT_WINDOW,
                 max_window_verdicts: int = MAX_WINDOW_VERDICTS, *,
                 clock=time.monotonic, process: bool = True) -> None:
        if not 1 <= top <= MAX_TOP:
            raise ValueError(f"top must be between 1 and {MAX_TOP}")
        if not 0 < window <= MAX_WINDOW:
            raise ValueError(f"window must be between 1 s and {MAX_WINDOW:.0f} s")
        self.top = top
        self.window = window
        self.max_window_verdicts = max_window_verdicts
        self._clock = clock
        self._lock = threading.Lock()
        self._pairs: dict[tuple[str, str | None], _Pair] = {}
        self._other = _Pair(OTHER, OTHER)
        self._candidates: dict[tuple[str, str | None], float] = {}
        self._label_keys: set[tuple[str, str]] = set()  # label values in use (distinctness)
        self._verdicts = 0
        self._health = _Health()
        started = clock()
        self._next_reselect = started + RESELECT_SECONDS
        # Two diagnostics fed every verdict, started window/2 apart (or max_window_verdicts/2
        # verdicts apart); the findings are the older one's. Touched by the capture loop only.
        self._panes: list[_Pane] = [_Pane(started)]
        self._next_eval = started + EVAL_SECONDS
        self._dirty = False
        # (code, severity, server label) -> number of findings naming that server
        self._findings: dict[tuple[str, str, str], int] = {}
        self._last_eval: float | None = None  # epoch seconds of the last evaluation
        self._window_verdicts = 0  # verdicts and seconds the findings were computed over
        self._window_covered = 0.0
        self._errors = 0  # diagnostics that raised (see _diagnostics_failed)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        if process:
            from prometheus_client import ProcessCollector

            ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, CPU, fds
        self._server: Any = None  # the WSGI server of start_http_server
        self._thread: threading.Thread | None = None

    # -- input (capture loop) ----------------------------------------------------------------

    def add(self, v: ConnectionVerdict) -> None:
        key = (v.server, v.sni)
        with self._lock:
            self._verdicts += 1
            pair = self._pairs.get(key)
            if pair is None:
                if len(self._pairs) < self.top:
                    pair = self._promote(key)
                else:
                    pair = self._other
                    cands = self._candidates
                    cands[key] = cands.get(key, 0.0) + 1.0
                    if len(cands) > 2 * TRACK_FACTOR * self.top:
                        self._prune_candidates()
            pair.recent += 1.0 if pair is not self._other else 0.0
            h = v.handshake
            pair.handshakes[_HS_INDEX[h]] += 1
            if h is not Handshake.UNKNOWN and v.offered is not Offered.NONE:
                pair.offers[_OFFER_INDEX[v.offered]][0 if h in RESUMED_HANDSHAKES else 1] += 1
        self._dirty = True
        try:
            for pane in self._panes:
                pane.diag.add(v)
                pane.verdicts += 1
        except Exception:  # noqa: BLE001 - a diagnostics bug must not stop the capture
            self._diagnostics_failed()
        if self._panes[-1].verdicts >= self.max_window_verdicts // 2:
            self._rotate(self._clock())

    def _diagnostics_failed(self) -> None:
        """The diagnostics raised: counted (tlssniff_findings_errors_total), and the window
        starts afresh rather than the capture stopping."""
        self._errors += 1
        self._panes = [_Pane(self._clock())]

    def tick(self, counters, kernel, active: int = 0, pending_bytes: int = 0,
             pending_limit: int = 0) -> None:
        """The capture's health (the analyzer's :class:`Counters`, the kernel's
        :class:`KernelStats`, connections in handshake, bytes pending), and the periodic work:
        the top-N reselection and the findings of the window."""
        h = _Health(
            frames=counters.frames, received=kernel.received, dropped=kernel.dropped,
            if_dropped=kernel.if_dropped, tcp_connections=counters.tcp_connections,
            tls_connections=counters.tls_connections,
            not_tls_connections=counters.not_tls_connections,
            midstream_tls=counters.midstream_tls,
            evicted_flows=counters.evicted - counters.evicted_memory,
            evicted_memory=counters.evicted_memory, gaps=counters.gaps, in_handshake=active,
            pending_bytes=pending_bytes, pending_limit=pending_limit,
        )
        now = self._clock()
        with self._lock:
            self._health = h
            if now >= self._next_reselect:
                self._next_reselect = now + RESELECT_SECONDS
                self._reselect()
        self.evaluate(now)

    def _rotate(self, now: float) -> None:
        """A new pane starts; the oldest of three goes (with the findings only it proved)."""
        self._panes = [*self._panes[-1:], _Pane(now)]
        self._dirty = True

    def evaluate(self, now: float | None = None, force: bool = False) -> None:
        """Recompute the findings of the window (at most every :data:`EVAL_SECONDS`, and only
        when it changed, unless ``force``). The diagnostics run outside the lock: a scrape
        meanwhile sees the previous findings."""
        now = self._clock() if now is None else now
        if now - self._panes[-1].started >= self.window / 2:
            self._rotate(now)
        if not force and (now < self._next_eval or not self._dirty):
            return
        self._next_eval = now + EVAL_SECONDS
        self._dirty = False
        pane = self._panes[0]
        try:
            findings = _findings(pane.diag)
        except Exception:  # noqa: BLE001 - see add()
            self._diagnostics_failed()
            findings = []
        gauge: dict[tuple[str, str, str], int] = {}
        with self._lock:
            servers = {k[0]: p.server for k, p in self._pairs.items()}
            for code, severity, names in findings:
                for address in names:
                    key = (code, severity, servers.get(address, OTHER))
                    gauge[key] = gauge.get(key, 0) + 1
            self._findings = gauge
            self._last_eval = time.time()
            self._window_verdicts = pane.verdicts
            self._window_covered = now - pane.started

    # -- top-N -------------------------------------------------------------------------------

    def _promote(self, key: tuple[str, str | None]) -> _Pair:
        server, sni = label_value(key[0]), label_value(key[1])
        if server == OTHER:  # an address is never "other"; a cut one could only look like it
            server = "other?"
        labels = (server, sni)
        n = 2
        while labels in self._label_keys:  # two raw values made the same label value
            labels = (server, f"{sni}#{n}")
            n += 1
        self._label_keys.add(labels)
        pair = self._pairs[key] = _Pair(*labels)
        return pair

    def _prune_candidates(self) -> None:
        keep = sorted(self._candidates.items(), key=lambda kv: -kv[1])[:TRACK_FACTOR * self.top]
        self._candidates = dict(keep)

    def _reselect(self) -> None:
        """Candidates with more than twice the recent handshakes of the quietest labelled
        pairs take their places; then every recent count is halved."""
        if len(self._pairs) >= self.top and self._candidates:
            rising = sorted(self._candidates.items(), key=lambda kv: -kv[1])
            quiet = sorted(self._pairs.items(), key=lambda kv: kv[1].recent)
            for (ckey, score), (pkey, pair) in zip(rising, quiet):
                if score <= 2 * pair.recent:
                    break
                del self._pairs[pkey]
                self._label_keys.discard((pair.server, pair.sni))
                self._candidates[pkey] = pair.recent
                del self._candidates[ckey]
                self._promote(ckey).recent = score
        for pair in self._pairs.values():
            pair.recent /= 2
        self._candidates = {k: s / 2 for k, s in self._candidates.items() if s >= 0.5}

    # -- HTTP --------------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread (OSError if it cannot
        listen)."""
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)

    @property
    def port(self) -> int | None:
        return None if self._server is None else self._server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def exposition(self, accept: str = "text/plain") -> bytes:
        """What a scrape of ``/metrics`` with this Accept header returns (the Prometheus text
        format by default; Prometheus itself asks for OpenMetrics)."""
        from prometheus_client.exposition import choose_encoder

        encoder, _ = choose_encoder(accept)
        return encoder(self.registry)

    def warm_up(self) -> None:
        """Build every answer a scrape may get (both formats, gzip) once, while the process
        may still read every file: the modules they need are imported now (see
        run/live.py: privileges drop after the capture is open)."""
        import gzip

        self.evaluate(force=True)
        for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
            gzip.compress(self.exposition(accept))

    # -- exposition --------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            pairs = [*self._pairs.values(), self._other]
            rows_hs = [(p.server, p.sni, list(p.handshakes)) for p in pairs]
            rows_of = [(p.server, p.sni, [list(x) for x in p.offers]) for p in pairs]
            health = self._health
            findings = dict(self._findings)
            window_len = self._window_verdicts
            window_covered = self._window_covered
            last_eval = self._last_eval
            labelled = len(self._pairs)
            candidates = len(self._candidates)
            verdicts = self._verdicts
            errors = self._errors
        hs = _family(CounterMetricFamily, "tlssniff_handshakes", ["server", "sni", "handshake"])
        for server, sni, counts in rows_hs:
            for name, n in zip(_HANDSHAKES, counts):
                hs.add_metric([server, sni, name], n)
        yield hs
        offers = _family(CounterMetricFamily, "tlssniff_resumption_offers",
                         ["server", "sni", "offered", "outcome"])
        for server, sni, by_mech in rows_of:
            for mech, (acc, ref) in zip(_OFFERED, by_mech):
                offers.add_metric([server, sni, mech, "accepted"], acc)
                offers.add_metric([server, sni, mech, "refused"], ref)
        yield offers
        fam = _family(GaugeMetricFamily, "tlssniff_findings", ["code", "severity", "server"])
        for (code, severity, server), n in sorted(findings.items()):
            fam.add_metric([code, severity, server], n)
        yield fam
        yield _family(CounterMetricFamily, "tlssniff_verdicts", value=verdicts)
        yield _family(CounterMetricFamily, "tlssniff_frames", value=health.frames)
        yield _family(CounterMetricFamily, "tlssniff_kernel_received_frames",
                      value=health.received)
        yield _family(CounterMetricFamily, "tlssniff_kernel_dropped_frames",
                      value=health.dropped)
        yield _family(CounterMetricFamily, "tlssniff_interface_dropped_frames",
                      value=health.if_dropped)
        conns = _family(CounterMetricFamily, "tlssniff_connections", ["kind"])
        for kind, n in (("tcp", health.tcp_connections), ("tls", health.tls_connections),
                        ("not_tls", health.not_tls_connections),
                        ("midstream", health.midstream_tls)):
            conns.add_metric([kind], n)
        yield conns
        ev = _family(CounterMetricFamily, "tlssniff_evicted_connections", ["reason"])
        ev.add_metric(["max_flows"], health.evicted_flows)
        ev.add_metric(["pending_memory"], health.evicted_memory)
        yield ev
        yield _family(CounterMetricFamily, "tlssniff_gaps", value=health.gaps)
        yield _family(GaugeMetricFamily, "tlssniff_connections_in_handshake",
                      value=health.in_handshake)
        yield _family(GaugeMetricFamily, "tlssniff_pending_memory_bytes",
                      value=health.pending_bytes)
        yield _family(GaugeMetricFamily, "tlssniff_pending_memory_limit_bytes",
                      value=health.pending_limit)
        yield _family(GaugeMetricFamily, "tlssniff_findings_window_seconds", value=self.window)
        yield _family(GaugeMetricFamily, "tlssniff_findings_window_verdicts", value=window_len)
        yield _family(GaugeMetricFamily, "tlssniff_findings_window_covered_seconds",
                      value=window_covered)
        if last_eval is not None:
            yield _family(GaugeMetricFamily, "tlssniff_findings_evaluated_timestamp_seconds",
                          value=last_eval)
        yield _family(CounterMetricFamily, "tlssniff_findings_errors", value=errors)
        yield _family(GaugeMetricFamily, "tlssniff_metrics_top_limit", value=self.top)
        yield _family(GaugeMetricFamily, "tlssniff_metrics_top_pairs", value=labelled)
        yield _family(GaugeMetricFamily, "tlssniff_metrics_other_pairs", value=candidates)


#: Every metric family of the sink and its HELP text (constants: no wire byte goes into HELP).
HELP_TEXTS: dict[str, str] = {
    "tlssniff_handshakes": "TLS connections by handshake type (full, session_id, ticket, psk, "
    "unknown), per server address and SNI (top-N pairs, the rest as other).",
    "tlssniff_resumption_offers": "Classified TLS connections whose client offered a session "
    "id, ticket or PSK, by what the server did with it.",
    "tlssniff_findings": "Diagnostics findings that hold over the sliding window, per code, "
    "severity and server address named by the finding.",
    "tlssniff_verdicts": "TLS connections decided (every verdict).",
    "tlssniff_frames": "Frames read from the capture and analyzed.",
    "tlssniff_kernel_received_frames": "Frames that passed the capture filter in the kernel, "
    "dropped ones included.",
    "tlssniff_kernel_dropped_frames": "Frames the kernel capture buffer had no room for: "
    "handshakes may be missing or unknown.",
    "tlssniff_interface_dropped_frames": "Frames dropped by the interface or driver, as the OS "
    "reports it (libpcap backend).",
    "tlssniff_connections": "Connections seen, by kind (tcp, tls, not_tls, midstream).",
    "tlssniff_evicted_connections": "Connections dropped before their verdict for a limit "
    "(max_flows: --max-flows; pending_memory: the pending-memory budget).",
    "tlssniff_gaps": "Connections with bytes missing inside the handshake.",
    "tlssniff_connections_in_handshake": "Connections tracked whose verdict is not decided "
    "yet.",
    "tlssniff_pending_memory_bytes": "Bytes buffered for connections without a verdict "
    "(charged to the pending-memory budget).",
    "tlssniff_pending_memory_limit_bytes": "The pending-memory budget.",
    "tlssniff_findings_window_seconds": "The window setting (--metrics-window): findings are "
    "computed over the last half to whole window.",
    "tlssniff_findings_window_verdicts": "Verdicts the findings were last computed over.",
    "tlssniff_findings_window_covered_seconds": "Seconds of verdicts the findings were last "
    "computed over.",
    "tlssniff_findings_evaluated_timestamp_seconds": "When the findings were last computed "
    "(Unix time).",
    "tlssniff_findings_errors": "Times the diagnostics failed on a verdict; the findings' "
    "window then started afresh (a bug to report).",
    "tlssniff_metrics_top_limit": "Pairs (server, SNI) with their own labels at most "
    "(--metrics-top); the rest count under other.",
    "tlssniff_metrics_top_pairs": "Pairs (server, SNI) with their own labels now.",
    "tlssniff_metrics_other_pairs": "Pairs counted under other and remembered as candidates "
    "for a label (bounded).",
}


def _family(cls, name: str, labels: list[str] | None = None, value: float | None = None):
    if labels is not None:
        return cls(name, HELP_TEXTS[name], labels=labels)
    return cls(name, HELP_TEXTS[name], value=value)


@dataclass(slots=True)
class _Pane:
    """One diagnostics of the window, fed every verdict since ``started``."""

    started: float
    verdicts: int = 0
    diag: Diagnostics = field(default_factory=Diagnostics)


def _findings(diag: Diagnostics) -> list[tuple[str, str, set[str]]]:
    """``(code, severity, server addresses)`` of the diagnostics' findings (public entry point
    ``findings`` only)."""
    out = []
    for f in diag.findings():
        # Finding.servers: "ip:port", with " sni" where the finding is per name
        addresses = {s.split(" ", 1)[0] for s in f.servers}
        out.append((f.code, f.severity.value, addresses))
    return out
