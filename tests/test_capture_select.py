"""FlowFrames (report's evidence pass) picks exactly the frames the decoder would.

Its in-place shortcut copies decode_frame's conditions; every frame of every shipped capture
is checked against the decoder: wanted with every connection's key, and wanted with none.
"""

from __future__ import annotations

import pytest

from tests.golden import shipped_captures
from tlssniff.capture.decode import DPORT, DST, FLAGS, SPORT, SRC, MalformedFrame, decode_frame
from tlssniff.capture.files import open_capture
from tlssniff.capture.select import FlowFrames, flow_key

CAPTURES = shipped_captures()


def decoded(path) -> list[tuple]:
    """(key, ts, linktype, flags, frame) of every frame that decodes, in file order."""
    out = []
    with open_capture(path) as cap:
        for ts, linktype, frame in cap.frames():
            try:
                d = decode_frame(linktype, frame)
            except MalformedFrame:
                continue
            if d is not None:
                out.append((flow_key(d[SRC], d[SPORT], d[DST], d[DPORT]), ts, linktype,
                            d[FLAGS], frame))
    return out


def picked(path, wanted: dict[bytes, int]) -> list[tuple]:
    got: list[tuple] = []
    sink = FlowFrames(wanted, lambda i, ts, lt, flags, frame: got.append((i, ts, lt, flags,
                                                                          frame)))
    with open_capture(path) as cap:
        cap.walk(sink)
    return got


def test_the_corpus_is_there():
    assert len(CAPTURES) > 100


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_flow_frames_equal_the_decoder(path):
    frames = decoded(path)
    keys = {}
    for k, *_ in frames:
        keys.setdefault(k, len(keys))
    want = [(keys[k], ts, lt, flags, frame) for k, ts, lt, flags, frame in frames]
    assert picked(path, keys) == want
    # Every other key: the wanted half of the connections only.
    half = {k: i for k, i in keys.items() if i % 2 == 0}
    assert picked(path, half) == [w for w in want if w[0] % 2 == 0]
    assert picked(path, {}) == []
