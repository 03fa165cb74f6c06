"""The one pcapng writer: ``live --write``, the report's ``evidence.pcapng`` and ``probe --write``.

One section (a Section Header Block naming tlssniff), an Interface Description Block per link
type (:meth:`PcapngWriter.interface`; the constructor declares the first when given one), an
Enhanced Packet Block per frame (microsecond timestamps, pcapng's default resolution) with an
optional ``opt_comment``, and, at :meth:`PcapngWriter.close`, an Interface Statistics Block with
the kernel's received/dropped counts, so the file itself says whether the capture lost frames.

``tlssniff live`` writes the frames :meth:`Analyzer.feed_frame` reports as part of a connection
still in its handshake, and not the bulk data after the verdict. Reading the file back with
``tlssniff analyze`` gives the same verdicts; only the ``frames`` numbers differ (they count the
frames of the smaller file).

Reading pcapng is :mod:`tlssniff.capture.files`' job.
"""

from __future__ import annotations

import struct
from typing import IO

from tlssniff import __version__

SHB, IDB, EPB, ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
DEFAULT_SNAPLEN = 262144

# Options
_OPT_END = 0
_OPT_COMMENT = 1
_SHB_USERAPPL = 4
_IF_NAME = 2
_IF_FILTER = 11
_ISB_STARTTIME, _ISB_ENDTIME, _ISB_IFRECV, _ISB_IFDROP = 2, 3, 4, 5

_EPB_HEAD = struct.Struct("<IIIIIII")  # type, length, interface, ts high, ts low, caplen, len
_U32 = struct.Struct("<I")

MAX_COMMENT = 8192  # bytes of a packet comment (the option length field holds 65535)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + _U32.pack(length)


def _ts64(ts: float) -> tuple[int, int]:
    us = int(round(ts * 1_000_000))
    return us >> 32, us & 0xFFFFFFFF


def comment_bytes(comment: str, limit: int = MAX_COMMENT) -> bytes:
    """A packet comment as pcapng stores it: UTF-8 (bytes that are not, escaped), no NUL (it
    would end the comment in readers), at most ``limit`` bytes, cut on a character boundary
    and saying how long it was."""
    data = comment.encode("utf-8", "backslashreplace").replace(b"\0", b"\\x00")
    if len(data) <= limit:
        return data
    tail = f"... ({len(data)} bytes)".encode()
    return data[: limit - len(tail)].decode("utf-8", "ignore").encode() + tail


class PcapngWriter:
    """Write frames to ``out`` (a binary file object opened, and closed, by the caller).

    ``linktype`` given, the first interface (number 0) is declared at once; otherwise call
    :meth:`interface` (or :meth:`interface_for`) before writing. ``application`` goes after
    ``tlssniff VERSION`` in the section header (``"report"``, ``"probe"``).
    """

    def __init__(
        self,
        out: IO[bytes],
        linktype: int | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        if_name: str | None = None,
        if_filter: str | None = None,
        application: str | None = None,
    ) -> None:
        self.out = out
        self.frames = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._interfaces: dict[int, int] = {}  # link type -> interface id of interface_for
        appl = f"tlssniff {__version__}" + (f" {application}" if application else "")
        shb_opts = _option(_SHB_USERAPPL, appl.encode()) + _option(_OPT_END, b"")
        out.write(_block(SHB, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts))
        self._count = 0
        if linktype is not None:
            self.interface(linktype, snaplen, if_name, if_filter)

    def interface(
        self,
        linktype: int,
        snaplen: int = DEFAULT_SNAPLEN,
        if_name: str | None = None,
        if_filter: str | None = None,
    ) -> int:
        """Declare an interface; returns its number for :meth:`write`."""
        idb_opts = b""
        if if_name:
            idb_opts += _option(_IF_NAME, if_name.encode())
        if if_filter:
            idb_opts += _option(_IF_FILTER, b"\0" + if_filter.encode())  # 0: libpcap syntax
        if idb_opts:
            idb_opts += _option(_OPT_END, b"")
        self.out.write(_block(IDB, struct.pack("<HHI", linktype, 0, snaplen) + idb_opts))
        self._interfaces.setdefault(linktype, self._count)
        self._count += 1
        return self._count - 1

    def interface_for(self, linktype: int) -> int:
        """The interface of this link type, declared (without options) on first use."""
        iface = self._interfaces.get(linktype)
        return self.interface(linktype) if iface is None else iface

    def write(self, ts: float, frame: bytes, interface: int = 0, comment: str | None = None) -> None:
        n = len(frame)
        hi, lo = _ts64(ts)
        pad = b"\0" * (-n % 4)
        if comment is None:
            length = 32 + n + len(pad)
            self.out.write(_EPB_HEAD.pack(EPB, length, interface, hi, lo, n, n) + frame + pad + _U32.pack(length))
        else:
            opts = _option(_OPT_COMMENT, comment_bytes(comment)) + _option(_OPT_END, b"")
            body = struct.pack("<IIIII", interface, hi, lo, n, n)
            self.out.write(_block(EPB, body + frame + pad + opts))
        self.frames += 1
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts

    def flush(self) -> None:
        self.out.flush()

    def close(self, received: int | None = None, dropped: int | None = None) -> None:
        """Write the statistics block of interface 0 (when counts are given) and flush; the
        caller closes the file."""
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
            self.out.write(_block(ISB, struct.pack("<III", 0, hi, lo) + opts))
        self.out.flush()
