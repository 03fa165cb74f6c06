"""Per-server aggregation: resumption rate, hit rate of offers, mechanism and version mix.

A server is its ``ip:port`` plus the SNI clients asked for (one address can serve many names,
and each name may have its own cache and ticket keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tlssniff.analysis.verdict import (
    RESUMED_HANDSHAKES,
    VALUE,
    ConnectionVerdict,
    EarlyData,
    Handshake,
    Offered,
)


@dataclass(slots=True)
class ServerStats:
    server: str
    sni: str | None
    transport: str = "tcp"
    starttls: str | None = None  # the plaintext protocol its clients upgraded from, if any
    handshakes: int = 0  # every TLS connection, unknown ones included
    classified: int = 0  # handshakes whose type is known (the rate's denominator)
    resumed: int = 0
    offered: int = 0  # connections whose client offered a session, ticket or PSK
    accepted: int = 0  # offers the server accepted
    refused: int = 0  # offers answered with a full handshake
    hrr: int = 0
    early_data_offered: int = 0
    # name -> count; plain dicts (compiled, a Counter's += is a generic call): read with .get
    by_handshake: dict[str, int] = field(default_factory=dict)
    by_offered: dict[str, int] = field(default_factory=dict)
    by_version: dict[str, int] = field(default_factory=dict)
    first_ts: float | None = None
    last_ts: float | None = None

    def add(self, v: ConnectionVerdict) -> None:
        if v.starttls:
            self.starttls = v.starttls
        self.handshakes += 1
        h = v.handshake
        counts = self.by_handshake
        name = VALUE[h]
        counts[name] = counts.get(name, 0) + 1
        counts = self.by_offered
        name = VALUE[v.offered]
        counts[name] = counts.get(name, 0) + 1
        version = v.version
        if version:
            counts = self.by_version
            counts[version] = counts.get(version, 0) + 1
        if h is not Handshake.UNKNOWN:
            self.classified += 1
            resumed = h in RESUMED_HANDSHAKES
            if resumed:
                self.resumed += 1
            if v.offered is not Offered.NONE:
                self.offered += 1
                if resumed:
                    self.accepted += 1
                else:
                    self.refused += 1
        if v.hrr:
            self.hrr += 1
        if v.early_data is not EarlyData.NONE:
            self.early_data_offered += 1
        if self.first_ts is None or v.ts < self.first_ts:
            self.first_ts = v.ts
        if self.last_ts is None or v.ts > self.last_ts:
            self.last_ts = v.ts

    def merge(self, other: ServerStats) -> None:
        """Add ``other`` (the same server, verdicts that came after this one's): exactly what
        adding its verdicts one by one would give (``--jobs`` workers aggregate their capture)."""
        if other.starttls:
            self.starttls = other.starttls
        self.handshakes += other.handshakes
        self.classified += other.classified
        self.resumed += other.resumed
        self.offered += other.offered
        self.accepted += other.accepted
        self.refused += other.refused
        self.hrr += other.hrr
        self.early_data_offered += other.early_data_offered
        for mine, theirs in ((self.by_handshake, other.by_handshake),
                             (self.by_offered, other.by_offered),
                             (self.by_version, other.by_version)):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n
        if other.first_ts is not None and (self.first_ts is None or other.first_ts < self.first_ts):
            self.first_ts = other.first_ts
        if other.last_ts is not None and (self.last_ts is None or other.last_ts > self.last_ts):
            self.last_ts = other.last_ts

    def __reduce__(self) -> tuple:
        """Pickled by its fields (``--jobs`` workers send their aggregates home)."""
        return (_restore_stats, (
            self.server, self.sni, self.transport, self.starttls, self.handshakes,
            self.classified, self.resumed, self.offered, self.accepted, self.refused, self.hrr,
            self.early_data_offered, self.by_handshake, self.by_offered, self.by_version,
            self.first_ts, self.last_ts,
        ))

    @property
    def resumption_rate(self) -> float | None:
        """Resumed / classified handshakes; None when nothing is classified."""
        return self.resumed / self.classified if self.classified else None

    @property
    def hit_rate(self) -> float | None:
        """Accepted / offered resumptions: how often the server honours what clients present."""
        return self.accepted / self.offered if self.offered else None

    def to_dict(self) -> dict:
        return {
            "server": self.server,
            "sni": self.sni,
            "transport": self.transport,
            "starttls": self.starttls,
            "handshakes": self.handshakes,
            "classified": self.classified,
            "resumed": self.resumed,
            "resumption_rate": _round(self.resumption_rate),
            "offered": self.offered,
            "accepted": self.accepted,
            "refused": self.refused,
            "hit_rate": _round(self.hit_rate),
            "hrr": self.hrr,
            "early_data_offered": self.early_data_offered,
            "handshake": dict(sorted(self.by_handshake.items())),
            "offered_by_mechanism": dict(sorted(self.by_offered.items())),
            "version": dict(sorted(self.by_version.items())),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }


def _restore_stats(
    server: str, sni: str | None, transport: str, starttls: str | None, handshakes: int,
    classified: int, resumed: int, offered: int, accepted: int, refused: int, hrr: int,
    early_data_offered: int, by_handshake: dict[str, int], by_offered: dict[str, int],
    by_version: dict[str, int], first_ts: float | None, last_ts: float | None,
) -> ServerStats:
    s = ServerStats(server, sni, transport, starttls, handshakes, classified, resumed, offered,
                    accepted, refused, hrr, early_data_offered)
    s.by_handshake, s.by_offered, s.by_version = by_handshake, by_offered, by_version
    s.first_ts, s.last_ts = first_ts, last_ts
    return s


def _restore_aggregator(
    servers: dict[tuple[str, str | None, str], ServerStats], total: ServerStats
) -> Aggregator:
    a = Aggregator()
    a.servers, a.total = servers, total
    return a


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class Aggregator:
    """Collects verdicts into per-server statistics and overall totals."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, str | None, str], ServerStats] = {}
        self.total = ServerStats(server="*", sni=None)

    def __reduce__(self) -> tuple:
        return (_restore_aggregator, (self.servers, self.total))

    def merge(self, other: Aggregator) -> None:
        """Add another aggregator's servers and totals, as if its verdicts came after ours."""
        for key, theirs in other.servers.items():
            mine = self.servers.get(key)
            if mine is None:
                mine = self.servers[key] = ServerStats(theirs.server, theirs.sni, theirs.transport)
            mine.merge(theirs)
        self.total.merge(other.total)

    def add(self, v: ConnectionVerdict) -> None:
        key = (v.server, v.sni, v.transport)
        stats = self.servers.get(key)
        if stats is None:
            stats = self.servers[key] = ServerStats(v.server, v.sni, v.transport)
        stats.add(v)
        self.total.add(v)

    def sorted_servers(self) -> list[ServerStats]:
        """Busiest first; ties by name so output is stable."""
        return sorted(
            self.servers.values(), key=lambda s: (-s.handshakes, s.server, s.sni or "")
        )
