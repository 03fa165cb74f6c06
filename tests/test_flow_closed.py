"""Closed connections leave the flow table CLOSED_GRACE after their last packet, from their own
queue: not at the next full idle scan, and at the cost of the closed connections only."""

from __future__ import annotations

from pathlib import Path

from tlssniff.engine.pipeline import Analyzer
from tlssniff.capture.decode import decode_frame
from tlssniff.capture.files import open_capture
from tlssniff.flow.limits import Limits
from tlssniff.flow.table import CLOSED_GRACE, IDLE_SCAN

DEMO = Path(__file__).resolve().parent.parent / "captures" / "demo.pcapng"


def one_connection() -> list[tuple]:
    with open_capture(DEMO) as cap:
        frames = list(cap.frames())
    first = decode_frame(frames[0][1], frames[0][2])
    conn = {(first[1], first[3]), (first[2], first[4])}
    return [f for f in frames
            if (d := decode_frame(f[1], f[2])) and {(d[1], d[3]), (d[2], d[4])} == conn]


def fed(frames) -> tuple[Analyzer, list]:
    verdicts: list = []
    analyzer = Analyzer(verdicts.append, Limits(idle_timeout=3600.0))
    for n, (ts, lt, fr) in enumerate(frames, 1):
        analyzer.feed_frame(ts, lt, fr, n)
    return analyzer, verdicts


def test_a_closed_connection_leaves_a_grace_after_its_last_packet():
    frames = one_connection()
    analyzer, verdicts = fed(frames)
    table, last = analyzer.table, frames[-1][0]
    assert len(verdicts) == 1 and table.count == 1 and next(iter(table.flows.values())).closed
    table.sweep(last + CLOSED_GRACE - 0.5)  # the full scan runs here, and keeps it
    assert table.count == 1
    table.sweep(last + CLOSED_GRACE + 0.5)  # no full scan before IDLE_SCAN: the closed queue
    assert table.count == 0 and not table.flows
    assert CLOSED_GRACE < IDLE_SCAN
    analyzer.finish()
    assert len(verdicts) == 1


def test_a_packet_after_the_close_restarts_the_grace():
    frames = one_connection()
    analyzer, _ = fed(frames)
    table, last = analyzer.table, frames[-1][0]
    late = last + CLOSED_GRACE - 1.0
    ts, lt, fr = frames[-1]
    analyzer.feed_frame(late, lt, fr, len(frames) + 1)  # a retransmitted last segment
    table.sweep(last + CLOSED_GRACE + 0.5)
    assert table.count == 1  # seen 1.5 s ago
    table.sweep(late + CLOSED_GRACE + 0.5)
    assert table.count == 0


def test_open_connections_stay_until_the_idle_timeout():
    frames = [f for f in one_connection()
              if not decode_frame(f[1], f[2])[7] & 0x05]  # no FIN, no RST: never closed
    analyzer, verdicts = fed(frames)
    table, last = analyzer.table, frames[-1][0]
    assert table.count == 1 and not next(iter(table.flows.values())).closed
    for dt in (CLOSED_GRACE + 1, IDLE_SCAN + 1, 3 * IDLE_SCAN):
        table.sweep(last + dt)
        assert table.count == 1
    table.sweep(last + 3600.0 + 1)
    assert table.count == 0
