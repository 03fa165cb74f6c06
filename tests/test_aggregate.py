"""Per-server aggregation in bounded memory (analysis/aggregate.py).

Below the bound every figure is exact. Beyond it (a forward proxy's capture: hundreds of
thousands of servers) the rows are a space-saving summary: every server with more than
``handshakes / max_servers`` handshakes keeps its row, a row's figures are exact for the
handshakes it counts, at most ``untracked`` of its earlier ones are under "other servers",
and the rows plus "other servers" add up to the totals exactly.
"""

from __future__ import annotations

import pickle
import random
from collections import Counter

from tlssniff.analysis.aggregate import Aggregator, ServerStats
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered

FIGURES = ("handshakes", "classified", "resumed", "offered", "accepted", "refused", "hrr",
           "early_data_offered")


def _verdict(i: int, server: int, resumed: bool) -> ConnectionVerdict:
    return ConnectionVerdict(
        1_700_000_000.0 + i / 1000, f"10.0.{i >> 8 & 255}.{i & 255}:{40000 + i % 20000}",
        f"10.128.{server >> 8 & 255}.{server & 255}:443", sni=f"s{server}.example",
        version="TLSv1.3", offered=Offered.PSK if resumed else Offered.NONE,
        handshake=Handshake.PSK if resumed else Handshake.FULL, established=True)


def _stream(n: int, seed: int = 1) -> list[ConnectionVerdict]:
    """Egress-shaped: 30% of connections to 20 busy servers, the rest to servers seen once."""
    rng = random.Random(seed)
    out = []
    fresh = 1000
    for i in range(n):
        if rng.random() < 0.3:
            server = rng.randrange(20) if rng.random() < 0.8 else rng.randrange(20, 200)
        else:
            server, fresh = fresh, fresh + 1
        out.append(_verdict(i, server, rng.random() < 0.5))
    return out


def _sum(stats: list[ServerStats]) -> dict:
    return {f: sum(getattr(s, f) for s in stats) for f in FIGURES}


def _check_bounded(agg: Aggregator, verdicts: list[ConnectionVerdict]) -> None:
    truth = Counter((v.server, v.sni, v.transport) for v in verdicts)
    assert len(agg.servers) <= agg.max_servers
    rows = list(agg.servers.values()) + ([agg.other] if agg.other else [])
    assert _sum(rows) == _sum([agg.total])
    assert agg.total.handshakes == len(verdicts)
    for key, s in agg.servers.items():
        assert s.handshakes <= truth[key] <= s.handshakes + s.untracked, key
    floor = len(verdicts) / agg.max_servers
    for key, n in truth.items():
        if n > floor:
            assert key in agg.servers, (key, n)


def test_exact_below_the_bound():
    verdicts = _stream(2000)
    agg = Aggregator(max_servers=0)
    for v in verdicts:
        agg.add(v)
    truth = Counter((v.server, v.sni, v.transport) for v in verdicts)
    assert {k: s.handshakes for k, s in agg.servers.items()} == dict(truth)
    assert agg.other is None and agg.servers_seen() == len(truth)
    assert all(s.untracked == 0 and "untracked" not in s.to_dict() for s in agg.servers.values())


def test_bounded_summary_keeps_the_heavy_servers_and_counts_the_rest():
    verdicts = _stream(20_000)
    agg = Aggregator(max_servers=100)
    for v in verdicts:
        agg.add(v)
    _check_bounded(agg, verdicts)
    assert agg.other is not None and agg.other.handshakes > 10_000
    busiest = {k for k, _ in Counter((v.server, v.sni, v.transport)
                                     for v in verdicts).most_common(20)}
    assert busiest <= set(agg.servers)
    distinct = len({v.server for v in verdicts})
    assert abs(agg.servers_seen() - distinct) < 0.03 * distinct
    d = agg.other_dict()
    assert d is not None and d["handshakes"] == agg.other.handshakes
    assert d["servers_estimate"] == agg.servers_seen() - len(agg.servers)


def test_merge_is_exact_within_the_bound_and_order_independent_beyond():
    verdicts = _stream(6000, seed=2)
    half = len(verdicts) // 2
    whole = Aggregator(max_servers=0)
    a, b = Aggregator(max_servers=0), Aggregator(max_servers=0)
    for v in verdicts:
        whole.add(v)
    for v in verdicts[:half]:
        a.add(v)
    for v in verdicts[half:]:
        b.add(v)
    a.merge(b)
    assert {k: s.to_dict() for k, s in a.servers.items()} == \
        {k: s.to_dict() for k, s in whole.servers.items()}

    def bounded(part):
        agg = Aggregator(max_servers=50)
        for v in part:
            agg.add(v)
        return agg

    ab, ba = bounded(verdicts[:half]), bounded(verdicts[half:])
    ab.merge(bounded(verdicts[half:]))
    ba.merge(bounded(verdicts[:half]))
    assert set(ab.servers) == set(ba.servers)
    for k in ab.servers:
        x, y = ab.servers[k].to_dict(), ba.servers[k].to_dict()
        assert x == y, k
    assert ab.other.to_dict() == ba.other.to_dict()
    _check_bounded(ab, verdicts)
    # and it goes on adding after a merge
    more = _stream(3000, seed=3)
    for v in more:
        ab.add(v)
    _check_bounded(ab, verdicts + more)


def test_pickled_aggregator_carries_on_identically():
    verdicts = _stream(8000, seed=4)
    agg = Aggregator(max_servers=60)
    for v in verdicts[:5000]:
        agg.add(v)
    copy = pickle.loads(pickle.dumps(agg))
    for v in verdicts[5000:]:
        agg.add(v)
        copy.add(v)
    assert {k: s.to_dict() for k, s in agg.servers.items()} == \
        {k: s.to_dict() for k, s in copy.servers.items()}
    assert agg.other_dict() == copy.other_dict()
    _check_bounded(copy, verdicts)
