"""TCP reassembly of one direction: order, retransmission, overlap, wrap-around, bounds."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tlssniff.flow.reassembly import MASK, StreamReassembler


def test_in_order_after_syn():
    r = StreamReassembler()
    r.syn(1000)
    assert r.add(1001, b"abc") == b"abc"
    assert r.add(1004, b"de") == b"de"
    assert not r.stuck


def test_out_of_order_is_held_then_released():
    r = StreamReassembler()
    r.syn(0)
    assert r.add(4, b"def") is None
    assert r.stuck
    assert r.add(1, b"abc") == b"abcdef"
    assert not r.stuck


def test_pure_retransmission_is_dropped():
    r = StreamReassembler()
    r.syn(0)
    assert r.add(1, b"abc") == b"abc"
    assert r.add(1, b"abc") is None
    assert r.add(2, b"bc") is None


def test_overlap_delivers_only_new_bytes():
    r = StreamReassembler()
    r.syn(0)
    assert r.add(1, b"abc") == b"abc"
    assert r.add(2, b"bcdef") == b"def"


def test_overlapping_held_segments():
    r = StreamReassembler()
    r.syn(0)
    assert r.add(3, b"cdef") is None
    assert r.add(5, b"efgh") is None
    assert r.add(1, b"ab") == b"abcdefgh"
    assert not r.pending


def test_sequence_wraps_around():
    r = StreamReassembler()
    r.syn(MASK - 1)  # data starts at 2**32 - 1
    assert r.add(MASK, b"ab") == b"ab"
    assert r.add(1, b"cd") == b"cd"


def test_no_syn_starts_at_first_segment():
    r = StreamReassembler()
    assert r.add(5000, b"xy") == b"xy"
    assert r.add(5002, b"z") == b"z"


def test_buffer_limit_marks_gap_instead_of_growing():
    r = StreamReassembler(limit=10)
    r.syn(0)
    assert r.add(100, b"x" * 8) is None
    assert r.add(200, b"y" * 8) is None  # would exceed the limit: dropped, gap recorded
    assert r.gap
    assert r.pending_bytes == 8


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
    order=st.randoms(use_true_random=False),
    isn=st.integers(min_value=0, max_value=MASK),
    dup=st.booleans(),
)
def test_any_order_and_duplication_yields_the_stream(data, cuts, order, isn, dup):
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    segments = [(points[i], data[points[i] : points[i + 1]]) for i in range(len(points) - 1)]
    if dup:
        segments += segments[: len(segments) // 2]
    order.shuffle(segments)
    r = StreamReassembler()
    r.syn(isn)
    out = b"".join(r.add((isn + 1 + off) & MASK, seg) or b"" for off, seg in segments)
    assert out == data
    assert not r.stuck
