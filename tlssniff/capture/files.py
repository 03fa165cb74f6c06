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
from collections.abc import Iterator

from tlssniff.errors import CaptureError

__all__ = ["CaptureFile", "open_capture", "CHUNK_SIZE", "MAX_CAPLEN", "MAX_PCAPNG_BLOCK"]

#: Bytes read from the file (or produced by the decompressor) per chunk.
CHUNK_SIZE = 1 << 20
#: A pcap record claiming more captured bytes than this (or 4x the snaplen) is corrupt.
MAX_CAPLEN = 262144
#: A pcapng block longer than this is corrupt.
MAX_PCAPNG_BLOCK = 16 << 20

_PCAP_MAGIC = {
    # first four bytes: (byte order, timestamp divisor, format name)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, "pcap-ns"),
}
_PCAP_UNSUPPORTED = {
    b"\x34\xcd\xb2\xa1": "modified (Kuznetzov) pcap",
    b"\xa1\xb2\xcd\x34": "modified (Kuznetzov) pcap",
    b"\x34\x12\xc3\xd4": "Navtel pcap",
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_PCAPNG_BOM = 0x1A2B3C4D
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_PIECE = 1 << 14

_PCAP_HEADER_LEN = 24
_HEAD_LEN = 32
_PCAP_RECORD_LEN = 16

# pcapng block types
_SHB = 0x0A0D0D0A
_IDB = 1
_PB = 2  # obsolete Packet Block
_SPB = 3
_EPB = 6
# pcapng IDB options
_OPT_ENDOFOPT = 0
_IF_TSRESOL = 9
_IF_TSOFFSET = 14


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


_PCAPNG_STRUCTS = {"<": _PcapngStructs("<"), ">": _PcapngStructs(">")}


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
        self._raw = None
        self._started = False
        self._gen: Iterator[tuple[float, int, bytes]] | None = None
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
        first = self._raw.read(CHUNK_SIZE)
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
        maxcap = MAX_CAPLEN if snaplen == 0 else min(MAX_CAPLEN, 4 * snaplen)
        self._gen = self._walk_pcap(
            head, struct.Struct(bo + "IIII"), div, self.linktype, maxcap
        )

    def _open_pcapng(self, head: bytes) -> None:
        self.format = "pcapng"
        err = _check_shb(head, 0)
        if err:
            raise CaptureError(f"{self.name}: {err}")
        self.linktype = _first_linktype(head)
        self._gen = self._walk_pcapng(head)

    # -- chunk sources ---------------------------------------------------------------------

    def _plain_chunks(self) -> Iterator[bytes]:
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

    def _walk_pcap(
        self, buf: bytes, rec: struct.Struct, div: int, linktype: int, maxcap: int
    ) -> Iterator[tuple[float, int, bytes]]:
        """Yield the records of a pcap file; ``buf`` holds its first bytes, header included."""
        unpack = rec.unpack_from
        div = float(div)
        chunks = self._chunks
        n = 0
        base = 0  # offset of buf[0] in the (decompressed) capture data
        off = _PCAP_HEADER_LEN
        blen = len(buf)
        caplen = 0
        try:
            while True:
                limit = blen - _PCAP_RECORD_LEN
                # The hot loop: one unpack, two compares, one slice per frame.
                while off <= limit:
                    sec, frac, caplen, _wirelen = unpack(buf, off)
                    start = off + 16
                    end = start + caplen
                    if caplen > maxcap or end > blen:
                        break
                    n += 1
                    yield (sec + frac / div, linktype, buf[start:end])
                    off = end
                if caplen > maxcap:
                    self._warn_corrupt(base + off, n, f"caplen {caplen}")
                    return
                self.frames_read = n
                chunk = next(chunks, None)
                if chunk is None:
                    if off < blen:
                        self._warn_truncated(base + off, n)
                    return
                base += off
                buf = buf[off:] + chunk if off < blen else chunk
                off = 0
                blen = len(buf)
        finally:
            self.frames_read = n
            self.close()

    def _walk_pcapng(self, buf: bytes) -> Iterator[tuple[float, int, bytes]]:
        """Yield the packets of a pcapng file; ``buf`` holds its first bytes."""
        chunks = self._chunks
        n = 0
        base = 0
        off = 0
        blen = len(buf)
        bo = ">" if struct.unpack_from("<I", buf, 8)[0] != _PCAPNG_BOM else "<"
        s = _PCAPNG_STRUCTS[bo]
        head_unpack = s.blockhead.unpack_from
        u32_unpack = s.u32.unpack_from
        epb_unpack = s.epb.unpack_from
        epb_full = s.epb_full.unpack_from
        nif = 0
        # per interface: (linktype, timestamp divisor, timestamp offset, snaplen)
        ifaces: list[tuple[int, int, int, int]] = []
        last_ts = 0.0
        try:
            while True:
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
                            yield (last_ts, lt, buf[off + 28 : off + 28 + caplen])
                            off = end
                            continue
                    # Every other block, and every check with its own message.
                    if btype == _SHB:
                        # A new section may switch byte order: read its magic before its length.
                        if blen - off < 28:
                            break
                        err = _check_shb(buf, off)
                        if err:
                            self._warn_corrupt(base + off, n, err)
                            return
                        le = struct.unpack_from("<I", buf, off + 8)[0] == _PCAPNG_BOM
                        s = _PCAPNG_STRUCTS["<" if le else ">"]
                        head_unpack = s.blockhead.unpack_from
                        u32_unpack = s.u32.unpack_from
                        epb_unpack = s.epb.unpack_from
                        epb_full = s.epb_full.unpack_from
                        btype, blk = head_unpack(buf, off)
                        ifaces = []
                        nif = 0
                    if blk & 3 or blk < 12 or blk > MAX_PCAPNG_BLOCK:
                        self._warn_corrupt(base + off, n, f"block length {blk}")
                        return
                    end = off + blk
                    if end > blen:
                        break
                    if u32_unpack(buf, end - 4)[0] != blk:
                        self._warn_corrupt(base + off, n, "block lengths do not match")
                        return
                    if btype == _EPB:
                        if blk < 32:
                            self._warn_corrupt(base + off, n, f"block length {blk}")
                            return
                        ifid, hi, lo, caplen, _ = epb_unpack(buf, off + 8)
                        if caplen > blk - 32 or ifid >= len(ifaces):
                            why = f"caplen {caplen}" if caplen > blk - 32 else f"interface {ifid}"
                            self._warn_corrupt(base + off, n, why)
                            return
                        lt, div, tsoff, _snap = ifaces[ifid]
                        last_ts = ((hi << 32) | lo) / div + tsoff
                        n += 1
                        yield (last_ts, lt, buf[off + 28 : off + 28 + caplen])
                    elif btype == _IDB:
                        if blk < 20:
                            self._warn_corrupt(base + off, n, f"block length {blk}")
                            return
                        ifaces.append(_parse_idb(buf, off, end, s))
                        nif = len(ifaces)
                    elif btype == _SPB:
                        if blk < 16 or not ifaces:
                            self._warn_corrupt(base + off, n, "simple packet block")
                            return
                        lt, _div, _tsoff, snap = ifaces[0]
                        caplen = min(u32_unpack(buf, off + 8)[0], blk - 16)
                        if snap:
                            caplen = min(caplen, snap)
                        n += 1
                        yield (last_ts, lt, buf[off + 12 : off + 12 + caplen])
                    elif btype == _PB:
                        if blk < 32:
                            self._warn_corrupt(base + off, n, f"block length {blk}")
                            return
                        ifid, _drops, hi, lo, caplen, _ = s.pb.unpack_from(buf, off + 8)
                        if caplen > blk - 32 or ifid >= len(ifaces):
                            why = f"caplen {caplen}" if caplen > blk - 32 else f"interface {ifid}"
                            self._warn_corrupt(base + off, n, why)
                            return
                        lt, div, tsoff, _snap = ifaces[ifid]
                        last_ts = ((hi << 32) | lo) / div + tsoff
                        n += 1
                        yield (last_ts, lt, buf[off + 28 : off + 28 + caplen])
                    # any other block type is skipped
                    off = end
                self.frames_read = n
                chunk = next(chunks, None)
                if chunk is None:
                    if off < blen:
                        self._warn_truncated(base + off, n)
                    return
                base += off
                buf = buf[off:] + chunk if off < blen else chunk
                off = 0
                blen = len(buf)
        finally:
            self.frames_read = n
            self.close()

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

    def frames(self) -> Iterator[tuple[float, int, bytes]]:
        """The frames of the file as ``(epoch_seconds, linktype, frame_bytes)``; once only."""
        if self._started:
            raise ValueError(f"{self.name}: frames() can be iterated only once")
        self._started = True
        if self._gen is None:
            raise ValueError(f"{self.name}: capture file is closed")
        return self._gen

    def close(self) -> None:
        """Release the file. Safe to call more than once."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()
        gen, self._gen = getattr(self, "_gen", None), None
        if gen is not None and not self._started:
            gen.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started and self._gen is not None:
            # closing the generator runs its cleanup (frames_read, file close)
            self._gen.close()
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
