"""Capture file readers: pcap (µs and ns, either byte order), pcapng and gzip around either.

``open_capture(path)`` checks the file and its header and raises :class:`CaptureError` (one line,
naming the file) when it cannot be read at all. ``CaptureFile.frames()`` then yields
``(epoch_seconds, linktype, frame_bytes)`` and never raises for damage inside the file: a
truncated or corrupt record ends reading and leaves a line in ``CaptureFile.warnings``.

This is the hot path of an offline run. The file is read in large chunks into a ``bytes`` buffer
that a generator walks with precompiled ``struct.Struct.unpack_from``; the only per-frame object
is the yielded tuple and its frame slice. Counters (``frames_read``, ``position``) are stored on
the object once per chunk and once at the end, not per frame.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, BinaryIO, Final

from tlssniff.errors import CaptureError

if TYPE_CHECKING:
    # Machine integers for mypyc (setup.py): only annotations use them, which the interpreter
    # never evaluates, so the pure-Python modules need no mypy_extensions.
    from mypy_extensions import i64

__all__ = ["CaptureFile", "FrameSink", "open_capture", "CHUNK_SIZE", "MAX_CAPLEN", "MAX_PCAPNG_BLOCK"]

#: Bytes read from the file (or produced by the decompressor) per chunk.
CHUNK_SIZE = 1 << 20
#: A pcap record claiming more captured bytes than this (or 4x the snaplen) is corrupt.
MAX_CAPLEN: Final = 262144
#: A pcapng block longer than this is corrupt.
MAX_PCAPNG_BLOCK: Final = 16 << 20

_PCAP_MAGIC: Final = {
    # first four bytes: (byte order, timestamp divisor, format name)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, "pcap-ns"),
}
_PCAP_UNSUPPORTED: Final = {
    b"\x34\xcd\xb2\xa1": "modified (Kuznetzov) pcap",
    b"\xa1\xb2\xcd\x34": "modified (Kuznetzov) pcap",
    b"\x34\x12\xc3\xd4": "Navtel pcap",
}
_PCAPNG_SHB: Final = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM: Final = 0x1A2B3C4D
_GZIP_MAGIC: Final = b"\x1f\x8b"
_GZIP_PIECE: Final = 1 << 14

_PCAP_HEADER_LEN: Final = 24
_HEAD_LEN: Final = 32
_PCAP_RECORD_LEN: Final = 16

# pcapng block types
_SHB: Final = 0x0A0D0D0A
_IDB: Final = 1
_PB: Final = 2  # obsolete Packet Block
_SPB: Final = 3
_EPB: Final = 6
# pcapng IDB options
_OPT_ENDOFOPT: Final = 0
_IF_TSRESOL: Final = 9
_IF_TSOFFSET: Final = 14


class _PcapngStructs:
    """The precompiled structs of one pcapng byte order."""

    __slots__ = ("u32", "blockhead", "epb", "epb_full", "pb", "idb", "opt", "i64", "shb")

    def __init__(self, bo: str) -> None:
        self.u32 = struct.Struct(bo + "I")
        self.blockhead = struct.Struct(bo + "II")  # block type, block total length
        self.epb = struct.Struct(bo + "IIIII")  # interface id, ts high, ts low, caplen, origlen
        self.epb_full = struct.Struct(bo + "7I")  # block head + the EPB fields above
        self.pb = struct.Struct(bo + "HHIIII")  # interface id, drops, ts high, ts low, caplen, len
        self.idb = struct.Struct(bo + "HHI")  # linktype, reserved, snaplen
        self.opt = struct.Struct(bo + "HH")  # option code, option length
        self.i64 = struct.Struct(bo + "q")
        self.shb = struct.Struct(bo + "IHH")  # byte-order magic, major, minor


_PCAPNG_STRUCTS: Final = {"<": _PcapngStructs("<"), ">": _PcapngStructs(">")}




class FrameSink:
    """Receives the frames of a capture in place: the frame is ``buf[start:end]``.

    The analyzer's loop is a sink (no bytes object is made for a frame it skips); the
    ``frames()`` iterator is one that copies each frame out.
    """

    def frame(self, ts: float, linktype: int, buf: bytes, start: int, end: int) -> None:
        raise NotImplementedError


class _FrameList(FrameSink):
    def __init__(self) -> None:
        self.items: list[tuple[float, int, bytes]] = []

    def frame(self, ts: float, linktype: int, buf: bytes, start: int, end: int) -> None:
        self.items.append((ts, linktype, buf[start:end]))


def _display_name(path: str) -> str:
    """The path as the user gave it, kept on one line."""
    if any(ord(c) < 32 for c in path):
        return repr(path)
    return path


def open_capture(path: str | os.PathLike[str]) -> CaptureFile:
    """Open a pcap, pcapng or gzip-compressed capture; the format is found by its magic number.

    Raises :class:`CaptureError` when the file is missing, unreadable, empty, not a capture, or
    its global header is corrupt.
    """
    return CaptureFile(path)


def pcap_record(buf: bytes, off: i64, le: bool) -> tuple[i64, i64, i64]:
    """The seconds, the fraction and the captured length of the pcap record header at
    ``buf[off:off + 16]`` (the caller checked that it is there), in the file's byte order.
    Every walk of a pcap reads its records with it (here and engine/fanout.py)."""
    if le:
        return (buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16 | buf[off + 3] << 24,
                buf[off + 4] | buf[off + 5] << 8 | buf[off + 6] << 16 | buf[off + 7] << 24,
                buf[off + 8] | buf[off + 9] << 8 | buf[off + 10] << 16 | buf[off + 11] << 24)
    return (buf[off] << 24 | buf[off + 1] << 16 | buf[off + 2] << 8 | buf[off + 3],
            buf[off + 4] << 24 | buf[off + 5] << 16 | buf[off + 6] << 8 | buf[off + 7],
            buf[off + 8] << 24 | buf[off + 9] << 16 | buf[off + 10] << 8 | buf[off + 11])


class CaptureFile:
    """One open capture file. Use as a context manager, or just iterate ``frames()`` to the end.

    Attributes:
        path: the path as given.
        format: ``"pcap"``, ``"pcap-ns"`` or ``"pcapng"``.
        compressed: the file is gzip-compressed.
        size: bytes on disk (the compressed size for a gzip file), ``None`` if unknown.
        position: bytes of the on-disk file read so far (updated per chunk; for progress bars).
        warnings: one-line messages about damage found while reading (truncation, corruption).
        frames_read: frames yielded so far (updated per chunk; exact once iteration ends).
        linktype: the link type of a pcap file, or of the first pcapng interface (``None`` if the
            pcapng file has no interface before its first packet block).
        snaplen: the snapshot length of a pcap file (``None`` for pcapng).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.name = _display_name(str(self.path))
        self.size: int | None = None
        self.position = 0
        self.warnings: list[str] = []
        self.frames_read = 0
        self.compressed = False
        self.format = ""
        self.linktype: int | None = None
        self.snaplen: int | None = None
        self._raw: BinaryIO | None = None
        self._started = False
        self._closed_scan = False
        self._frames_gen: Generator[tuple[float, int, bytes], None, None] | None = None
        # Walker state (see _scan_pcap, _scan_pcapng): the buffer, the next record's offset in
        # it, and that buffer's offset in the (decompressed) capture data.
        self._buf = b""
        self._off = 0
        self._base = 0
        self._pcapng = False
        self._pcap_le = True
        self._div = 1.0
        self._pcap_linktype = 0
        self._maxcap = MAX_CAPLEN
        self._ng = _PCAPNG_STRUCTS["<"]
        # per pcapng interface: (linktype, timestamp divisor, timestamp offset, snaplen)
        self._ifaces: list[tuple[int, int, int, int]] = []
        self._last_ts = 0.0
        try:
            self._raw = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
            try:
                self.size = os.fstat(self._raw.fileno()).st_size
            except OSError:
                self.size = None
            self._open()
        except FileNotFoundError:
            self.close()
            raise CaptureError(f"{self.name}: no such file") from None
        except IsADirectoryError:
            self.close()
            raise CaptureError(f"{self.name}: is a directory, not a capture file") from None
        except PermissionError:
            self.close()
            raise CaptureError(f"{self.name}: permission denied") from None
        except OSError as exc:
            self.close()
            raise CaptureError(f"{self.name}: cannot read ({exc.strerror or exc})") from None
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        raw = self._raw
        assert raw is not None
        first = raw.read(CHUNK_SIZE)
        self.position = len(first)
        if not first:
            raise CaptureError(f"{self.name}: empty file")
        self._gzip_error = ""
        if first[:2] == _GZIP_MAGIC:
            self.compressed = True
            self._chunks = self._gunzip_chunks(first)
            head = b""
        else:
            self._chunks = self._plain_chunks()
            head = first
        # The checks below need the first 32 bytes (if the file has them).
        while len(head) < _HEAD_LEN:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            head += chunk
        if not head:
            if self._gzip_error:
                raise CaptureError(f"{self.name}: corrupt gzip data ({self._gzip_error})")
            raise CaptureError(f"{self.name}: empty file (after gzip decompression)")
        magic = head[:4]
        what = " (after gzip decompression)" if self.compressed else ""
        if magic in _PCAP_MAGIC:
            self._open_pcap(head)
        elif magic == _PCAPNG_SHB:
            self._open_pcapng(head)
        elif magic in _PCAP_UNSUPPORTED:
            raise CaptureError(f"{self.name}: {_PCAP_UNSUPPORTED[magic]} files are not supported")
        else:
            raise CaptureError(
                f"{self.name}: not a pcap or pcapng file{what} (starts with 0x{magic.hex()})"
            )

    def _open_pcap(self, head: bytes) -> None:
        bo, div, fmt = _PCAP_MAGIC[head[:4]]
        if len(head) < _PCAP_HEADER_LEN:
            raise CaptureError(
                f"{self.name}: corrupt pcap header (file is {len(head)} bytes, the header is 24)"
            )
        major, minor, _zone, _sigfigs, snaplen, ltfield = struct.unpack_from(bo + "HHiIII", head, 4)
        if major != 2 or minor > 4:
            raise CaptureError(f"{self.name}: unsupported pcap version {major}.{minor}")
        # The upper bits of the link type field carry FCS information; the type is the low 16.
        if ltfield & 0x03FF0000:
            raise CaptureError(f"{self.name}: corrupt pcap header (link type field 0x{ltfield:x})")
        self.format = fmt
        self.linktype = ltfield & 0xFFFF
        self.snaplen = snaplen
        self._maxcap = MAX_CAPLEN if snaplen == 0 else min(MAX_CAPLEN, 4 * snaplen)
        self._pcap_le = bo == "<"
        self._div = float(div)
        self._pcap_linktype = self.linktype
        self._buf = head
        self._off = _PCAP_HEADER_LEN

    def _open_pcapng(self, head: bytes) -> None:
        self.format = "pcapng"
        err = _check_shb(head, 0)
        if err:
            raise CaptureError(f"{self.name}: {err}")
        self.linktype = _first_linktype(head)
        self._pcapng = True
        self._buf = head
        self._off = 0
        self._ng = _PCAPNG_STRUCTS[">" if struct.unpack_from("<I", head, 8)[0] != _PCAPNG_BOM else "<"]

    # -- chunk sources ---------------------------------------------------------------------

    def _plain_chunks(self) -> Iterator[bytes]:
        assert self._raw is not None
        read = self._raw.read
        while True:
            data = read(CHUNK_SIZE)
            if not data:
                return
            self.position += len(data)
            yield data

    def _gunzip_chunks(self, first: bytes) -> Iterator[bytes]:
        """Decompressed chunks of a gzip file (several members allowed), at most CHUNK_SIZE each.

        zlib's streaming decompressor is used rather than ``gzip.GzipFile`` so that a stream cut
        short or damaged still delivers the bytes before the damage, and memory stays bounded.
        Input is fed in small pieces: an error (a bad CRC is only seen at the end of a member)
        loses the output of one piece.
        """
        assert self._raw is not None
        raw_read = self._raw.read
        d = zlib.decompressobj(wbits=31)
        fresh = True  # no input fed to ``d`` yet
        data = first  # compressed bytes not yet fed, from ``pos``
        pos = 0
        tail = b""  # input zlib held back because the output limit was reached
        try:
            while True:
                if not tail and pos >= len(data):
                    data = raw_read(CHUNK_SIZE)
                    pos = 0
                    if not data:
                        break
                    self.position += len(data)
                if fresh:
                    rest = data[pos:]
                    if not rest.strip(b"\0"):
                        pos = len(data)  # zero padding after the last member
                        continue
                    if rest[:2] != _GZIP_MAGIC:
                        self.warnings.append(
                            f"{self.name}: data after the end of the gzip stream ignored"
                        )
                        return
                    fresh = False
                if tail:
                    piece = tail
                else:
                    piece = data[pos : pos + _GZIP_PIECE]
                    pos += _GZIP_PIECE
                out = d.decompress(piece, CHUNK_SIZE)
                tail = d.unconsumed_tail
                if out:
                    yield out
                if d.eof:
                    data = d.unused_data + data[pos:]
                    pos = 0
                    tail = b""
                    d = zlib.decompressobj(wbits=31)
                    fresh = True
        except zlib.error as exc:
            self._gzip_error = str(exc)
            self.warnings.append(
                f"{self.name}: corrupt gzip data near byte offset {self.position} "
                f"({exc}); analyzed up to there"
            )
            return
        if not fresh:
            out = d.flush()
            if out:
                yield out
            self._gzip_error = "stream cut short"
            self.warnings.append(
                f"{self.name}: gzip stream cut short at byte offset {self.position}; "
                "analyzed up to there"
            )

    # -- walkers ---------------------------------------------------------------------------
    #
    # A walker hands every complete packet record of the buffer to a sink, in place (the frame
    # is ``buf[start:end]``; no copy is made unless the sink makes one), then reads the next
    # chunk and returns: True while more may come. ``walk`` drives it to the end for the
    # analyzer's loop; ``frames`` turns it into an iterator for everything else.

    def _refill(self, off: int) -> bool:
        """Keep the unread tail of the buffer, append the next chunk; False at the end."""
        buf = self._buf
        blen = len(buf)
        chunk = next(self._chunks, None)
        if chunk is None:
            if off < blen:
                self._warn_truncated(self._base + off, self.frames_read)
            return False
        self._base += off
        self._buf = buf[off:] + chunk if off < blen else chunk
        self._off = 0
        return True

    def _scan_pcap(self, sink: FrameSink) -> bool:
        buf = self._buf
        off: i64 = self._off
        blen: i64 = len(buf)
        div = self._div
        linktype = self._pcap_linktype
        maxcap: i64 = self._maxcap
        n = self.frames_read
        limit: i64 = blen - _PCAP_RECORD_LEN
        caplen: i64 = 0
        # The hot loop: three 32-bit fields, two compares and one call per frame. Byte
        # arithmetic on machine integers (i64) rather than struct: compiled (setup.py) it is a
        # few machine instructions; with Python ints (tagged, overflow-checked) the walk took
        # 410 instructions a frame (callgrind, the first 300,000 frames of bench/out/
        # handshakes.pcap).
        le = self._pcap_le
        sec: i64
        frac: i64
        while off <= limit:
            sec, frac, caplen = pcap_record(buf, off, le)
            start: i64 = off + 16
            end: i64 = start + caplen
            if caplen > maxcap or end > blen:
                break
            n += 1
            sink.frame(float(sec) + float(frac) / div, linktype, buf, start, end)
            off = end
        self.frames_read = n
        if caplen > maxcap:
            self._warn_corrupt(self._base + off, n, f"caplen {caplen}")
            return False
        return self._refill(off)

    def _scan_pcapng(self, sink: FrameSink) -> bool:
        buf = self._buf
        off = self._off
        blen = len(buf)
        n = self.frames_read
        s = self._ng
        head_unpack = s.blockhead.unpack_from
        u32_unpack = s.u32.unpack_from
        epb_unpack = s.epb.unpack_from
        epb_full = s.epb_full.unpack_from
        ifaces = self._ifaces
        nif = len(ifaces)
        last_ts = self._last_ts
        try:
            while off + 12 <= blen:
                # Fast path: a complete, sane Enhanced Packet Block in one unpack.
                try:
                    btype, blk, ifid, hi, lo, caplen, _ = epb_full(buf, off)
                except struct.error:  # fewer than 28 bytes left in the buffer
                    btype, blk = head_unpack(buf, off)
                else:
                    end = off + blk
                    if (
                        btype == _EPB
                        and caplen <= blk - 32
                        and end <= blen
                        and ifid < nif
                        and not blk & 3
                        and blk <= MAX_PCAPNG_BLOCK
                        and u32_unpack(buf, end - 4)[0] == blk
                    ):
                        lt, div, tsoff, _snap = ifaces[ifid]
                        last_ts = ((hi << 32) | lo) / div + tsoff
                        n += 1
                        sink.frame(last_ts, lt, buf, off + 28, off + 28 + caplen)
                        off = end
                        continue
                # Every other block, and every check with its own message.
                if btype == _SHB:
                    # A new section may switch byte order: read its magic before its length.
                    if blen - off < 28:
                        break
                    err = _check_shb(buf, off)
                    if err:
                        self._warn_corrupt(self._base + off, n, err)
                        return False
                    le = struct.unpack_from("<I", buf, off + 8)[0] == _PCAPNG_BOM
                    s = self._ng = _PCAPNG_STRUCTS["<" if le else ">"]
                    head_unpack = s.blockhead.unpack_from
                    u32_unpack = s.u32.unpack_from
                    epb_unpack = s.epb.unpack_from
                    epb_full = s.epb_full.unpack_from
                    btype, blk = head_unpack(buf, off)
                    ifaces = self._ifaces = []
                    nif = 0
                if blk & 3 or blk < 12 or blk > MAX_PCAPNG_BLOCK:
                    self._warn_corrupt(self._base + off, n, f"block length {blk}")
                    return False
                end = off + blk
                if end > blen:
                    break
                if u32_unpack(buf, end - 4)[0] != blk:
                    self._warn_corrupt(self._base + off, n, "block lengths do not match")
                    return False
                if btype == _EPB:
                    if blk < 32:
                        self._warn_corrupt(self._base + off, n, f"block length {blk}")
                        return False
                    ifid, hi, lo, caplen, _ = epb_unpack(buf, off + 8)
                    if caplen > blk - 32 or ifid >= len(ifaces):
                        why = f"caplen {caplen}" if caplen > blk - 32 else f"interface {ifid}"
                        self._warn_corrupt(self._base + off, n, why)
                        return False
                    lt, div, tsoff, _snap = ifaces[ifid]
                    last_ts = ((hi << 32) | lo) / div + tsoff
                    n += 1
                    sink.frame(last_ts, lt, buf, off + 28, off + 28 + caplen)
                elif btype == _IDB:
                    if blk < 20:
                        self._warn_corrupt(self._base + off, n, f"block length {blk}")
                        return False
                    ifaces.append(_parse_idb(buf, off, end, s))
                    nif = len(ifaces)
                elif btype == _SPB:
                    if blk < 16 or not ifaces:
                        self._warn_corrupt(self._base + off, n, "simple packet block")
                        return False
                    lt, _div, _tsoff, snap = ifaces[0]
                    caplen = min(u32_unpack(buf, off + 8)[0], blk - 16)
                    if snap:
                        caplen = min(caplen, snap)
                    n += 1
                    sink.frame(last_ts, lt, buf, off + 12, off + 12 + caplen)
                elif btype == _PB:
                    if blk < 32:
                        self._warn_corrupt(self._base + off, n, f"block length {blk}")
                        return False
                    ifid, _drops, hi, lo, caplen, _ = s.pb.unpack_from(buf, off + 8)
                    if caplen > blk - 32 or ifid >= len(ifaces):
                        why = f"caplen {caplen}" if caplen > blk - 32 else f"interface {ifid}"
                        self._warn_corrupt(self._base + off, n, why)
                        return False
                    lt, div, tsoff, _snap = ifaces[ifid]
                    last_ts = ((hi << 32) | lo) / div + tsoff
                    n += 1
                    sink.frame(last_ts, lt, buf, off + 28, off + 28 + caplen)
                # any other block type is skipped
                off = end
        finally:
            self.frames_read = n
            self._last_ts = last_ts
        return self._refill(off)

    def _scan(self, sink: FrameSink) -> bool:
        if self._closed_scan:
            raise ValueError(f"{self.name}: capture file is closed")
        return self._scan_pcapng(sink) if self._pcapng else self._scan_pcap(sink)

    def _where(self, offset: int) -> str:
        if self.compressed:
            return f"byte offset {offset} of the decompressed data"
        return f"byte offset {offset}"

    def _warn_truncated(self, offset: int, n: int) -> None:
        self.warnings.append(
            f"{self.name}: truncated at {self._where(offset)} (packet {n + 1} cut short); "
            "analyzed up to there"
        )

    def _warn_corrupt(self, offset: int, n: int, why: str) -> None:
        self.warnings.append(
            f"{self.name}: corrupt packet record at {self._where(offset)} "
            f"(packet {n + 1}: {why}); analyzed up to there"
        )

    # -- public ----------------------------------------------------------------------------

    def walk(self, sink: FrameSink, on_chunk: Callable[[], None] | None = None) -> None:
        """Hand every frame to ``sink.frame`` in file order (the fast way; once only), calling
        ``on_chunk`` after each chunk read (progress)."""
        self._start()
        try:
            while self._scan(sink):
                if on_chunk is not None:
                    on_chunk()
        finally:
            self.close()

    def frames(self) -> Iterator[tuple[float, int, bytes]]:
        """The frames of the file as ``(epoch_seconds, linktype, frame_bytes)``; once only."""
        self._start()
        gen = self._frames_gen = self._frames()
        return gen

    def _frames(self) -> Generator[tuple[float, int, bytes], None, None]:
        batch = _FrameList()
        given = 0
        try:
            more = True
            while more:
                more = self._scan(batch)
                items = batch.items
                batch.items = []
                for item in items:
                    given += 1
                    yield item
        finally:
            self.frames_read = given  # what the caller took, if it stopped early
            self.close()

    def _start(self) -> None:
        if self._started:
            raise ValueError(f"{self.name}: frames() can be iterated only once")
        self._started = True
        if self._closed_scan:
            raise ValueError(f"{self.name}: capture file is closed")

    def close(self) -> None:
        """Release the file. Safe to call more than once."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()
        self._closed_scan = True
        self._buf = b""

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        gen, self._frames_gen = self._frames_gen, None
        if gen is not None:
            gen.close()  # runs its cleanup: frames_read, close
        self.close()

    def __repr__(self) -> str:
        return f"<CaptureFile {self.name!r} {self.format} frames_read={self.frames_read}>"


def _check_shb(buf: bytes, off: int) -> str:
    """Why the section header block at ``off`` is unusable, or '' when it is fine."""
    if len(buf) - off < 28:
        return "corrupt pcapng section header (file too short)"
    bom_le = struct.unpack_from("<I", buf, off + 8)[0]
    if bom_le == _PCAPNG_BOM:
        bo = "<"
    elif struct.unpack_from(">I", buf, off + 8)[0] == _PCAPNG_BOM:
        bo = ">"
    else:
        return f"corrupt pcapng section header (byte-order magic 0x{buf[off + 8:off + 12].hex()})"
    blk = struct.unpack_from(bo + "I", buf, off + 4)[0]
    major, minor = struct.unpack_from(bo + "HH", buf, off + 12)
    if blk & 3 or blk < 28 or blk > MAX_PCAPNG_BLOCK:
        return f"corrupt pcapng section header (block length {blk})"
    if major != 1:
        return f"unsupported pcapng version {major}.{minor}"
    return ""


def _parse_idb(buf: bytes, off: int, end: int, s: _PcapngStructs) -> tuple[int, int, int, int]:
    """(linktype, timestamp divisor, timestamp offset in seconds, snaplen) of an IDB."""
    linktype, _reserved, snaplen = s.idb.unpack_from(buf, off + 8)
    div = 1_000_000
    tsoff = 0
    p = off + 16
    stop = end - 4
    while p + 4 <= stop:
        code, olen = s.opt.unpack_from(buf, p)
        p += 4
        if code == _OPT_ENDOFOPT or p + olen > stop:
            break
        if code == _IF_TSRESOL and olen >= 1:
            v = buf[p]
            exp = v & 0x7F
            div = (2**exp) if v & 0x80 else (10**exp)
        elif code == _IF_TSOFFSET and olen >= 8:
            tsoff = s.i64.unpack_from(buf, p)[0]
        p += (olen + 3) & ~3
    return linktype, div, tsoff, snaplen


def _first_linktype(buf: bytes) -> int | None:
    """The link type of the first interface of a pcapng file, if its IDB is in ``buf``."""
    bo = "<" if struct.unpack_from("<I", buf, 8)[0] == _PCAPNG_BOM else ">"
    s = _PCAPNG_STRUCTS[bo]
    off = 0
    while off + 12 <= len(buf):
        btype, blk = s.blockhead.unpack_from(buf, off)
        if btype in (_EPB, _SPB, _PB) or blk < 12 or blk & 3 or off + blk > len(buf):
            return None
        if btype == _IDB and blk >= 20:
            return s.idb.unpack_from(buf, off + 8)[0]
        off += blk
    return None
