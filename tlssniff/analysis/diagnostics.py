"""Diagnostics: why is the resumption rate low? Findings with evidence (docs/diagnostics.md).

A consumer of verdicts, like :class:`~tlssniff.analysis.aggregate.Aggregator`: feed it every
:class:`ConnectionVerdict` (``add``, from the pipeline's ``on_verdict`` callback; or what it
reads of each, :func:`diag_record`, to ``add_record``), then ask for
:meth:`Diagnostics.findings` and :meth:`Diagnostics.to_dict` at the end.

The findings are a function of the *set* of verdicts, not of the order they arrive in: captures
split per node, given in any order, or verdict files read back, give the same findings. Every
piece of state is order-free (counts, first/last times, the earliest connections by time as
evidence), and session linking joins an offer and its issuing connection whichever comes first.

Session linking ties each resumption offer to the connection that created the session, where the
capture holds it: a TLS <= 1.2 session id (issued in a full handshake's ServerHello), a TLS 1.2
ticket (its NewSessionTicket travels in the clear; a ticket renewed on resumption stays linked to
the original session, whose creation time is what servers expire), and TLS 1.3 PSK identities
(their issuance is encrypted: repeated offers of one identity are linked to each other, and the
identity's key name, ``psk_key_name``, tells which ticket key encrypted it).

Memory is bounded whatever the capture holds (docs/diagnostics.md, "Memory"): at most
:data:`MAX_SESSIONS` sessions (least recently used dropped first, counted), :data:`MAX_OFFERS`
offers per session, :data:`MAX_SERVERS` servers (verdicts of further servers counted, not
diagnosed), :data:`MAX_KEY_NAMES` key names and :data:`MAX_CLIENTS` returning clients per server,
:data:`MAX_POPULATIONS` client addresses and fingerprints in the breakdowns (beyond, counted
under ``other``) and :data:`MAX_EVIDENCE` evidence connections per list (the earliest ones).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Final

from tlssniff.analysis.findings import Evidence, Finding, Severity
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered

MAX_SESSIONS = 100_000
MAX_OFFERS = 256
MAX_SERVERS = 50_000
MAX_KEY_NAMES = 32
MAX_CLIENTS = 256
MAX_POPULATIONS = 10_000
MAX_EVIDENCE = 4
# cross_server_refused by key name: a key name held by more servers of the name than this is
# paired with the nearest holder only (the finding counts the others).
MAX_PAIRED_HOLDERS = 4
# cross_server_refused: pair findings per name (servers of one SNI); the others are counted in
# one more finding.
MAX_PAIR_FINDINGS = 10

MIN_OFFERS_DISABLED = 2  # resumption_disabled: refused offers not issued by another server
MIN_FULL_NOT_RESUMABLE = 2  # session_not_resumable: full TLS <= 1.2 handshakes, nothing issued
MIN_CONNECTIONS_NEVER = 3  # client_never_resumes: connections of one population, no offer
MIN_TIMEOUT_SIDE = 2  # cache_timeout: linked offers on each side of the bracket
MIN_LOST = 2  # sessions_lost: refused sessions issued before the moment
# cache_timeout: session lifetimes are whole seconds (OpenSSL compares seconds; nginx, Apache
# take seconds), so no timeout refuses a session younger than 1 s: such a refusal has another
# cause (a restart, an eviction) and is not taken as evidence of a timeout.
MIN_TIMEOUT_AGE = 1.0
HINT_SLACK = 0.5  # seconds: a lifetime hint "agrees" with a bracket it lies in, give or take
# cross_server_refused without the issuance (TLS 1.3): a refusal counts within this many seconds
# of the holder's use of the ticket (or its key name), shorter than any default ticket lifetime
# (nginx and haproxy 300 s, OpenSSL 7200 s), so that an expired ticket is not taken for a key
# the node lacks.
FRESH = 60.0

_TLS13_PREFIX = "TLSv1.3"
_SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
_CODE_RANK = {
    code: i
    for i, code in enumerate((
        "resumption_disabled", "session_not_resumable", "several_key_sets", "sessions_lost",
        "cache_timeout", "cross_server_refused", "ticket_keys_differ", "concurrent_refused",
        "no_resumption_offered", "client_never_resumes", "ticket_key_rotation",
        "diagnostics_limited",
    ))
}
_KEY_FILES = ("nginx ssl_session_ticket_key (the same file on every node), haproxy "
              "tls-ticket-keys, Apache SSLSessionTicketKeyFile")


def server_label(v: ConnectionVerdict) -> str:
    """A server as the per-server table shows it: ``ip:port`` plus the SNI asked for."""
    return f"{v.server} {v.sni}" if v.sni else v.server


def _ip(endpoint: str) -> str:
    return endpoint.rpartition(":")[0]


# What diagnostics reads of a verdict (:func:`diag_record`), as a flat tuple of str, float,
# int, bool and None: ``--jobs`` workers make it for their verdicts and send it to the parent
# in :mod:`marshal` (engine/fanout.py), which feeds them to :meth:`Diagnostics.add_record` in
# the one-process order. Pickling the verdicts instead cost 5.8 us a verdict and unpickling
# 4.4 us (100,000 verdicts of bench/out/handshakes.pcap); a record costs 1.3-2.0 us to marshal
# and 1.1-1.5 us to read back, in batches of 300 (the same verdicts). Fields, by index:
R_LABEL: Final = 0  # the server as the table shows it (server_label)
R_SERVER: Final = 1  # ip:port
R_SNI: Final = 2
R_CLIENT: Final = 3
R_TS: Final = 4
R_FRAMES: Final = 5  # a tuple of frame numbers
R_CAPTURE: Final = 6
R_START: Final = 7  # ClientHello, else first packet
R_END: Final = 8  # the last handshake bytes read (at least R_START)
R_ISSUED_AT: Final = 9  # ServerHello, else R_START
R_RESUMED: Final = 10
R_TLS13: Final = 11
R_POPULATION: Final = 12  # JA4 without its cipher and extension hashes (ja4_base)
R_JA4: Final = 13
R_KEY_NAME: Final = 14  # the key name of what the client presented (ticket, PSK identity)
R_KIND: Final = 15  # KIND_UNKNOWN, KIND_FULL or KIND_OTHER
R_OFFERED: Final = 16  # the client presented a session id, ticket or PSK
R_OFFER_KEY: Final = 17  # what it presented, as the session table keys it (_offer_key)
R_ISSUED_ID: Final = 18  # the session id a ServerHello issued
R_ISSUED_TICKET: Final = 19  # the hash of the ticket issued
R_ISSUED_KEY_NAME: Final = 20  # its key name
R_LIFETIME: Final = 21  # its lifetime hint
KIND_UNKNOWN: Final = 0
KIND_FULL: Final = 1
KIND_OTHER: Final = 2

DiagRecord = tuple[str, str, "str | None", str, float, tuple, "str | None", float, float, float,
                   bool, bool, "str | None", "str | None", "str | None", int, bool,
                   "str | None", "str | None", "str | None", "str | None", "int | None"]


def diag_record(v: ConnectionVerdict) -> DiagRecord:
    """What :meth:`Diagnostics.add` reads of ``v`` (the fields above)."""
    start = v.client_hello_ts or v.ts
    offered = v.offered
    kind = (KIND_UNKNOWN if v.handshake is Handshake.UNKNOWN else
            KIND_FULL if v.handshake is Handshake.FULL else KIND_OTHER)
    return (
        server_label(v), v.server, v.sni, v.client, v.ts, tuple(v.frames), v.capture, start,
        max(v.handshake_end_ts or start, start), v.server_hello_ts or start, v.resumed,
        bool(v.version and v.version.startswith(_TLS13_PREFIX)) or offered is Offered.PSK,
        v.ja4_base, v.ja4,
        v.ticket_key_name if offered is Offered.TICKET else
        v.psk_key_name if offered is Offered.PSK else None,
        kind, offered is not Offered.NONE, _offer_key(v), v.issued_session_id,
        v.issued_ticket_hash, v.issued_ticket_key_name, v.ticket_lifetime,
    )


def _offer_key(v: ConnectionVerdict) -> str | None:
    if v.offered is Offered.PSK and v.psk_identity_hash:
        return "psk:" + v.psk_identity_hash
    if v.offered is Offered.TICKET and v.ticket_hash:
        return "tkt:" + v.ticket_hash
    if v.offered is Offered.SESSION_ID and v.session_id:
        return "id:" + v.session_id
    return None


class Conn:
    """The part of a verdict diagnostics keeps (a few hundred bytes)."""

    __slots__ = ("client", "server", "endpoint", "sni", "ts", "frames", "capture", "start",
                 "end", "issued_at", "resumed", "tls13", "population", "key_name", "offer_key")

    def __init__(self, r: DiagRecord, s: ServerDiag) -> None:
        self.client = r[R_CLIENT]
        # The server's own strings, shared by all its connections (one copy per server, not
        # per connection: about 150 bytes a connection kept).
        self.server = s.label  # ip:port + SNI
        self.endpoint = s.endpoint  # ip:port
        self.sni = s.sni
        self.ts = r[R_TS]
        self.frames = r[R_FRAMES]
        self.capture = r[R_CAPTURE]
        self.start = r[R_START]  # the session's age is taken here
        self.end = r[R_END]  # [ts, end]: concurrency's span
        self.issued_at = r[R_ISSUED_AT]  # when a full handshake created a session
        self.resumed = r[R_RESUMED]
        self.tls13 = r[R_TLS13]
        self.population = r[R_POPULATION]
        self.key_name = r[R_KEY_NAME]
        self.offer_key = r[R_OFFER_KEY]

    def order(self) -> tuple:
        """A total order by time (ties by endpoints) that does not depend on arrival."""
        return (self.start, self.ts, self.client, self.endpoint)

    def evidence(self, why: str) -> Evidence:
        return Evidence(self.client, self.endpoint, self.ts, self.frames, self.capture, why)


def _precedes(a: Conn, b: Conn) -> bool:
    """``a.order() < b.order()`` without making the two tuples (several times a verdict:
    callgrind, ``_earlier`` and ``_later`` were 19 M of ``add_record``'s 188 M instructions on
    the first 300,000 frames of bench/out/handshakes.pcap)."""
    if a.start != b.start:
        return a.start < b.start
    if a.ts != b.ts:
        return a.ts < b.ts
    if a.client != b.client:
        return a.client < b.client
    return a.endpoint < b.endpoint


def _keep(lst: list[Conn], c: Conn, n: int = MAX_EVIDENCE) -> None:
    """Keep the ``n`` earliest connections of ``lst`` (sorted): the same whatever the order."""
    if len(lst) >= n and not _precedes(c, lst[-1]):
        return
    i = len(lst)
    while i and _precedes(c, lst[i - 1]):
        i -= 1
    lst.insert(i, c)
    del lst[n:]


def _earlier(a: Conn | None, b: Conn) -> Conn:
    return b if a is None or _precedes(b, a) else a


def _later(a: Conn | None, b: Conn) -> Conn:
    return b if a is None or _precedes(a, b) else a


class Session:
    __slots__ = ("origin", "offers", "keys")

    def __init__(self) -> None:
        self.origin: Conn | None = None  # the full handshake that created it, when captured
        self.offers: list[Conn] = []
        self.keys: list[str] = []  # the session ids / tickets / identities that name it


class KeyName:
    """One ticket key name on one server: what it issued under it, accepted and refused."""

    __slots__ = ("issued", "issued_first", "issued_last", "accepted", "accepted_first",
                 "accepted_last", "refused", "refused_examples")

    def __init__(self) -> None:
        self.issued = 0
        self.issued_first: Conn | None = None
        self.issued_last: Conn | None = None
        self.accepted = 0
        self.accepted_first: Conn | None = None
        self.accepted_last: Conn | None = None
        self.refused = 0
        self.refused_examples: list[Conn] = []

    def first(self) -> float:
        return min(c.start for c in (self.issued_first, self.accepted_first) if c is not None)

    def last(self) -> float:
        return max(c.start for c in (self.issued_last, self.accepted_last) if c is not None)

    def held(self) -> bool:
        """The server issued tickets under this name or accepted one: it holds the key."""
        return bool(self.issued or self.accepted)

    def example(self) -> Conn:
        c = self.issued_first or self.accepted_first
        assert c is not None
        return c


class ServerDiag:
    """Per-server summary; containers are made on first use (most servers of an egress
    capture see one or two connections and need none)."""

    __slots__ = ("label", "endpoint", "sni", "handshakes", "full12", "issued_ids",
                 "issued_tickets", "resumed12", "resumed", "offers", "accepted", "hint",
                 "key_names", "key_names_dropped", "full12_examples", "refused_examples",
                 "clients", "populations", "pending", "seen_first", "seen_last")

    def __init__(self, label: str, endpoint: str, sni: str | None) -> None:
        self.label = label
        self.endpoint = endpoint
        self.sni = sni
        self.handshakes = 0
        self.full12 = 0  # full TLS <= 1.2 handshakes (issuance visible)
        self.issued_ids = 0
        self.issued_tickets = 0
        self.resumed12 = 0
        self.resumed = 0
        self.offers = 0
        self.accepted = 0
        self.hint: int | None = None  # the largest ticket lifetime hint announced
        self.key_names: dict[str, KeyName] | None = None
        self.key_names_dropped = 0
        self.full12_examples: list[Conn] | None = None
        self.refused_examples: list[Conn] | None = None
        # (client ip, population) -> [first connection given a session, last one presenting
        # nothing]: no_resumption_offered's evidence
        self.clients: dict[tuple, list] | None = None
        self.populations: dict[str | None, list] | None = None  # -> [conns, offers, examples]
        # A server's first connection waits here for its per-connection details (populations,
        # clients, examples): a server seen once (most of an egress capture) needs none of them.
        self.pending: tuple[Conn, bool, bool, bool, bool] | None = None
        self.seen_first: float | None = None  # its first and last ClientHello
        self.seen_last: float | None = None

    def key(self, name: str) -> KeyName | None:
        if self.key_names is None:
            self.key_names = {}
        k = self.key_names.get(name)
        if k is None:
            if len(self.key_names) >= MAX_KEY_NAMES:
                self.key_names_dropped += 1
                return None
            k = self.key_names[name] = KeyName()
        return k


class Breakdown:
    __slots__ = ("handshakes", "classified", "resumed", "offered", "accepted", "ja4")

    def __init__(self) -> None:
        self.handshakes = 0
        self.classified = 0
        self.resumed = 0
        self.offered = 0
        self.accepted = 0
        self.ja4: set[str] = set()

    def add(self, known: bool, resumed: bool, offered: bool, ja4: str | None) -> None:
        """One connection: ``known`` its handshake was classified, ``offered`` its client
        presented something."""
        self.handshakes += 1
        if known:
            self.classified += 1
            if resumed:
                self.resumed += 1
            if offered:
                self.offered += 1
                if resumed:
                    self.accepted += 1
        if ja4 and ja4 not in self.ja4 and (len(self.ja4) < 8 or ja4 < max(self.ja4)):
            self.ja4.add(ja4)
            if len(self.ja4) > 8:
                self.ja4.discard(max(self.ja4))  # the 8 smallest: independent of order

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


class _HolderWindows:
    """The holders of one key name, for "which holder used the key nearest to this moment":
    sorted by first use, with the running latest last use, so a query is a bisection plus a
    short walk (at most :data:`_NEAREST_SCAN` holders)."""

    __slots__ = ("firsts", "spans")

    def __init__(self, holders: list[ServerDiag], name: str) -> None:
        spans: list[tuple[float, str, float, ServerDiag]] = []
        for h in holders:
            names = h.key_names
            assert names is not None
            k = names[name]
            spans.append((k.first(), h.label, k.last(), h))
        spans.sort(key=lambda t: (t[0], t[1]))
        self.spans = spans
        self.firsts = [t[0] for t in spans]

    def nearest(self, t: float) -> ServerDiag | None:
        """A holder whose use (first - FRESH .. last + FRESH) covers ``t``: of those that began
        last before ``t + FRESH``, the first found walking back (deterministic)."""
        i = bisect.bisect_right(self.firsts, t + FRESH)
        for first, _label, last, h in reversed(self.spans[max(0, i - _NEAREST_SCAN):i]):
            if first - FRESH <= t <= last + FRESH:
                return h
        return None


_NEAREST_SCAN = 64


def _detail(s: ServerDiag, c: Conn, offered: bool, full12: bool, issued: bool,
            refused: bool) -> None:
    """Per-connection details of a server seen more than once: its client populations,
    returning clients and example connections."""
    if s.populations is None:
        s.populations = {}
    pop = s.populations.get(c.population)
    if pop is None and len(s.populations) < MAX_POPULATIONS:
        pop = s.populations[c.population] = [0, 0, []]
    if pop is not None:
        pop[0] += 1
        if offered:
            pop[1] += 1
        # client_never_resumes shows examples of a known population that never offered:
        # another population's, or one that has offered, are not kept (they grew with an
        # egress capture's connections).
        if pop[1]:
            pop[2] = []
        elif c.population is not None:
            _keep(pop[2], c)
    if full12:
        if s.full12_examples is None:
            s.full12_examples = []
        _keep(s.full12_examples, c)
    if refused:
        if s.refused_examples is None:
            s.refused_examples = []
        _keep(s.refused_examples, c)
    if (issued or not offered) and not s.offers:
        _client(s, c, issued, not offered)


def _client(s: ServerDiag, c: Conn, issued: bool, plain: bool) -> None:
    """no_resumption_offered's evidence: a client given a session, back without it (kept
    only while no client has presented anything to ``s``)."""
    if s.clients is None:
        s.clients = {}
    who = (_ip(c.client), c.population)
    slot = s.clients.get(who)
    if slot is None:
        if len(s.clients) >= MAX_CLIENTS:
            return
        slot = s.clients[who] = [None, None]
    if issued:
        slot[0] = _earlier(slot[0], c)
    if plain:
        slot[1] = _later(slot[1], c)


def _breakdown(table: dict[str, Breakdown], key: str, other: Breakdown) -> Breakdown:
    """The breakdown of ``key`` in ``table`` (made when new), or ``other`` beyond
    MAX_POPULATIONS."""
    b = table.get(key)
    if b is None:
        if len(table) >= MAX_POPULATIONS:
            return other
        b = table[key] = Breakdown()
    return b


class Diagnostics:
    """Collects verdicts; :meth:`findings` explains what the rates do not."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, max_servers: int = MAX_SERVERS) -> None:
        self.max_sessions = max_sessions
        self.max_servers = max_servers
        self.reset()

    def reset(self) -> None:
        """Forget every verdict (a ``--jobs`` run that falls back to one process feeds them
        again: engine/parallel.py)."""
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.servers: dict[str, ServerDiag] = {}
        self.by_address: dict[str, Breakdown] = {}
        self.by_population: dict[str, Breakdown] = {}
        self.other_address = Breakdown()
        self.other_population = Breakdown()
        self.sessions_dropped = 0
        self.offers_dropped = 0
        self.servers_dropped = 0  # verdicts of servers beyond max_servers (not diagnosed)
        self._findings: list[Finding] | None = None
        self.concurrency: dict[str, dict] = {}
        self._ages: dict[str, tuple[list, list]] = {}
        self._cross_ages: dict[str, tuple[list, list]] = {}
        self._key_holders: dict[tuple[str, str], int] = {}  # (holder, refuser) -> holders

    # -- input -------------------------------------------------------------------------------

    def add(self, v: ConnectionVerdict) -> None:
        self.add_record(diag_record(v))

    def add_records(self, records: list[DiagRecord]) -> None:
        """:meth:`add_record` each of ``records``, in order."""
        for r in records:
            self.add_record(r)

    def add_record(self, r: DiagRecord) -> None:
        """One verdict, as :func:`diag_record` gives it."""
        self._findings = None
        kind = r[R_KIND]
        offered = r[R_OFFERED]
        resumed = r[R_RESUMED]
        self._breakdowns(r[R_CLIENT], r[R_POPULATION], kind != KIND_UNKNOWN, resumed, offered,
                         r[R_JA4])
        if kind == KIND_UNKNOWN:
            return
        label = r[R_LABEL]
        s = self.servers.get(label)
        if s is None:
            if len(self.servers) >= self.max_servers:
                self.servers_dropped += 1
                return
            s = self.servers[label] = ServerDiag(label, r[R_SERVER], r[R_SNI])
        s.handshakes += 1
        offer_key = r[R_OFFER_KEY]
        c = Conn(r, s)
        if s.seen_first is None or c.start < s.seen_first:
            s.seen_first = c.start
        if s.seen_last is None or c.start > s.seen_last:
            s.seen_last = c.start
        tls13 = c.tls13
        if resumed:
            s.resumed += 1
            if not tls13:
                s.resumed12 += 1

        full12 = kind == KIND_FULL and not tls13
        issued_id = r[R_ISSUED_ID]
        issued_ticket = r[R_ISSUED_TICKET]
        issued = full12 and bool(issued_id or issued_ticket)
        refused = offer_key is not None and not resumed
        if s.handshakes == 1:
            s.pending = (c, offered, full12, issued, refused)
        else:
            p = s.pending
            if p is not None:
                # Arguments one by one: a call with *p went through the generic call path
                # (2,000 instructions a verdict).
                _detail(s, p[0], p[1], p[2], p[3], p[4])
                s.pending = None
            _detail(s, c, offered, full12, issued, refused)

        # What a full handshake issued (TLS <= 1.2: in the clear).
        keys = []
        if full12:
            s.full12 += 1
            if issued_id:
                keys.append("id:" + issued_id)
                s.issued_ids += 1
            if issued_ticket:
                keys.append("tkt:" + issued_ticket)
                s.issued_tickets += 1
        issued_key_name = r[R_ISSUED_KEY_NAME]
        if issued_key_name:
            k = s.key(issued_key_name)
            if k is not None:
                k.issued += 1
                k.issued_first = _earlier(k.issued_first, c)
                k.issued_last = _later(k.issued_last, c)
            lifetime = r[R_LIFETIME]
            if lifetime and (s.hint is None or lifetime > s.hint):
                s.hint = lifetime
        if keys:
            session = self._link(keys[0])
            session.origin = _earlier(session.origin, c)
            for k2 in keys[1:]:
                session = self._join(session, k2)

        # An offer: link it to its session (and its key name to the server's keys).
        if offer_key is not None:
            s.offers += 1
            # no_resumption_offered is about servers no client presents anything to: this one's
            # returning clients are not needed any more. On an egress capture (1,000,000
            # connections, bench/egress.py) they were what kept growing: 52,000 records, about
            # 25 MB, at the end, against 25,000 at 400,000 connections.
            s.clients = None
            if resumed:
                s.accepted += 1
            if c.key_name is not None:
                k = s.key(c.key_name)
                if k is not None:
                    if resumed:
                        k.accepted += 1
                        k.accepted_first = _earlier(k.accepted_first, c)
                        k.accepted_last = _later(k.accepted_last, c)
                    else:
                        k.refused += 1
                        _keep(k.refused_examples, c)
            session = self._link(offer_key)
            if len(session.offers) < MAX_OFFERS:
                session.offers.append(c)
            else:
                self.offers_dropped += 1
            # A ticket renewed on resumption belongs to the same session (same creation time).
            if resumed and issued_ticket:
                self._join(session, "tkt:" + issued_ticket)

    def _link(self, key: str) -> Session:
        """The session ``key`` names (made when new; most recently used)."""
        session = self.sessions.get(key)
        if session is None:
            session = Session()
            session.keys.append(key)
            self._put(key, session)
        else:
            self.sessions.move_to_end(key)
        return session

    def _join(self, session: Session, key: str) -> Session:
        """``key`` names ``session`` too; a session already known under ``key`` (its offers
        arrived first) is merged into it."""
        other = self.sessions.get(key)
        if other is None:
            session.keys.append(key)
            self._put(key, session)
            return session
        if other is session:
            return session
        if other.origin is not None:
            session.origin = _earlier(session.origin, other.origin)
        room = MAX_OFFERS - len(session.offers)
        session.offers.extend(other.offers[:room])
        self.offers_dropped += max(0, len(other.offers) - room)
        for k in other.keys:
            if self.sessions.get(k) is other:
                self.sessions[k] = session
                session.keys.append(k)
        self.sessions.move_to_end(key)
        return session

    def _put(self, key: str, session: Session) -> None:
        self.sessions[key] = session
        self.sessions.move_to_end(key)
        if len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)
            self.sessions_dropped += 1

    def _breakdowns(self, client: str, population: str | None, known: bool, resumed: bool,
                    offered: bool, ja4: str | None) -> None:
        _breakdown(self.by_address, _ip(client), self.other_address).add(
            known, resumed, offered, ja4)
        _breakdown(self.by_population, population or "-", self.other_population).add(
            known, resumed, offered, ja4)

    # -- analysis ----------------------------------------------------------------------------

    def findings(self) -> list[Finding]:
        if self._findings is None:
            self._findings = self._analyze()
        return self._findings

    def _analyze(self) -> list[Finding]:
        out: list[Finding] = []
        sessions = list({id(s): s for s in self.sessions.values()}.values())
        concurrency, mixed_groups = self._concurrency(sessions)
        self.concurrency = concurrency
        in_mixed = {id(c) for g in mixed_groups for c in g}
        ages, cross, foreign = self._link_offers(sessions, in_mixed)
        self._ages = ages
        # For the report's session-age chart: offers of a session another node issued, and the
        # refused offers a key change explains.
        self._cross_ages = {}
        for (_issuer, label), (refused_by_id, accepted_by_id) in cross.items():
            acc, ref = self._cross_ages.setdefault(label, ([], []))
            for bucket, found in ((acc, accepted_by_id), (ref, refused_by_id)):
                for c, a, why in found.values():
                    if why == "session issued by":
                        bucket.append(c.start - a.issued_at)
        several = {}
        for s in self.servers.values():
            f = self._several_key_sets(s, in_mixed)
            if f is not None:
                several[s.label] = f
        disabled = set()
        for s in self.servers.values():
            f = self._resumption_disabled(s, foreign.get(s.label, 0))
            if f:
                disabled.add(s.label)
                out.append(f)
            elif (f := self._not_resumable(s)) is not None:
                out.append(f)
            if s.label in several:
                out.append(several[s.label])
            elif (f := self._key_rotation(s)) is not None:
                out.append(f)
            if (f := self._no_offers(s)) is not None:
                out.append(f)
            out.extend(self._never_resumes(s))
        for label, (acc, ref) in ages.items():
            if label in several or label in disabled:
                continue  # one cause, one finding
            f = self._lost_or_timeout(self.servers[label], acc, ref)
            if f:
                out.append(f)
        by_name: dict[str | None, list[Finding]] = {}
        for (a, b), (refused, accepted) in cross.items():
            if b in disabled:
                continue  # b refuses its own sessions too: resumption_disabled says it
            f = self._cross_server(a, b, refused, accepted)
            if f:
                by_name.setdefault(self.servers[b].sni, []).append(f)
        for name, found in by_name.items():
            out.extend(self._cross_server_bounded(name, found))
        out.extend(self._keys_differ())
        out.extend(self._concurrent_refused(mixed_groups))
        if (f := self._limited()) is not None:
            out.append(f)
        out.sort(key=lambda f: (_SEVERITY_RANK[f.severity], _CODE_RANK.get(f.code, 99), f.servers))
        return out

    def _link_offers(self, sessions: list[Session], in_mixed: set) -> tuple[dict, dict, dict]:
        """Offers against the server that issued them: ages of offers to their own issuer
        (TLS <= 1.2, creation captured), cross-server pairs (issuer -> server offered to) and,
        per server, how many refused offers another server issued."""
        ages: dict[str, tuple[list, list]] = {}
        cross: dict[tuple[str, str], tuple[dict, dict]] = {}  # -> (refused, accepted) by id
        foreign_ids: dict[str, dict[int, Conn]] = {}

        def pair(a: Conn, c: Conn, why: str) -> None:
            refused, accepted = cross.setdefault((a.server, c.server), ({}, {}))
            if c.resumed:
                accepted.setdefault(id(c), (c, a, why))
            else:
                refused.setdefault(id(c), (c, a, why))
                foreign_ids.setdefault(c.server, {})[id(c)] = c

        for sess in sessions:
            o = sess.origin
            if o is not None:
                for c in sess.offers:
                    if c.server == o.server:
                        if not c.tls13 and id(c) not in in_mixed:
                            acc, ref = ages.setdefault(c.server, ([], []))
                            (acc if c.resumed else ref).append(
                                (c.start - o.issued_at, c, o, self._key_changed(c, o)))
                    elif c.sni == o.sni and c.endpoint != o.endpoint:
                        pair(o, c, "session issued by")
                continue
            # No issuance captured (TLS 1.3, or it precedes the capture): a server that
            # accepted the session holds it.
            # Its age is unknown, so a refusal elsewhere counts only near an acceptance
            # (within FRESH s: the ticket was valid then), not after it may have expired.
            holders: dict[str, list[Conn]] = {}
            for c in sess.offers:
                if c.resumed:
                    holders.setdefault(c.server, []).append(c)
            if len(holders) > MAX_PAIRED_HOLDERS:
                # One session accepted across a fleet: each offer is paired with the
                # MAX_PAIRED_HOLDERS holders that accepted it nearest in time, not with all.
                merged = sorted((c for acc in holders.values() for c in acc),
                                key=lambda a: (a.start, a.order()))
                starts = [a.start for a in merged]
                for c in sess.offers:
                    for near in _nearest_holders(merged, starts, c):
                        pair(near, c, "same session accepted by")
                continue
            for _label, accepted in sorted(holders.items()):
                accepted.sort(key=lambda a: (a.start, a.order()))
                starts = [a.start for a in accepted]
                for c in sess.offers:
                    if c.sni != accepted[0].sni or c.endpoint == accepted[0].endpoint:
                        continue
                    near = _nearest(accepted, starts, c.start)
                    if c.resumed or abs(near.start - c.start) <= FRESH:
                        pair(near, c, "same session accepted by")
        # Key names: a refused ticket whose key name another node of the name holds (issued
        # tickets under it, or accepted one), and the refusing server does not.
        # A server that refuses a key name cannot hold it, and within one name the label fixes
        # the address: every holder of (name, key name) is "another node" of a refuser.
        holders_by_name: dict[tuple, list[ServerDiag]] = {}
        for s in self.servers.values():
            for name, k in (s.key_names or {}).items():
                if k.held():
                    holders_by_name.setdefault((s.sni, name), []).append(s)
        windows: dict[tuple, _HolderWindows] = {}
        self._key_holders = {}
        foreign_keyed: dict[str, int] = {}
        keyed_names: dict[str, set] = {}
        for b in self.servers.values():
            for name, k in sorted((b.key_names or {}).items()):
                if not k.refused or k.held():
                    continue
                others = holders_by_name.get((b.sni, name), ())
                if not others:
                    continue
                foreign_keyed[b.label] = foreign_keyed.get(b.label, 0) + k.refused
                keyed_names.setdefault(b.label, set()).add(name)
                why = f"ticket key name {name} held by"
                if len(others) > MAX_PAIRED_HOLDERS:
                    # A key a whole fleet holds (a CDN name behind thousands of addresses): the
                    # refusal is paired with the nearest holder only, and the finding counts
                    # the others, so that the cost and the findings follow the refusers, not
                    # refusers x holders (an egress capture's 50,000 servers of one name).
                    w = windows.get((b.sni, name))
                    if w is None:
                        w = windows[(b.sni, name)] = _HolderWindows(others, name)
                    for c in k.refused_examples:
                        holder = w.nearest(c.start)
                        if holder is None:
                            continue
                        pair_key = (holder.label, b.label)
                        refused, _ = cross.setdefault(pair_key, ({}, {}))
                        assert holder.key_names is not None
                        refused.setdefault(id(c), (c, holder.key_names[name].example(), why))
                        self._key_holders[pair_key] = len(others)
                    continue
                for holder in others:
                    refused, _ = cross.setdefault((holder.label, b.label), ({}, {}))
                    assert holder.key_names is not None
                    hk = holder.key_names[name]
                    ex = hk.example()
                    for c in k.refused_examples:
                        if hk.first() - FRESH <= c.start <= hk.last() + FRESH:
                            refused.setdefault(id(c), (c, ex, why))
        # Refused offers another server issued or holds, per server (each offer once: those
        # counted by key name are not counted again by session).
        foreign: dict[str, int] = dict(foreign_keyed)
        for label, conns in foreign_ids.items():
            names = keyed_names.get(label, set())
            foreign[label] = foreign.get(label, 0) + sum(
                1 for c in conns.values() if c.key_name is None or c.key_name not in names)
        return ages, cross, foreign

    def _key_changed(self, c: Conn, o: Conn) -> bool:
        """A ticket refused after its server started issuing under another key name: explained
        by the key change, not by the session's age."""
        if c.resumed or c.key_name is None:
            return False
        s = self.servers.get(c.server)
        return s is not None and any(
            name != c.key_name and k.issued_first is not None
            and o.issued_at < k.issued_first.start <= c.start
            for name, k in (s.key_names or {}).items()
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
                offers.sort(key=lambda c: (c.ts, c.order()))
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
        mixed.sort(key=lambda g: g[0].order())
        return stats, mixed

    def session_ages(self) -> dict[str, dict[str, list[float]]]:
        """Per server label, the ages (seconds from issue to offer) of the linked TLS <= 1.2
        offers to their own issuer, split into ``accepted`` and ``refused`` (the refusals a
        ticket key change explains apart, as ``refused_explained``), and of the offers of a
        session another node (same SNI, another address) issued: ``cross_accepted`` and
        ``cross_refused`` (for charts)."""
        self.findings()
        out: dict[str, dict[str, list[float]]] = {}
        for label in sorted(set(self._ages) | set(self._cross_ages)):
            acc, ref = self._ages.get(label, ([], []))
            xacc, xref = self._cross_ages.get(label, ([], []))
            out[label] = {"accepted": sorted(t[0] for t in acc),
                          "refused": sorted(t[0] for t in ref if not t[3]),
                          "cross_accepted": sorted(xacc), "cross_refused": sorted(xref),
                          "refused_explained": sorted(t[0] for t in ref if t[3])}
        return out

    # -- one function per finding ------------------------------------------------------------

    def _resumption_disabled(self, s: ServerDiag, foreign: int) -> Finding | None:
        own = s.offers - foreign  # refused offers this server issued, or nobody else holds
        if own < MIN_OFFERS_DISABLED or s.accepted or s.resumed:
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
                f"{s.offers} resumption offers, none accepted, {own} of them not issued by "
                f"another server: resumption is off on this server {hint}. nginx: "
                "ssl_session_cache (shared:NAME:SIZE) and ssl_session_tickets; haproxy: "
                "tune.ssl.cachesize and no no-tls-tickets; Apache: SSLSessionCache and "
                "SSLSessionTickets."
            ),
            details={"offers": s.offers, "accepted": 0, "own_offers": own, "issued": issued},
            evidence=[c.evidence("offer refused") for c in s.refused_examples or ()],
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
                      for c in s.full12_examples or ()],
        )

    def _no_offers(self, s: ServerDiag) -> Finding | None:
        if s.offers or not (s.issued_ids or s.issued_tickets) or not s.clients:
            return None
        returned = sorted(((first, later) for first, later in s.clients.values()
                           if first is not None and later is not None
                           and later.start > first.start),
                          key=lambda p: (p[0].order(), p[1].order()))
        if not returned:
            return None
        ev = []
        for first, later in returned[:2]:
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
                     "returning_clients": len(returned)},
            evidence=ev,
        )

    def _never_resumes(self, s: ServerDiag) -> list[Finding]:
        if not s.resumed or not s.populations:
            return []
        out = []
        for pop, (conns, offers, examples) in sorted(s.populations.items(),
                                                     key=lambda kv: kv[0] or ""):
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

    @staticmethod
    def _held(s: ServerDiag) -> list[tuple[str, KeyName]]:
        """Key names the server holds, in order of first use."""
        return sorted(((n, k) for n, k in (s.key_names or {}).items() if k.held()),
                      key=lambda nk: (nk[1].first(), nk[0]))

    def _key_rotation(self, s: ServerDiag) -> Finding | None:
        names = self._held(s)
        if len(names) < 2:
            return None
        listed = [{"name": n, "first_ts": round(k.first(), 6), "last_ts": round(k.last(), 6),
                   "tickets": k.issued, "accepted": k.accepted} for n, k in names]
        tls13 = not any(k.issued for _, k in names)
        seen = ("tickets accepted (TLS 1.3: issuance is encrypted, the names are those of the "
                "PSK identities it accepted)" if tls13 else "tickets issued")
        return Finding(
            code="ticket_key_rotation",
            severity=Severity.INFO,
            servers=[s.label],
            message=(
                f"The server used {len(names)} ticket key names ({seen}), one after the other: "
                "a rotation or a restart; tickets under an older name are refused unless the "
                "old key is still configured for decryption (nginx: keep it as a second "
                "ssl_session_ticket_key; haproxy: tls-ticket-keys holds several; Apache: "
                "SSLSessionTicketKeyFile)."
            ),
            details={"key_names": listed, "inferred_from": "rfc5077_layout"},
            evidence=[k.example().evidence(f"ticket key name {n}") for n, k in names][
                :MAX_EVIDENCE],
        )

    def _several_key_sets(self, s: ServerDiag, in_mixed: set) -> Finding | None:
        """Several key sets behind one address: issued key names that interleave in time, or a
        key name refused and accepted on the same address in a way age does not explain."""
        if not s.key_names:
            return None
        ev: list[Evidence] = []
        interleaved: list[str] = []
        issued = sorted(((n, k) for n, k in s.key_names.items() if k.issued),
                        key=lambda nk: (nk[1].issued_first.order(), nk[0]))  # type: ignore[union-attr]
        for i, (n1, k1) in enumerate(issued):
            for n2, k2 in issued[i + 1:]:
                assert k1.issued_last and k2.issued_first and k1.issued_first
                if k2.issued_first.start < k1.issued_last.start:
                    if not interleaved:
                        ev += [k1.issued_first.evidence(f"ticket issued under key name {n1}"),
                               k2.issued_first.evidence(f"ticket issued under key name {n2}"),
                               k1.issued_last.evidence(f"ticket issued under key name {n1} "
                                                       "again")]
                    interleaved += [x for x in (n1, n2) if x not in interleaved]
        ages = self._ages.get(s.label, ([], []))
        age_of = {id(t[1]): (t[0], t[3]) for t in ages[0] + ages[1]}
        max_acc_age = max((t[0] for t in ages[0]), default=None)
        split: list[str] = []
        for name, k in sorted(s.key_names.items()):
            if not k.refused or not k.accepted:
                continue
            assert k.accepted_first and k.accepted_last
            for r in k.refused_examples:
                if id(r) in in_mixed:
                    continue
                known = age_of.get(id(r))
                if known is not None:
                    # Known age: a refusal older than every acceptance may be a timeout, one
                    # after the server changed its key name a rotation or a restart.
                    age, key_changed = known
                    if key_changed or max_acc_age is None or age > max_acc_age:
                        continue
                    a = k.accepted_first
                else:
                    # Unknown age (TLS 1.3, issuance not captured): another ticket under the
                    # name accepted proves nothing (the refused one may have expired); the
                    # same ticket or PSK identity accepted *after* its refusal does.
                    session = self.sessions.get(r.offer_key) if r.offer_key else None
                    later = [c for c in (session.offers if session else ())
                             if c.resumed and c.server == r.server and c.start > r.start]
                    if not later:
                        continue
                    a = min(later, key=Conn.order)
                split.append(name)
                if len(ev) < MAX_EVIDENCE:
                    ev += [r.evidence(f"key name {name} refused"),
                           a.evidence(f"key name {name} accepted on the same address"
                                      + (" (the same ticket, later)" if known is None else ""))]
                break
        if not interleaved and not split:
            return None
        why = []
        if interleaved:
            why.append(f"tickets are issued under key names that interleave in time "
                       f"({', '.join(interleaved)}), not one after the other as in a rotation")
        if split:
            why.append(f"tickets under one key name ({', '.join(split)}) are refused on some "
                       "connections and accepted on others")
        return Finding(
            code="several_key_sets",
            severity=Severity.WARNING,
            servers=[s.label],
            message=(
                "Several ticket key sets answer behind this one address (nodes or processes "
                f"behind a load balancer): {'; and '.join(why)}. Each node refuses the others' "
                f"tickets. Give every node the same keys ({_KEY_FILES}) and rotate them "
                "everywhere at once, or share one session cache; or make the balancer sticky. "
                "(Key names are read from the RFC 5077 ticket layout: an inference.)"
            ),
            details={"interleaved_key_names": interleaved, "refused_and_accepted": split,
                     "key_names": sorted(s.key_names), "inferred_from": "rfc5077_layout"},
            evidence=ev[:MAX_EVIDENCE + 2],
        )

    def _lost_or_timeout(self, s: ServerDiag, acc: list, ref: list) -> Finding | None:
        """Refusals of a server's own sessions: a timeout (explained by age) or a loss at one
        moment (explained by issue time: a restart, a cache flush, a key change)."""
        hint = s.hint
        aged_ref = [t for t in ref if not t[3]]  # key changes are no evidence of age
        window = _loss_window(acc, ref)
        timeout = None
        if acc and aged_ref:
            a_age = max(t[0] for t in acc)
            r_age = min(t[0] for t in aged_ref)
            if r_age > a_age and r_age >= MIN_TIMEOUT_AGE:
                timeout = (a_age, r_age)
        hint_agrees = (hint is not None and timeout is not None
                       and timeout[0] <= hint + HINT_SLACK and timeout[1] >= hint - HINT_SLACK)
        key_change = any(t[3] for t in ref)
        if timeout is not None and (window is None or hint_agrees):
            if len(acc) >= MIN_TIMEOUT_SIDE and len(aged_ref) >= MIN_TIMEOUT_SIDE:
                return self._cache_timeout(s, acc, aged_ref, hint, window)
            return None
        if window is None or len(ref) < MIN_LOST:
            return None
        if timeout is not None and not key_change and (hint is None or hint_agrees):
            return None  # age explains it as well as one loss does: neither is claimed
        lo, hi = window
        after = [t for t in acc if t[1].start > hi]
        if not after:
            return None  # nothing shows the server resuming after the moment
        return self._sessions_lost(s, ref, after, window, hint, key_change, timeout)

    def _cache_timeout(self, s: ServerDiag, acc: list, ref: list, hint: int | None,
                       window: tuple | None) -> Finding:
        a_age, a_conn, a_origin, _ = max(acc, key=lambda t: (t[0], t[1].order()))
        r_age, r_conn, r_origin, _ = min(ref, key=lambda t: (t[0], t[1].order()))
        details = {"accepted_max_age": round(a_age, 3), "refused_min_age": round(r_age, 3),
                   "accepted": len(acc), "refused": len(ref), "lifetime_hint": hint}
        msg = (f"{len(acc)} sessions accepted up to {a_age:.1f} s old and {len(ref)} refused "
               f"from {r_age:.1f} s old: the server keeps sessions between {a_age:.0f} and "
               f"{r_age:.0f} s.")
        if hint is not None:
            msg += f" Its tickets announce a lifetime of {hint} s"
            msg += " (consistent)." if a_age <= hint + HINT_SLACK and r_age >= hint - HINT_SLACK \
                else " - the announced and the effective lifetime disagree (a cache or ticket " \
                     "timeout shorter than the hint, or sessions evicted from a full cache)."
        msg += (" If clients come back later than that, raise nginx ssl_session_timeout "
                "(haproxy tune.ssl.lifetime, Apache SSLSessionCacheTimeout), and size "
                "ssl_session_cache / SSLSessionCache for the sessions it must hold that long.")
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

    def _sessions_lost(self, s: ServerDiag, ref: list, after: list, window: tuple,
                       hint: int | None, key_change: bool, timeout: tuple | None) -> Finding:
        lo, hi = window
        r_ages = sorted(t[0] for t in ref)
        ref = sorted(ref, key=lambda t: t[1].order())
        after = sorted(after, key=lambda t: t[1].order())
        why = []
        if timeout is None:
            why.append("age does not explain it (younger sessions are refused while older "
                       "ones are accepted)")
        elif hint is not None:
            why.append(f"its tickets announce {hint} s, longer than the refused sessions' ages")
        if key_change:
            why.append("the server issues tickets under a new key name since")
        msg = (f"Sessions were lost between {lo:.3f} and {hi:.3f} (capture time): {len(ref)} "
               f"sessions issued before were refused after, at ages {r_ages[0]:.1f} to "
               f"{r_ages[-1]:.1f} s, while {len(after)} issued after resumed"
               + (f"; {', and '.join(why)}" if why else "") + ". A restart, a cache flush or a "
               "ticket key change without the old key: nginx loses ssl_session_cache on a "
               "restart (not on a reload) and makes new ticket keys unless "
               "ssl_session_ticket_key files are set; haproxy: tls-ticket-keys; Apache: "
               "SSLSessionTicketKeyFile and a persistent SSLSessionCache.")
        r_age, r_conn, r_origin, _ = ref[0]
        a_age, a_conn, a_origin, _ = after[0]
        return Finding(
            code="sessions_lost",
            severity=Severity.WARNING,
            servers=[s.label],
            message=msg,
            details={"lost_after": round(lo, 6), "lost_before": round(hi, 6),
                     "refused": len(ref), "accepted_after": len(after),
                     "refused_ages": [round(r_ages[0], 3), round(r_ages[-1], 3)],
                     "lifetime_hint": hint, "key_change": key_change},
            evidence=[
                r_origin.evidence("session created before the loss"),
                r_conn.evidence(f"offered after the loss at age {r_age:.1f} s, refused"),
                a_origin.evidence("session created after the loss"),
                a_conn.evidence(f"offered at age {a_age:.1f} s, accepted"),
            ],
        )

    def _cross_server(self, a: str, b: str, refused: dict, accepted: dict) -> Finding | None:
        if not refused or accepted:
            return None  # both accepted and refused: timeouts, partial sharing (ambiguous)
        target = self.servers.get(b)
        own = target is not None and target.accepted > 0
        pairs = sorted(refused.values(), key=lambda t: (t[0].order(), t[1].order()))
        ev = []
        for c, o, why in pairs[:2]:
            ev.append(o.evidence(f"{why} {a}"))
            ev.append(c.evidence(f"offered to {b}, refused"))
        tls13 = any(c.tls13 for c, _, _ in pairs)
        holders = self._key_holders.get((a, b), 0)
        return Finding(
            code="cross_server_refused",
            severity=Severity.WARNING,
            servers=[a, b],
            message=(
                f"Sessions of {a} are refused by {b} (same name)"
                + (f" (and {holders - 1} other servers of the name hold the key it lacks)"
                   if holders else "")
                + (", which accepts its own" if own else
                   " (whether it resumes its own sessions, the capture does not show)")
                + (" (TLS 1.3 PSKs)" if tls13 else "")
                + ": the nodes share neither session cache nor ticket keys. Share the ticket "
                f"keys ({_KEY_FILES}) or a session cache (Apache SSLSessionCache memcache:), "
                "or keep clients on one node."
            ),
            details={"from": a, "to": b, "offers": len(pairs), "accepted": 0,
                     "target_accepts_own": own, **({"key_holders": holders} if holders else {})},
            evidence=ev,
        )

    def _cross_server_bounded(self, name: str | None, found: list[Finding]) -> list[Finding]:
        """At most :data:`MAX_PAIR_FINDINGS` pairs of one name, those with the most refused
        offers; the other pairs of the name as one finding that counts them. (A name behind
        thousands of addresses gives a pair per refused offer: the list would follow the
        offers, not the problem, which is one: the nodes do not share keys.)"""
        if len(found) <= MAX_PAIR_FINDINGS:
            return found
        found.sort(key=lambda f: (-f.details["offers"], f.servers))
        kept, rest = found[:MAX_PAIR_FINDINGS], found[MAX_PAIR_FINDINGS:]
        refusers: dict[str, int] = {}
        for f in rest:
            b = f.details["to"]
            refusers[b] = refusers.get(b, 0) + f.details["offers"]
        offers = sum(refusers.values())
        top = sorted(refusers, key=lambda b: (-refusers[b], b))
        shown = top[:MAX_EVIDENCE]
        ev = [e for f in rest[:MAX_EVIDENCE // 2] for e in f.evidence[:2]]
        return kept + [Finding(
            code="cross_server_refused",
            severity=Severity.WARNING,
            servers=shown,
            message=(
                f"{len(rest)} more pairs of servers answering for {name or 'no name'} refuse "
                f"each other's sessions ({offers} refused offers at {len(top)} servers; the "
                f"{len(shown)} that refuse the most are named): the nodes share neither "
                f"session cache nor ticket keys. Share the ticket keys ({_KEY_FILES}) or a "
                "session cache, or keep clients on one node."
            ),
            details={"name": name, "pairs": len(rest), "offers": offers,
                     "refusing_servers": len(top), "accepted": 0},
            evidence=ev,
        )]

    def _keys_differ(self) -> list[Finding]:
        by_sni: dict[str, list[tuple[ServerDiag, set, float, float]]] = {}
        for s in sorted(self.servers.values(), key=lambda s: s.label):
            held = self._held(s)
            if s.sni and held and s.seen_first is not None and s.seen_last is not None:
                by_sni.setdefault(s.sni, []).append(
                    (s, {n for n, _ in held}, s.seen_first, s.seen_last))
        out = []
        for sni, group in sorted(by_sni.items()):
            involved = _disjoint_at_once(group)
            if not involved:
                continue
            servers = sorted(involved)
            ev = []
            for label in servers[:MAX_EVIDENCE]:
                name, k = self._held(involved[label][0])[0]
                ev.append(k.example().evidence(f"ticket key name {name}"))
            out.append(Finding(
                code="ticket_keys_differ",
                severity=Severity.WARNING,
                servers=servers,
                message=(
                    f"Servers answering for {sni} use different ticket key names at the same "
                    "time (TLS 1.2: the tickets they issue; TLS 1.3: the PSKs they accept): a "
                    f"ticket from one is refused by the others. Give every node the same keys "
                    f"({_KEY_FILES}) and rotate them everywhere at once."
                ),
                details={"servers": servers,
                         "key_names": {k: sorted(involved[k][1]) for k in servers},
                         "inferred_from": "rfc5077_layout"},
                evidence=ev[:MAX_EVIDENCE],
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

    def _limited(self) -> Finding | None:
        """The memory bounds were reached: say what the findings do not cover."""
        if not (self.servers_dropped or self.sessions_dropped or self.offers_dropped):
            return None
        return Finding(
            code="diagnostics_limited",
            severity=Severity.INFO,
            servers=[],
            message=(
                f"The diagnostics kept bounded memory: {self.servers_dropped} connections to "
                f"servers beyond the first {self.max_servers} were not diagnosed, "
                f"{self.sessions_dropped} sessions beyond the {self.max_sessions} most recently "
                f"used and {self.offers_dropped} offers beyond {MAX_OFFERS} per session were "
                "not linked. The findings are computed on what was kept (an offer whose "
                "issuing connection was dropped is unlinked); the rates in the table count "
                "every connection. Analyze a filtered capture (one site, one subnet) to "
                "diagnose every server."
            ),
            details={"servers_dropped": self.servers_dropped,
                     "sessions_dropped": self.sessions_dropped,
                     "offers_dropped": self.offers_dropped},
        )

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
                       "offers_dropped": self.offers_dropped,
                       "servers": len(self.servers), "max_servers": self.max_servers,
                       "servers_dropped": self.servers_dropped,
                       "key_names_dropped": sum(s.key_names_dropped
                                                for s in self.servers.values())},
        }


def _nearest(conns: list[Conn], starts: list[float], t: float) -> Conn:
    """Of ``conns`` (sorted by start, then order; ``starts`` their starts), the one starting
    nearest ``t``, the earliest by order among equals: a bisection, not a scan."""
    i = bisect.bisect_left(starts, t)
    candidates = []
    for j in (i - 1, i):
        if 0 <= j < len(conns):
            k = j
            while k > 0 and starts[k - 1] == starts[j]:
                k -= 1
            while k < len(conns) and starts[k] == starts[j]:
                candidates.append(conns[k])
                k += 1
    return min(candidates, key=lambda a: (abs(a.start - t), a.order()))


def _nearest_holders(merged: list[Conn], starts: list[float], c: Conn) -> list[Conn]:
    """For the offer ``c``: the accepted offers (``merged``, sorted by start) of up to
    :data:`MAX_PAIRED_HOLDERS` other servers of its name, the nearest in time of each, walking
    out from ``c``'s moment (within FRESH s unless ``c`` was accepted itself)."""
    i = bisect.bisect_left(starts, c.start)
    lo, hi = i - 1, i
    seen: set[str] = set()
    out: list[Conn] = []
    while len(out) < MAX_PAIRED_HOLDERS and (lo >= 0 or hi < len(merged)):
        if hi >= len(merged) or (lo >= 0 and c.start - starts[lo] <= starts[hi] - c.start):
            a, lo = merged[lo], lo - 1
        else:
            a, hi = merged[hi], hi + 1
        if not c.resumed and abs(a.start - c.start) > FRESH:
            break
        if a.server in seen or a.sni != c.sni or a.endpoint == c.endpoint:
            continue
        seen.add(a.server)
        out.append(a)
    return out


def _disjoint_at_once(group: list[tuple]) -> dict[str, tuple]:
    """The servers of one name (``(server, key names, first seen, last seen)``) seen at the same
    time as another server of the name holding none of their key names (seen apart, one key may
    have been handed on), by label.

    Servers are grouped by their set of key names: a class never conflicts with itself, and for
    two disjoint classes a member of one conflicts iff a member of the other was seen while it
    was (a bisection over the other class sorted by first sighting, with the running latest
    last sighting). The cost is (classes^2 x members x log), not servers^2: a fleet sharing one
    key is one class, and with per-node keys a server stops at the first node it overlaps.
    """
    classes: dict[frozenset, list[tuple]] = {}
    for a, names, first, last in group:
        classes.setdefault(frozenset(names), []).append((first, last, a))
    index = []
    for names, members in classes.items():
        members.sort(key=lambda t: (t[0], t[2].label))
        firsts = [m[0] for m in members]
        latest, running = [], float("-inf")
        for m in members:
            running = max(running, m[1])
            latest.append(running)
        index.append((names, members, firsts, latest))
    involved: dict[str, tuple] = {}
    for names, members, _f, _l in index:
        for first, last, a in members:
            for other, _m, firsts, latest in index:
                if other is names or names & other:
                    continue
                i = bisect.bisect_right(firsts, last)
                if i and latest[i - 1] >= first:
                    involved[a.label] = (a, set(names))
                    break
    return involved


def _loss_window(acc: list, ref: list) -> tuple[float, float] | None:
    """The moments T at which one loss explains the refusals: every refused session issued
    before T and offered after it, no accepted one issued before T and offered after it. The
    earliest such interval (lo, hi], or None."""
    if not ref:
        return None
    lo = max(t[2].issued_at for t in ref)
    hi = min(t[1].start for t in ref)
    pieces = [(lo, hi)] if lo < hi else []
    for _, c, o, _ in acc:
        a_lo, a_hi = o.issued_at, c.start  # T in (a_lo, a_hi] would have lost this one
        nxt = []
        for p_lo, p_hi in pieces:
            if a_hi <= p_lo or a_lo >= p_hi:
                nxt.append((p_lo, p_hi))
                continue
            if p_lo < a_lo:
                nxt.append((p_lo, a_lo))
            if a_hi < p_hi:
                nxt.append((a_hi, p_hi))
        pieces = nxt
    return pieces[0] if pieces else None


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
