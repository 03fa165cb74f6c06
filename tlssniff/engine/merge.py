"""The parent's per-verdict work of ``--jobs N`` on one capture (engine/parallel.py): the
flow-hash partitions' records merged back into the one-process order, the session ids issued
on the way, and the lines written; and the workers' per-verdict aggregate (OrderedAggregate). Compiled with the hot path (setup.py): with two cores and
two workers every CPU second the parent spends is taken from a worker."""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from typing import Any, Callable, Iterator

from tlssniff.analysis.aggregate import Aggregator
from tlssniff.engine.pipeline import MAX_ISSUED_IDS
from tlssniff.analysis.verdict import ConnectionVerdict

Order = tuple[int, int, int]  # a verdict's place in the one-process order (Analyzer.order)


class IssuedIds:
    """The session ids full handshakes issued, as one process remembers them (the last
    MAX_ISSUED_IDS), fed verdicts in the one-process order: settles the alternative verdicts
    of partitions (Analyzer.alternative)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, session_id: bytes) -> bool:
        return session_id in self._ids

    def remember(self, issued_hex: str | None) -> None:
        if issued_hex:
            self._ids[bytes.fromhex(issued_hex)] = None
            if len(self._ids) > MAX_ISSUED_IDS:
                self._ids.popitem(last=False)


class OrderedAggregate:
    """An Aggregator plus what merging several of them in the one-process order needs: where
    each server was first seen and where its starttls was last set (the last one wins)."""

    def __init__(self) -> None:
        self.agg = Aggregator()
        self.first: dict[tuple, Order] = {}
        self.starttls_at: dict[tuple, Order] = {}
        self.total_starttls_at: Order | None = None

    def add(self, order: Order, v: ConnectionVerdict) -> None:
        key = (v.server, v.sni, v.transport)
        if key not in self.first:
            self.first[key] = order
        if v.starttls:
            self.starttls_at[key] = order
            self.total_starttls_at = order
        self.agg.add(v)


def _order(record: tuple) -> Any:
    return record[0]


def merge_records(sources: list[Iterator[list]]) -> Iterator[tuple]:
    """The records of several partitions (each an iterator of batches, each batch in order of
    its first item, the record's place in the one-process order) in the one-process order.
    Two partitions (``--jobs 2``) take a two-way merge over the batches themselves; more go
    through ``heapq.merge``."""
    if len(sources) != 2:
        return heapq.merge(*(itertools.chain.from_iterable(s) for s in sources), key=_order)
    return _merge2(sources[0], sources[1])


def _next_batch(batches: Iterator[list]) -> list:
    """The next batch that holds a record, or [] at the end."""
    for batch in batches:
        if batch:
            return batch
    return []


def _merge2(left: Iterator[list], right: Iterator[list]) -> Iterator[tuple]:
    a: list = _next_batch(left)
    b: list = _next_batch(right)
    i = 0
    j = 0
    while True:
        if i == len(a):
            a = _next_batch(left)
            i = 0
            if not a:
                yield from b[j:]
                for rest in right:
                    yield from rest
                return
        if j == len(b):
            b = _next_batch(right)
            j = 0
            if not b:
                yield from a[i:]
                for rest in left:
                    yield from rest
                return
        ra: tuple = a[i]
        rb: tuple = b[j]
        if rb[0] < ra[0]:  # ties (none are expected) go left first, as heapq.merge's do
            yield rb
            j += 1
        else:
            yield ra
            i += 1


def replay(records: Iterator[tuple], on_verdict: Callable[[ConnectionVerdict], None]) -> None:
    """The merged records of partitions that spooled verdicts (``(order, verdict,
    alternative)``: parallel.analyze_part without ``fmt``, fanout.SpoolKeeper) into
    ``on_verdict``, each verdict settled as one process decides it: its alternative where an
    earlier connection issued the session id it asked about. Compiled: this runs on one core
    after the analysis (100,000 verdicts on the handshake capture)."""
    issued = IssuedIds()
    for record in records:
        v: ConnectionVerdict = record[1]
        alt = record[2]
        if alt is not None and alt[0] in issued:
            v = alt[1]
        issued.remember(v.issued_session_id)
        on_verdict(v)


def write_merged(records: Iterator[tuple], issued: IssuedIds, settled: OrderedAggregate,
                 write: Callable[[str], object]) -> None:
    """Write the lines of merged records (``parallel.analyze_part`` with ``fmt``), settling the
    verdicts that depend on earlier connections' issued session ids (``settled``: the
    OrderedAggregate those verdicts go to). Lines go out joined, 1,000 at a time."""
    chunk: list[str] = []
    for record in records:
        alt = record[3]
        text: str
        if alt is None:
            text = record[1]
            issued_hex = record[2]
        else:
            sid, v, text, alt_v, alt_text = alt
            if sid in issued:
                v, text = alt_v, alt_text
            issued_hex = v.issued_session_id
            settled.add(record[0], v)
        if issued_hex:
            issued.remember(issued_hex)
        chunk.append(text)
        if len(chunk) >= 1000:
            write("".join(chunk))
            chunk.clear()
    if chunk:
        write("".join(chunk))
