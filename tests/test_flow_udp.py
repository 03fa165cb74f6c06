"""flow/udp.py: the UDP table shares the TCP table's Limits, END_* reasons and CLOCK eviction."""

from __future__ import annotations

from tlssniff.flow.limits import END_EOF, END_EVICTED, Limits
from tlssniff.flow.udp import DETECT_DATAGRAMS, UdpTable


def _d(i: int, payload: bytes = b"\x00dns?") -> tuple:
    return (17, bytes([10, 0, i >> 8, i & 255]), b"\xc0\x00\x02\x01", 5000 + i, 53, 0, 0, 0, payload)


def test_bounded_done_first_and_recently_active_kept():
    t = UdpTable(lambda f: None, Limits(max_flows=10))
    for n in range(DETECT_DATAGRAMS):  # flow 0: given up on (done) after DETECT_DATAGRAMS
        t.datagram(float(n), _d(0), n)
    for i in range(1, 10):
        t.datagram(100.0 + i, _d(i), 100 + i)
    t.datagram(120.0, _d(1), 200)  # flow 1 active again: a second chance
    t.datagram(121.0, _d(10), 201)  # over the limit: down to 9 flows
    keys = {k for k in t.flows if k[1] != 53}
    alive = {k[1] - 5000 for k in keys}
    assert len(t.flows) // 2 == 9
    assert 0 not in alive  # the done flow goes first
    assert 1 in alive and 2 not in alive  # then the least recently active: 2, not 1 (active)
    assert t.evicted == 0  # neither had an app: nothing lost


def test_end_reasons_are_the_shared_ints():
    ended = []

    class App:
        done = False
        tracker = type("T", (), {"last_ts": 0.0})()

        def finish(self, reason: int) -> None:
            ended.append(reason)

    t = UdpTable(lambda f: None, Limits(max_flows=2))
    t.datagram(0.0, _d(0), 0)
    t.flows[(_d(0)[1], 5000, _d(0)[2], 53)].app = App()
    t.datagram(1.0, _d(1), 1)
    t.datagram(2.0, _d(2), 2)  # three flows over a limit of two: down to 90%, one flow
    assert [k[1] for k in t.flows if k[3] == 53] == [5002]
    t.flows[(_d(2)[1], 5002, _d(2)[2], 53)].app = App()
    t.finish_all()
    assert ended == [END_EVICTED, END_EOF]
    assert t.evicted == 1
