"""The CLOCK victim search both flow tables evict with (O(1) amortized per flow).

Flows wait in a queue in the order they were queued; the flow at the head that was active since
it was queued (``last > stamp``) goes to the back instead of out: the CLOCK approximation of
least recently used. Entries of flows already gone (or moved to another queue) are skipped.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Protocol, TypeVar


class Queued(Protocol):
    last: float  # capture time of the flow's last packet
    stamp: float  # ``last`` when the flow last went to the back of its queue
    done: bool


F = TypeVar("F", bound=Queued)


def clock_victim(q: deque[F], live: Callable[[F], bool], pending: bool) -> F | None:
    """The least recently active live flow of ``q`` whose ``done`` is ``not pending`` (CLOCK),
    or None when there is none."""
    while q:
        flow = q.popleft()
        if not live(flow) or flow.done == pending:
            continue  # gone, or moved to the other queue: a stale entry
        if flow.last > flow.stamp:
            flow.stamp = flow.last  # active since it was queued: a second chance
            q.append(flow)
            continue
        return flow
    return None
