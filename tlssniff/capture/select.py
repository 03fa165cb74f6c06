"""The frames of chosen connections, picked out of a capture at about the record-walk cost.

``report`` reads its captures a second time for ``evidence.pcapng``, wanting the packets of a
few hundred connections out of millions of frames. Decoding every frame to find its addresses
made that second pass cost half of the first one (a Python loop over ``frames()`` with a
decoded tuple per frame: 7.5 s of a 34 s report on a 100,000-connection egress capture).
:class:`FlowFrames` is a :class:`~tlssniff.capture.files.FrameSink` (compiled, ``setup.py``):
for the common frame (Ethernet, IPv4 without options or IPv6, TCP) the flow key is read in
place, ``buf[26:38]`` or ``buf[22:58]`` as the analyzer's fast path reads it, one dict lookup
decides, and only a wanted frame is copied out; any other frame goes through
:func:`~tlssniff.capture.decode.decode_frame`, which the shortcut's conditions copy, so both
agree on which frames are TCP and what their key is.
"""

from __future__ import annotations

from typing import Callable

from tlssniff.capture.decode import DPORT, DST, FLAGS, SPORT, SRC, MalformedFrame, decode_frame
from tlssniff.capture.files import FrameSink


def flow_key(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """A direction's key in the analyzer's layout: source ip, destination ip, source port,
    destination port (big-endian), as the frame holds them contiguously."""
    return src + dst + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


class FlowFrames(FrameSink):
    """Hands ``take(index, ts, linktype, tcp_flags, frame)`` each frame whose flow key is in
    ``wanted`` (key -> index), in file order; frames that do not decode are skipped."""

    def __init__(self, wanted: dict[bytes, int],
                 take: Callable[[int, float, int, int, bytes], None]) -> None:
        self.wanted = wanted
        self.take = take

    def frame(self, ts: float, linktype: int, buf: bytes, start: int, end: int) -> None:
        n = end - start
        s = start
        if linktype == 1 and n >= 48 and buf[s + 12] == 8 and buf[s + 13] == 0:
            if buf[s + 14] == 0x45 and buf[s + 23] == 6 and not (
                    buf[s + 20] << 8 | buf[s + 21]) & 0x3FFF:
                doff = buf[s + 46]
                data = 34 + ((doff >> 4) << 2)
                if doff >= 0x50 and data <= 14 + (buf[s + 16] << 8 | buf[s + 17]) and data <= n:
                    i = self.wanted.get(buf[s + 26:s + 38], -1)
                    if i >= 0:
                        self.take(i, ts, linktype, buf[s + 47], buf[start:end])
                    return
        elif linktype == 1 and n >= 70 and buf[s + 12] == 0x86 and buf[s + 13] == 0xDD:
            plen = buf[s + 18] << 8 | buf[s + 19]
            if buf[s + 14] >> 4 == 6 and buf[s + 20] == 6 and plen:
                doff = buf[s + 66]
                data = 54 + ((doff >> 4) << 2)
                if doff >= 0x50 and data <= 54 + plen and data <= n:
                    i = self.wanted.get(buf[s + 22:s + 58], -1)
                    if i >= 0:
                        self.take(i, ts, linktype, buf[s + 67], buf[start:end])
                    return
        frame = buf[start:end]
        try:
            d = decode_frame(linktype, frame)
        except MalformedFrame:
            return
        if d is None:
            return
        i = self.wanted.get(flow_key(d[SRC], d[SPORT], d[DST], d[DPORT]), -1)
        if i >= 0:
            self.take(i, ts, linktype, d[FLAGS], frame)
