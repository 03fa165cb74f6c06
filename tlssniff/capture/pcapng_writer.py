"""A small pcapng writer for ``tlssniff live --write``: the evidence of the handshakes.

One section, one interface (the captured one, with its link type, snap length and filter),
an Enhanced Packet Block per frame (microsecond timestamps, pcapng's default resolution) and, at
:meth:`PcapngWriter.close`, an Interface Statistics Block with the kernel's received/dropped
counts, so the file itself says whether the capture lost frames.

``tlssniff live`` writes the frames :meth:`Analyzer.feed_frame` reports as part of a connection
still in its handshake, and not the bulk data after the verdict. Reading the file back with
``tlssniff analyze`` gives the same verdicts; only the ``frames`` numbers differ (they count the
frames of the smaller file).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from tlssniff import __version__

_SHB, _IDB, _EPB, _ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
_BYTE_ORDER_MAGIC = 0x1A2B3C4D

# Options
_OPT_END = 0
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_FILTER = 11
_ISB_STARTTIME, _ISB_ENDTIME, _ISB_IFRECV, _ISB_IFDROP = 2, 3, 4, 5

_EPB_HEAD = struct.Struct("<IIIIIII")  # type, length, interface, ts high, ts low, caplen, len
_U32 = struct.Struct("<I")


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + _U32.pack(length)


def _ts64(ts: float) -> tuple[int, int]:
    us = int(round(ts * 1_000_000))
    return us >> 32, us & 0xFFFFFFFF


class PcapngWriter:
    """Write frames of one interface to ``out`` (a binary file object opened by the caller)."""

    def __init__(
        self,
        out: BinaryIO,
        linktype: int,
        snaplen: int = 262144,
        if_name: str | None = None,
        if_filter: str | None = None,
    ) -> None:
        self.out = out
        self.frames = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        shb_opts = _option(_SHB_USERAPPL, f"tlssniff {__version__}".encode()) + _option(_OPT_END, b"")
        out.write(_block(_SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts))
        idb_opts = b""
        if if_name:
            idb_opts += _option(_IF_NAME, if_name.encode())
        if if_filter:
            idb_opts += _option(_IF_FILTER, b"\0" + if_filter.encode())  # 0: libpcap syntax
        if idb_opts:
            idb_opts += _option(_OPT_END, b"")
        out.write(_block(_IDB, struct.pack("<HHI", linktype, 0, snaplen) + idb_opts))

    def write(self, ts: float, frame: bytes) -> None:
        n = len(frame)
        hi, lo = _ts64(ts)
        length = 32 + n + (-n % 4)
        self.out.write(
            _EPB_HEAD.pack(_EPB, length, 0, hi, lo, n, n) + frame + b"\0" * (-n % 4) + _U32.pack(length)
        )
        self.frames += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts

    def flush(self) -> None:
        self.out.flush()

    def close(self, received: int | None = None, dropped: int | None = None) -> None:
        """Write the statistics block (when counts are given) and flush; the caller closes
        the file."""
        if received is not None or dropped is not None:
            now = self.last_ts or 0.0
            hi, lo = _ts64(now)
            opts = b""
            if self.first_ts is not None:
                opts += _option(_ISB_STARTTIME, struct.pack("<II", *_ts64(self.first_ts)))
                opts += _option(_ISB_ENDTIME, struct.pack("<II", hi, lo))
            if received is not None:
                opts += _option(_ISB_IFRECV, struct.pack("<Q", received))
            if dropped is not None:
                opts += _option(_ISB_IFDROP, struct.pack("<Q", dropped))
            opts += _option(_OPT_END, b"")
            self.out.write(_block(_ISB, struct.pack("<III", 0, hi, lo) + opts))
        self.out.flush()
