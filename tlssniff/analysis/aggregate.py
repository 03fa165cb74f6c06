"""Per-server aggregation: resumption rate, hit rate of offers, mechanism and version mix.

A server is its ``ip:port`` plus the SNI clients asked for (one address can serve many names,
and each name may have its own cache and ticket keys).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

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
    # At most this many earlier handshakes of this server are counted under "other servers"
    # (its row was given up and taken again: Aggregator's bound); 0 when the row is exact.
    untracked: int = 0

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
        self.untracked += other.untracked

    def __reduce__(self) -> tuple:
        """Pickled by its fields (``--jobs`` workers send their aggregates home)."""
        return (_restore_stats, (
            self.server, self.sni, self.transport, self.starttls, self.handshakes,
            self.classified, self.resumed, self.offered, self.accepted, self.refused, self.hrr,
            self.early_data_offered, self.by_handshake, self.by_offered, self.by_version,
            self.first_ts, self.last_ts, self.untracked,
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
        d = self._dict()
        if self.untracked:
            d["untracked"] = self.untracked
        return d

    def _dict(self) -> dict:
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
    by_version: dict[str, int], first_ts: float | None, last_ts: float | None, untracked: int,
) -> ServerStats:
    s = ServerStats(server, sni, transport, starttls, handshakes, classified, resumed, offered,
                    accepted, refused, hrr, early_data_offered)
    s.by_handshake, s.by_offered, s.by_version = by_handshake, by_offered, by_version
    s.first_ts, s.last_ts, s.untracked = first_ts, last_ts, untracked
    return s


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


MAX_SERVERS: Final = 20_000  # servers with their own figures; the rest are "other servers"
_HLL_BITS: Final = 14  # 16,384 one-byte registers: a distinct-server estimate within ~1%
_HLL_SIZE: Final = 1 << _HLL_BITS

class Aggregator:
    """Collects verdicts into per-server statistics and overall totals, in bounded memory.

    At most ``max_servers`` servers have rows of their own (0: no bound). Beyond that the
    table is a space-saving summary (Metwally et al., 2005): a server not in the table takes
    the place of the row with the smallest estimate, whose exact figures go into
    :attr:`other` ("other servers"), and starts with that estimate as its error bound
    (:attr:`ServerStats.untracked`: at most that many of its earlier handshakes are counted
    under :attr:`other`). Any server with more than ``handshakes / max_servers`` handshakes
    keeps its row; the rows and :attr:`other` together add up to :attr:`total` exactly.
    Memory: ``max_servers`` rows (about 1 KB each) and 16 KB, whatever the capture holds.
    Until the bound is reached everything is exact and :attr:`other` is None.
    """

    def __init__(self, max_servers: int = MAX_SERVERS) -> None:
        self.servers: dict[tuple[str, str | None, str], ServerStats] = {}
        self.total = ServerStats(server="*", sni=None)
        self.max_servers = max_servers
        self.other: ServerStats | None = None  # exact figures of the servers without a row
        self.evictions = 0  # rows given up for a newer server
        # The space-saving summary, built when the bound is first reached: estimate (a row's
        # handshakes + untracked) -> its keys, oldest first; and the smallest estimate. A bucket
        # is an OrderedDict: its oldest key is found in O(1). A plain dict drained from the
        # front scans every deleted slot before the first live one (nothing compacts it while
        # only deletions happen), which cost 5-7 µs per new server on the 100,000-connection
        # egress capture (20,000 rows: bounded 15 µs against unbounded 9 µs a connection).
        self._buckets: dict[int, OrderedDict[tuple[str, str | None, str], None]] = {}
        self._min = 0
        self._hll = bytearray(_HLL_SIZE)

    def __reduce__(self) -> tuple:
        return (_restore_aggregator, (self.servers, self.total, self.max_servers, self.other,
                                      self.evictions, bytes(self._hll)))

    # -- adding ------------------------------------------------------------------------------

    def add(self, v: ConnectionVerdict) -> None:
        key = (v.server, v.sni, v.transport)
        stats = self.servers.get(key)
        if stats is None:
            stats = self._admit(key, v.server, v.sni, v.transport)
        elif self._buckets:
            self._bump(key, stats.handshakes + stats.untracked)
        stats.add(v)
        self.total.add(v)

    def _admit(self, key: tuple[str, str | None, str], server: str, sni: str | None,
               transport: str) -> ServerStats:
        _hll_add(self._hll, key)
        stats = ServerStats(server, sni, transport)
        limit = self.max_servers
        if limit and len(self.servers) >= limit:
            if not self._buckets:
                for k, s in self.servers.items():
                    self._place(k, s.handshakes + s.untracked)
            stats.untracked = self._evict_min()
            self._place(key, stats.untracked + 1)
        elif self._buckets:
            self._place(key, 1)
        self.servers[key] = stats
        return stats

    def _place(self, key: tuple[str, str | None, str], est: int) -> None:
        buckets = self._buckets
        if not buckets or est < self._min:
            self._min = est
        bucket = buckets.get(est)
        if bucket is None:
            bucket = buckets[est] = OrderedDict()
        bucket[key] = None

    def _bump(self, key: tuple[str, str | None, str], est: int) -> None:
        """The row ``key`` (estimate ``est``) counts one more handshake."""
        bucket = self._buckets[est]
        del bucket[key]
        if not bucket:
            del self._buckets[est]
        up = self._buckets.get(est + 1)
        if up is None:
            up = self._buckets[est + 1] = OrderedDict()
        up[key] = None
        if est == self._min and est not in self._buckets:
            self._min = est + 1

    def _evict_min(self) -> int:
        """Give up the oldest row of the smallest estimate (its figures go to ``other``);
        returns that estimate."""
        est = self._min
        bucket = self._buckets[est]
        key = bucket.popitem(last=False)[0]
        if not bucket:
            del self._buckets[est]
            self._min = min(self._buckets) if self._buckets else 0
        self._fold(self.servers.pop(key))
        return est

    def _fold(self, gone: ServerStats) -> None:
        if self.other is None:
            self.other = ServerStats(server="other servers", sni=None)
        self.other.merge(gone)
        self.evictions += 1

    # -- merging -----------------------------------------------------------------------------

    def merge(self, other: Aggregator) -> None:
        """Add another aggregator's servers and totals, as if its verdicts came after ours.

        Exact while both together stay within the bound. Beyond it the rows kept are the
        ``max_servers`` largest estimates (ties: the key) and the others go to :attr:`other`:
        the same rows whichever of two aggregators is merged into the other."""
        # A server without a row on one side may have handshakes in that side's "other", at
        # most that side's smallest estimate (mergeable summaries, Agarwal et al., 2012).
        my_floor, their_floor = self._floor(), other._floor()
        for key, theirs in other.servers.items():
            mine = self.servers.get(key)
            if mine is None:
                mine = self.servers[key] = ServerStats(theirs.server, theirs.sni, theirs.transport)
                mine.untracked = my_floor
            mine.merge(theirs)
        if their_floor:
            for key, mine in self.servers.items():
                if key not in other.servers:
                    mine.untracked += their_floor
        if other.other is not None:
            if self.other is None:
                self.other = ServerStats(server="other servers", sni=None)
            self.other.merge(other.other)
        self.evictions += other.evictions
        self.total.merge(other.total)
        mine_hll, theirs_hll = self._hll, other._hll
        for i in range(_HLL_SIZE):
            if theirs_hll[i] > mine_hll[i]:
                mine_hll[i] = theirs_hll[i]
        if not (self.max_servers and other.max_servers):
            self.max_servers = 0
        else:
            self.max_servers = max(self.max_servers, other.max_servers)
        self._buckets, self._min = {}, 0  # rebuilt when a new server next meets the bound
        limit = self.max_servers
        if limit and len(self.servers) > limit:
            servers = self.servers
            ranked = sorted(servers, key=lambda k: (-(servers[k].handshakes
                                                      + servers[k].untracked), _key_text(k)))
            for k in ranked[limit:]:
                self._fold(servers.pop(k))

    def _floor(self) -> int:
        """The smallest estimate of a row once rows have been given up, else 0."""
        if self.other is None or not self.servers:
            return 0
        return min(s.handshakes + s.untracked for s in self.servers.values())

    # -- reading -----------------------------------------------------------------------------

    def sorted_servers(self) -> list[ServerStats]:
        """Busiest first; ties by name so output is stable."""
        return sorted(
            self.servers.values(), key=lambda s: (-s.handshakes, s.server, s.sni or "")
        )

    def servers_seen(self) -> int:
        """Distinct servers: exact until the bound was reached, then an estimate (HyperLogLog,
        about 1% off)."""
        if self.other is None:
            return len(self.servers)
        return max(len(self.servers), _hll_count(self._hll))

    def other_dict(self) -> dict | None:
        """The "other servers" row for JSON: exact figures, estimated number of servers."""
        if self.other is None:
            return None
        d = self.other.to_dict()
        d["server"], d["transport"] = None, None
        d["servers_estimate"] = max(0, self.servers_seen() - len(self.servers))
        d["rows_given_up"] = self.evictions
        return d


def servers_under(aggregator: Aggregator, rate: float,
                  min_handshakes: int = 10) -> list[ServerStats]:
    """``--fail-under``: the servers with at least ``min_handshakes`` handshakes whose
    resumption rate (resumed / classified) is below ``rate`` (0..1), busiest first. ``analyze``,
    ``report`` and ``live`` exit with status 3 when this is not empty."""
    return [s for s in aggregator.sorted_servers()
            if s.handshakes >= min_handshakes and s.resumption_rate is not None
            and s.resumption_rate < rate]


def _key_text(k: tuple[str, str | None, str]) -> str:
    return f"{k[0]}\x00{k[1] or ''}\x00{k[2]}"


def _hll_add(regs: bytearray, key: tuple[str, str | None, str]) -> None:
    d = hashlib.blake2b(_key_text(key).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    # The 64-bit hash's top 14 bits and its low 50, read without the 64-bit integer (which
    # leaves the compiled build's machine ints): the same registers as before.
    i = (d[0] << 8 | d[1]) >> (16 - _HLL_BITS)
    rest = int.from_bytes(d[1:8], "big") & ((1 << (64 - _HLL_BITS)) - 1)
    rank = (64 - _HLL_BITS) - rest.bit_length() + 1
    if rank > regs[i]:
        regs[i] = rank


def _hll_count(regs: bytearray) -> int:
    m = _HLL_SIZE
    z = 0.0
    zeros = 0
    for i in range(m):  # (compiled: a bytearray is indexed, not iterated)
        r = regs[i]
        z += 2.0 ** -r
        if r == 0:
            zeros += 1
    e = 0.7213 / (1 + 1.079 / m) * m * m / z
    if e <= 2.5 * m and zeros:
        e = m * math.log(m / zeros)
    return int(round(e))


def _restore_aggregator(
    servers: dict[tuple[str, str | None, str], ServerStats], total: ServerStats,
    max_servers: int, other: ServerStats | None, evictions: int,
    hll: bytes,
) -> Aggregator:
    a = Aggregator(max_servers)
    a.servers, a.total, a.other, a.evictions = servers, total, other, evictions
    a._hll = bytearray(hll)  # the summary's buckets are rebuilt when next needed
    return a
