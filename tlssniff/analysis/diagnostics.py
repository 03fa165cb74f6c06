"""Diagnostics: why is the resumption rate low? Findings with evidence (docs/diagnostics.md).

A consumer of verdicts, like :class:`~tlssniff.analysis.aggregate.Aggregator`: feed it every
:class:`ConnectionVerdict` (``add``, from the pipeline's ``on_verdict`` callback), then ask for
:meth:`Diagnostics.findings` and :meth:`Diagnostics.to_dict` at the end.

Session linking ties each resumption offer to the connection that created the session, where the
capture holds it: a TLS <= 1.2 session id (issued in a full handshake's ServerHello), a TLS 1.2
ticket (its NewSessionTicket travels in the clear; a ticket renewed on resumption stays linked to
the original session, whose creation time is what servers expire), and TLS 1.3 PSK identities
(their issuance is encrypted: repeated offers of one identity are linked to each other only).

Memory is bounded whatever the capture holds: at most :data:`MAX_SESSIONS` sessions (least
recently used dropped first, counted), :data:`MAX_OFFERS` offers kept per session, at most
:data:`MAX_POPULATIONS` client addresses and fingerprints in the breakdowns (beyond, counted
under ``other``) and :data:`MAX_EVIDENCE` evidence connections per list.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from tlssniff.analysis.findings import Evidence, Finding, Severity
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered

MAX_SESSIONS = 100_000
MAX_OFFERS = 256
MAX_POPULATIONS = 10_000
MAX_EVIDENCE = 4

MIN_OFFERS_DISABLED = 2  # resumption_disabled: at least this many offers, none accepted
MIN_FULL_NOT_RESUMABLE = 2  # session_not_resumable: full TLS <= 1.2 handshakes, nothing issued
MIN_CONNECTIONS_NEVER = 3  # client_never_resumes: connections of one population, no offer
# cache_timeout: session lifetimes are whole seconds (OpenSSL compares seconds; nginx, Apache
# take seconds), so no timeout refuses a session younger than 1 s: such a refusal has another
# cause (a restart, an eviction) and is not taken as evidence of a timeout.
MIN_TIMEOUT_AGE = 1.0

_TLS13_PREFIX = "TLSv1.3"
_SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
_CODE_RANK = {
    code: i
    for i, code in enumerate((
        "resumption_disabled", "session_not_resumable", "cache_timeout", "cross_server_refused",
        "ticket_keys_differ", "concurrent_refused", "no_resumption_offered",
        "client_never_resumes", "ticket_key_rotation",
    ))
}


def server_label(v: ConnectionVerdict) -> str:
    """A server as the per-server table shows it: ``ip:port`` plus the SNI asked for."""
    return f"{v.server} {v.sni}" if v.sni else v.server


def _ip(endpoint: str) -> str:
    return endpoint.rpartition(":")[0]


@dataclass(slots=True)
class Conn:
    """The part of a verdict diagnostics keeps (a few hundred bytes)."""

    client: str
    server: str  # label: ip:port + SNI
    endpoint: str  # ip:port
    sni: str | None
    ts: float
    frames: tuple[int, ...]
    capture: str | None
    start: float  # ClientHello (else first packet): the session's age is taken here
    end: float  # last handshake bytes read; [ts, end] is the span concurrency compares
    issued_at: float  # ServerHello (else first packet): when a full handshake created a session
    resumed: bool
    tls13: bool
    population: str | None
    key_name: str | None = None  # the ticket key name the client presented

    def evidence(self, why: str) -> Evidence:
        return Evidence(self.client, self.endpoint, self.ts, self.frames, self.capture, why)


@dataclass(slots=True)
class Session:
    origin: Conn | None = None  # the full handshake that created it, when captured
    offers: list[Conn] = field(default_factory=list)


@dataclass(slots=True)
class KeyName:
    first: float
    last: float
    tickets: int
    example: Conn


@dataclass(slots=True)
class ServerDiag:
    label: str
    endpoint: str
    sni: str | None
    handshakes: int = 0
    full12: int = 0  # full TLS <= 1.2 handshakes (issuance visible)
    issued_ids: int = 0
    issued_tickets: int = 0
    resumed12: int = 0
    resumed: int = 0
    offers: int = 0
    accepted: int = 0
    lifetime_hints: set = field(default_factory=set)
    key_names: dict = field(default_factory=dict)  # name -> KeyName
    key_sequence: list = field(default_factory=list)  # names in issuance order (changes only)
    issued_first: float | None = None
    issued_last: float | None = None
    full12_examples: list = field(default_factory=list)
    refused_examples: list = field(default_factory=list)
    issued_examples: list = field(default_factory=list)
    clients_issued: dict = field(default_factory=dict)  # (ip, population) -> Conn (capped)
    returned: list = field(default_factory=list)  # [issuing Conn, later Conn of that client]
    populations: dict = field(default_factory=dict)  # population -> [conns, offers, examples]


@dataclass(slots=True)
class Breakdown:
    handshakes: int = 0
    classified: int = 0
    resumed: int = 0
    offered: int = 0
    accepted: int = 0
    ja4: set = field(default_factory=set)

    def add(self, v: ConnectionVerdict) -> None:
        self.handshakes += 1
        if v.handshake is not Handshake.UNKNOWN:
            self.classified += 1
            if v.resumed:
                self.resumed += 1
            if v.offered is not Offered.NONE:
                self.offered += 1
                if v.resumed:
                    self.accepted += 1
        if v.ja4 and len(self.ja4) < 8:
            self.ja4.add(v.ja4)

    def to_dict(self) -> dict:
        return {
            "handshakes": self.handshakes,
            "classified": self.classified,
            "resumed": self.resumed,
            "resumption_rate": round(self.resumed / self.classified, 4) if self.classified else None,
            "offered": self.offered,
            "accepted": self.accepted,
            "hit_rate": round(self.accepted / self.offered, 4) if self.offered else None,
        }


class Diagnostics:
    """Collects verdicts; :meth:`findings` explains what the rates do not."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.servers: dict[str, ServerDiag] = {}
        self.by_address: dict[str, Breakdown] = {}
        self.by_population: dict[str, Breakdown] = {}
        self.other_address = Breakdown()
        self.other_population = Breakdown()
        self.sessions_dropped = 0
        self.offers_dropped = 0
        self._findings: list[Finding] | None = None
        self.concurrency: dict[str, dict] = {}
        self._ages: dict[str, tuple[list, list]] = {}
        self._cross_ages: dict[str, tuple[list, list]] = {}
        self._explained_ages: dict[str, list[float]] = {}

    # -- input -------------------------------------------------------------------------------

    def add(self, v: ConnectionVerdict) -> None:
        self._findings = None
        self._breakdowns(v)
        if v.handshake is Handshake.UNKNOWN:
            return
        label = server_label(v)
        s = self.servers.get(label)
        if s is None:
            s = self.servers[label] = ServerDiag(label, v.server, v.sni)
        s.handshakes += 1
        c = self._conn(v, label)
        tls13 = c.tls13
        if v.resumed:
            s.resumed += 1
            if not tls13:
                s.resumed12 += 1
        pop = s.populations.get(c.population)
        if pop is None and len(s.populations) < MAX_POPULATIONS:
            pop = s.populations[c.population] = [0, 0, []]
        if pop is not None:
            pop[0] += 1
            if v.offered is not Offered.NONE:
                pop[1] += 1
            if len(pop[2]) < MAX_EVIDENCE:
                pop[2].append(c)

        # What a full handshake issued (TLS <= 1.2: in the clear).
        keys = []
        if v.handshake is Handshake.FULL and not tls13:
            s.full12 += 1
            if len(s.full12_examples) < MAX_EVIDENCE:
                s.full12_examples.append(c)
            if v.issued_session_id:
                keys.append("id:" + v.issued_session_id)
                s.issued_ids += 1
            if v.issued_ticket_hash:
                keys.append("tkt:" + v.issued_ticket_hash)
                s.issued_tickets += 1
        if v.offered is Offered.NONE:
            self._came_back(s, c)
        if keys:
            if len(s.issued_examples) < MAX_EVIDENCE:
                s.issued_examples.append(c)
            who = (_ip(c.client), c.population)
            if who not in s.clients_issued and len(s.clients_issued) < MAX_POPULATIONS:
                s.clients_issued[who] = c
        if v.issued_ticket_key_name:
            self._key_name(s, v.issued_ticket_key_name, c)
            if v.ticket_lifetime:
                s.lifetime_hints.add(v.ticket_lifetime)
        if keys:
            session = Session(origin=c)
            for k in keys:
                self._store(k, session)

        # An offer: link it to its session.
        key = self._offer_key(v)
        if key is not None:
            s.offers += 1
            if v.resumed:
                s.accepted += 1
            elif len(s.refused_examples) < MAX_EVIDENCE:
                s.refused_examples.append(c)
            session = self.sessions.get(key)
            if session is None:
                session = Session()
                self._store(key, session)
            else:
                self.sessions.move_to_end(key)
            if len(session.offers) < MAX_OFFERS:
                session.offers.append(c)
            else:
                self.offers_dropped += 1
            # A ticket renewed on resumption belongs to the same session (same creation time).
            if v.resumed and v.issued_ticket_hash:
                self._store("tkt:" + v.issued_ticket_hash, session)

    def _conn(self, v: ConnectionVerdict, label: str) -> Conn:
        start = v.client_hello_ts or v.ts
        return Conn(
            client=v.client,
            server=label,
            endpoint=v.server,
            sni=v.sni,
            ts=v.ts,
            frames=tuple(v.frames),
            capture=v.capture,
            start=start,
            end=max(v.handshake_end_ts or start, start),
            issued_at=v.server_hello_ts or start,
            resumed=v.resumed,
            tls13=bool(v.version and v.version.startswith(_TLS13_PREFIX)) or v.offered is Offered.PSK,
            population=v.ja4_base,
            key_name=v.ticket_key_name if v.offered is Offered.TICKET else None,
        )

    @staticmethod
    def _offer_key(v: ConnectionVerdict) -> str | None:
        if v.offered is Offered.PSK and v.psk_identity_hash:
            return "psk:" + v.psk_identity_hash
        if v.offered is Offered.TICKET and v.ticket_hash:
            return "tkt:" + v.ticket_hash
        if v.offered is Offered.SESSION_ID and v.session_id:
            return "id:" + v.session_id
        return None

    def _store(self, key: str, session: Session) -> None:
        self.sessions[key] = session
        self.sessions.move_to_end(key)
        if len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)
            self.sessions_dropped += 1

    def _key_name(self, s: ServerDiag, name: str, c: Conn) -> None:
        k = s.key_names.get(name)
        if k is None:
            if len(s.key_names) >= MAX_POPULATIONS:
                return
            k = s.key_names[name] = KeyName(c.start, c.start, 0, c)
        k.first = min(k.first, c.start)
        k.last = max(k.last, c.start)
        k.tickets += 1
        if not s.key_sequence or s.key_sequence[-1] != name:
            if len(s.key_sequence) < 1000:
                s.key_sequence.append(name)
        s.issued_first = c.start if s.issued_first is None else min(s.issued_first, c.start)
        s.issued_last = c.start if s.issued_last is None else max(s.issued_last, c.start)

    @staticmethod
    def _came_back(s: ServerDiag, c: Conn) -> None:
        """no_resumption_offered's evidence: a client given a session returns without it."""
        first = s.clients_issued.get((_ip(c.client), c.population))
        if first is not None and len(s.returned) < MAX_EVIDENCE:
            s.returned.append((first, c))

    def _breakdowns(self, v: ConnectionVerdict) -> None:
        for table, key, other in (
            (self.by_address, _ip(v.client), self.other_address),
            (self.by_population, v.ja4_base or "-", self.other_population),
        ):
            b = table.get(key)
            if b is None:
                if len(table) >= MAX_POPULATIONS:
                    other.add(v)
                    continue
                b = table[key] = Breakdown()
            b.add(v)

    # -- analysis ----------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        if self._findings is None:
            self._findings = self._analyze()
        return self._findings

    def _analyze(self) -> list[Finding]:
        out: list[Finding] = []
        sessions = {id(s): s for s in self.sessions.values()}.values()
        concurrency, mixed_groups = self._concurrency(sessions)
        self.concurrency = concurrency
        in_mixed = {id(c) for g in mixed_groups for c in g}
        ages: dict[str, tuple[list, list]] = {}
        self._explained_ages = {}
        cross: dict[tuple[str, str], list] = {}
        for sess in sessions:
            o = sess.origin
            if o is None:
                continue
            for c in sess.offers:
                if c.server == o.server:
                    if not c.tls13 and id(c) not in in_mixed and not self._key_changed(c, o):
                        acc, ref = ages.setdefault(c.server, ([], []))
                        (acc if c.resumed else ref).append((c.start - o.issued_at, c, o))
                    elif not c.resumed:  # explained by a key change or a concurrent use
                        self._explained_ages.setdefault(c.server, []).append(
                            c.start - o.issued_at)
                elif c.sni == o.sni and c.endpoint != o.endpoint:
                    cross.setdefault((o.server, c.server), []).append((c, o))
        self._ages = ages
        self._cross_ages = {}
        for (_issuer, label), pairs in cross.items():
            acc, ref = self._cross_ages.setdefault(label, ([], []))
            for c, o in pairs:
                (acc if c.resumed else ref).append(c.start - o.issued_at)
        disabled = set()
        for s in self.servers.values():
            f = self._resumption_disabled(s)
            if f:
                disabled.add(s.label)
                out.append(f)
            elif (f := self._not_resumable(s)) is not None:
                out.append(f)
            for f in (self._no_offers(s), self._key_rotation(s)):
                if f:
                    out.append(f)
            out.extend(self._never_resumes(s))
        for label, (acc, ref) in ages.items():
            f = self._cache_timeout(self.servers[label], acc, ref)
            if f:
                out.append(f)
        for (a, b), pairs in cross.items():
            f = self._cross_server(a, b, pairs)
            if f:
                out.append(f)
        out.extend(self._keys_differ())
        out.extend(self._concurrent_refused(mixed_groups))
        out.sort(key=lambda f: (_SEVERITY_RANK[f.severity], _CODE_RANK.get(f.code, 99), f.servers))
        return out

    def _key_changed(self, c: Conn, o: Conn) -> bool:
        """A ticket refused after its server started issuing under another key name: explained
        by the key change (ticket_key_rotation), not by the session's age."""
        if c.resumed or c.key_name is None:
            return False
        s = self.servers.get(c.server)
        return s is not None and any(
            name != c.key_name and o.issued_at < k.first <= c.start
            for name, k in s.key_names.items()
        )

    def _concurrency(self, sessions) -> tuple[dict, list]:
        """Offers of one session on one server whose handshakes overlap in time, grouped."""
        stats: dict[str, dict] = {}
        mixed: list[list[Conn]] = []
        for sess in sessions:
            by_server: dict[str, list[Conn]] = {}
            for c in sess.offers:
                by_server.setdefault(c.server, []).append(c)
            for label, offers in by_server.items():
                offers.sort(key=lambda c: c.ts)
                group: list[Conn] = []
                end = None
                for c in offers + [None]:
                    if c is not None and end is not None and c.ts <= end:
                        group.append(c)
                        end = max(end, c.end)
                        continue
                    if len(group) >= 2:
                        st = stats.setdefault(label, {"groups": 0, "offers": 0, "accepted": 0})
                        st["groups"] += 1
                        st["offers"] += len(group)
                        acc = sum(g.resumed for g in group)
                        st["accepted"] += acc
                        if 0 < acc < len(group):
                            mixed.append(group)
                    if c is not None:
                        group, end = [c], c.end
        return stats, mixed

    def session_ages(self) -> dict[str, dict[str, list[float]]]:
        """Per server label, the ages (seconds from issue to offer) of the linked TLS <= 1.2
        offers cache_timeout weighs, split into ``accepted`` and ``refused``, and of the offers
        of a session another node (same SNI, another address) issued: ``cross_accepted``,
        ``cross_refused``, and the refused offers another finding explains (a ticket key
        change, concurrent use of one session): ``refused_explained`` (for charts)."""
        self.findings()
        out: dict[str, dict[str, list[float]]] = {}
        for label in sorted(set(self._ages) | set(self._cross_ages) | set(self._explained_ages)):
            acc, ref = self._ages.get(label, ([], []))
            xacc, xref = self._cross_ages.get(label, ([], []))
            out[label] = {"accepted": sorted(t[0] for t in acc),
                          "refused": sorted(t[0] for t in ref),
                          "cross_accepted": sorted(xacc), "cross_refused": sorted(xref),
                          "refused_explained": sorted(self._explained_ages.get(label, []))}
        return out

    # -- one function per finding ------------------------------------------------------------

    def _resumption_disabled(self, s: ServerDiag) -> Finding | None:
        if s.offers < MIN_OFFERS_DISABLED or s.accepted or s.resumed:
            return None
        issued = {"session_id": s.issued_ids, "ticket": s.issued_tickets, "full_tls12": s.full12}
        if s.full12 and not (s.issued_ids or s.issued_tickets):
            hint = "and its TLS <= 1.2 full handshakes issue neither a session id nor a ticket"
        elif s.issued_ids or s.issued_tickets:
            hint = "although it issues session ids or tickets (cache too small, timeout shorter " \
                   "than the clients' reuse, or keys that change per process or restart)"
        else:
            hint = "(TLS 1.3: its tickets, sent encrypted, are never honoured)"
        return Finding(
            code="resumption_disabled",
            severity=Severity.ERROR,
            servers=[s.label],
            message=(
                f"{s.offers} resumption offers, none accepted: resumption is off on this server "
                f"{hint}. nginx: ssl_session_cache (shared:NAME:SIZE) and ssl_session_tickets; "
                "Apache: SSLSessionCache and SSLSessionTickets."
            ),
            details={"offers": s.offers, "accepted": 0, "issued": issued},
            evidence=[c.evidence("offer refused") for c in s.refused_examples],
        )

    def _not_resumable(self, s: ServerDiag) -> Finding | None:
        if s.full12 < MIN_FULL_NOT_RESUMABLE or s.issued_ids or s.issued_tickets or s.resumed12:
            return None
        return Finding(
            code="session_not_resumable",
            severity=Severity.WARNING,
            servers=[s.label],
            message=(
                f"{s.full12} full TLS <= 1.2 handshakes, none issued a session id or a ticket: "
                "clients have nothing to resume with. nginx: ssl_session_cache shared:NAME:SIZE "
                "or ssl_session_tickets on; Apache: SSLSessionCache, SSLSessionTickets."
            ),
            details={"full_handshakes": s.full12},
            evidence=[c.evidence("full handshake, no session id, no ticket")
                      for c in s.full12_examples],
        )

    def _no_offers(self, s: ServerDiag) -> Finding | None:
        if s.offers or not (s.issued_ids or s.issued_tickets) or not s.returned:
            return None
        ev = []
        for first, later in s.returned[:2]:
            ev.append(first.evidence("session issued to this client"))
            ev.append(later.evidence("same client back, presented nothing"))
        return Finding(
            code="no_resumption_offered",
            severity=Severity.WARNING,
            servers=[s.label],
            message=(
                f"The server issues sessions ({s.issued_ids} session ids, {s.issued_tickets} "
                "tickets) but no client ever presents one, although clients come back: the "
                "clients keep no session cache (a client-side setting), or a proxy in between "
                "terminates TLS."
            ),
            details={"issued_session_ids": s.issued_ids, "issued_tickets": s.issued_tickets,
                     "returning_clients": len(s.returned)},
            evidence=ev,
        )

    def _never_resumes(self, s: ServerDiag) -> list[Finding]:
        if not s.resumed:
            return []
        out = []
        for pop, (conns, offers, examples) in s.populations.items():
            if pop is None or offers or conns < MIN_CONNECTIONS_NEVER:
                continue
            ja4s = sorted({e.population for e in examples})
            out.append(Finding(
                code="client_never_resumes",
                severity=Severity.INFO,
                servers=[s.label],
                message=(
                    f"One client population (fingerprint {pop}) made {conns} connections and "
                    "never presented a session, while others resume on this server: the low "
                    "rate is that client's doing (no session cache, or a new process per "
                    "connection), not the server's."
                ),
                details={"population": pop, "connections": conns, "offers": 0,
                         "clients": sorted({_ip(e.client) for e in examples}), "ja4_base": ja4s},
                evidence=[e.evidence("no session presented") for e in examples],
            ))
        return out

    def _key_rotation(self, s: ServerDiag) -> Finding | None:
        if len(s.key_names) < 2:
            return None
        names = sorted(s.key_names.items(), key=lambda kv: kv[1].first)
        seq = s.key_sequence
        alternating = len(seq) > len(set(seq))
        listed = [{"name": n, "first_ts": round(k.first, 6), "last_ts": round(k.last, 6),
                   "tickets": k.tickets} for n, k in names]
        if alternating:
            why = ("the names alternate, so several processes or nodes behind this address "
                   "encrypt tickets with different keys and refuse each other's: share one "
                   "key (nginx ssl_session_ticket_key, Apache SSLSessionTicketKeyFile)")
        else:
            why = ("a rotation or a restart; tickets issued under an older name are refused "
                   "unless the old key is still configured for decryption (nginx: keep it "
                   "as a second ssl_session_ticket_key; Apache: SSLSessionTicketKeyFile)")
        return Finding(
            code="ticket_key_rotation",
            severity=Severity.WARNING if alternating else Severity.INFO,
            servers=[s.label],
            message=f"Tickets were issued under {len(names)} key names: {why}.",
            details={"key_names": listed, "alternating": alternating},
            evidence=[k.example.evidence(f"ticket issued under key name {n}") for n, k in names][
                :MAX_EVIDENCE],
        )

    def _cache_timeout(self, s: ServerDiag, acc: list, ref: list) -> Finding | None:
        if not acc or not ref:
            return None
        a_age, a_conn, a_origin = max(acc, key=lambda t: t[0])
        r_age, r_conn, r_origin = min(ref, key=lambda t: t[0])
        if r_age <= a_age or r_age < MIN_TIMEOUT_AGE:
            return None  # refusals are not explained by age alone
        hints = sorted(h for h in s.lifetime_hints if h)
        details = {"accepted_max_age": round(a_age, 3), "refused_min_age": round(r_age, 3),
                   "accepted": len(acc), "refused": len(ref),
                   "lifetime_hint": hints[-1] if hints else None}
        msg = (f"Sessions are accepted up to {a_age:.1f} s old and refused from {r_age:.1f} s "
               f"old: the server keeps sessions between {a_age:.0f} and {r_age:.0f} s.")
        if hints:
            h = hints[-1]
            msg += f" Its tickets announce a lifetime of {h} s"
            msg += " (consistent)." if a_age <= h + 0.5 and r_age >= h - 0.5 else \
                " - the announced and the effective lifetime disagree."
        msg += (" If clients come back later than that, raise nginx ssl_session_timeout "
                "(Apache SSLSessionCacheTimeout), and size ssl_session_cache / SSLSessionCache "
                "for the sessions it must hold that long.")
        return Finding(
            code="cache_timeout",
            severity=Severity.WARNING,
            servers=[s.label],
            message=msg,
            details=details,
            evidence=[e for e in (
                a_origin.evidence("session created"),
                a_conn.evidence(f"offered at age {a_age:.1f} s, accepted"),
                r_origin.evidence("session created") if r_origin is not a_origin else None,
                r_conn.evidence(f"offered at age {r_age:.1f} s, refused"),
            ) if e is not None],
        )

    def _cross_server(self, a: str, b: str, pairs: list) -> Finding | None:
        accepted = sum(c.resumed for c, _ in pairs)
        refused = len(pairs) - accepted
        target = self.servers.get(b)
        if not refused or accepted or target is None or not target.accepted:
            return None
        ev = []
        for c, o in pairs[:2]:
            ev.append(o.evidence(f"session issued by {a}"))
            ev.append(c.evidence(f"offered to {b}, refused"))
        return Finding(
            code="cross_server_refused",
            severity=Severity.WARNING,
            servers=[a, b],
            message=(
                f"Sessions issued by {a} are refused by {b} (same name), which accepts its own: "
                "the nodes share neither session cache nor ticket keys. Share the ticket key "
                "(nginx ssl_session_ticket_key, the same file on every node; Apache "
                "SSLSessionTicketKeyFile) or a session cache (Apache SSLSessionCache memcache:), "
                "or keep clients on one node."
            ),
            details={"from": a, "to": b, "offers": len(pairs), "accepted": 0},
            evidence=ev,
        )

    def _keys_differ(self) -> list[Finding]:
        by_sni: dict[str, list[ServerDiag]] = {}
        for s in self.servers.values():
            if s.sni and s.key_names:
                by_sni.setdefault(s.sni, []).append(s)
        out = []
        for sni, group in sorted(by_sni.items()):
            involved: dict[str, ServerDiag] = {}
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    if a.endpoint == b.endpoint or set(a.key_names) & set(b.key_names):
                        continue
                    if a.issued_last < b.issued_first or b.issued_last < a.issued_first:
                        continue  # not at the same time: could be one key rotated
                    involved[a.label] = a
                    involved[b.label] = b
            if not involved:
                continue
            servers = sorted(involved)
            out.append(Finding(
                code="ticket_keys_differ",
                severity=Severity.WARNING,
                servers=servers,
                message=(
                    f"Servers answering for {sni} issue tickets under different key names at "
                    "the same time: a ticket from one is refused by the others. Give every node "
                    "the same key (nginx ssl_session_ticket_key; Apache SSLSessionTicketKeyFile) "
                    "and rotate it everywhere at once."
                ),
                details={"servers": servers,
                         "key_names": {k: sorted(involved[k].key_names) for k in servers}},
                evidence=[next(iter(involved[k].key_names.values())).example.evidence(
                    "ticket issued under key name " + next(iter(involved[k].key_names)))
                    for k in servers][:MAX_EVIDENCE],
            ))
        return out

    def _concurrent_refused(self, groups: list[list[Conn]]) -> list[Finding]:
        per: dict[str, list] = {}
        for g in groups:
            per.setdefault(g[0].server, []).append(g)
        out = []
        for label, gs in sorted(per.items()):
            offers = sum(len(g) for g in gs)
            accepted = sum(c.resumed for g in gs for c in g)
            ev = []
            for g in gs[:1]:
                ev += [c.evidence("accepted") for c in g if c.resumed][:1]
                ev += [c.evidence("same session at the same time, refused")
                       for c in g if not c.resumed][:MAX_EVIDENCE - 1]
            tls13 = any(c.tls13 for g in gs for c in g)
            out.append(Finding(
                code="concurrent_refused",
                severity=Severity.WARNING,
                servers=[label],
                message=(
                    f"{offers} offers of the same session(s) on overlapping connections, "
                    f"{accepted} accepted: the server honours a session once at a time"
                    + (" (TLS 1.3 tickets are single-use by design, RFC 8446 §C.4: clients "
                       "should not race parallel connections with one ticket; servers issue "
                       "several tickets per connection for that)" if tls13 else
                       " (a session cache that locks or invalidates on use)")
                    + ". nginx: ssl_session_cache shared; Apache: SSLSessionCache shmcb."
                ),
                details={"offers": offers, "accepted": accepted, "groups": len(gs)},
                evidence=ev,
            ))
        return out

    # -- output ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        findings = self.findings()
        return {
            "findings": [f.to_dict() for f in findings],
            "concurrency": {k: v for k, v in sorted(self.concurrency.items())},
            "clients": {
                "by_address": _table(self.by_address, self.other_address),
                "by_ja4": _table(self.by_population, self.other_population, ja4=True),
            },
            "limits": {"sessions": len(self.sessions), "max_sessions": self.max_sessions,
                       "sessions_dropped": self.sessions_dropped,
                       "offers_dropped": self.offers_dropped},
        }


def _table(table: dict[str, Breakdown], other: Breakdown, ja4: bool = False) -> list[dict]:
    rows = []
    for key, b in sorted(table.items(), key=lambda kv: (-kv[1].handshakes, kv[0])):
        row = {("ja4_base" if ja4 else "client"): key, **b.to_dict()}
        if ja4:
            row["ja4"] = sorted(b.ja4)
        rows.append(row)
    if other.handshakes:
        rows.append({("ja4_base" if ja4 else "client"): "other", **other.to_dict()})
    return rows
