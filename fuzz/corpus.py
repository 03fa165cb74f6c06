"""Seed corpus extracted from real captures (``captures/`` and the shared public captures).

``python -m fuzz seeds`` rewrites ``fuzz/corpus/TARGET/``; file names are the first 16 hex digits
of the SHA-1 of the content, so re-running is idempotent. Sizes are capped so the corpus stays
small enough to keep in the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
from pathlib import Path

from fuzz.targets import LINKTYPES, join_chunks
from tlssniff.capture.decode import MalformedFrame, decode_frame
from tlssniff.capture.files import open_capture
from tlssniff.errors import CaptureError
from tlssniff.flow.table import FlowTable, Limits, flow_key
from tlssniff.tls import records as rec

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "corpus"
SOURCES = (REPO / "captures",)  # captures/public (the Zeek traces) included

MAX_CONVERSATION = 12 * 1024  # bytes of a tls seed
PER_TARGET = {"tls": 200, "hello": 300, "reassembly": 120, "pcap": 80, "pcapng": 40,
              "decode": 400}


def capture_files() -> list[Path]:
    out = []
    for root in SOURCES:
        if root.is_dir():
            out += sorted(p for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")
                          and p.is_file())
    return out


class _Recorder:
    """A flow-table app that keeps the first bytes of each direction, in arrival order."""

    __slots__ = ("flow", "chunks", "size", "done")

    def __init__(self, flow) -> None:
        self.flow = flow
        self.chunks: list[tuple[int, bytes]] = []
        self.size = 0
        self.done = False

    def data(self, from_client: bool, data: bytes, frame: int, *_: object) -> None:
        if self.size < MAX_CONVERSATION:
            data = data[: MAX_CONVERSATION - self.size]
            self.chunks.append((0 if from_client else 1, data))
            self.size += len(data)

    def finish(self, reason: int) -> None:
        self.done = True


def conversations(path: Path) -> tuple[list[list[tuple[int, bytes]]], list[tuple[int, bytes]],
                                       dict[bytes, list[tuple[int, int]]]]:
    """(conversations as chunks, raw frames with their link type, per-direction segments)."""
    convs: list[list[tuple[int, bytes]]] = []
    frames: list[tuple[int, bytes]] = []
    segs: dict[bytes, list[tuple[int, int, int]]] = {}

    def done(flow) -> None:
        if flow.app is not None and flow.app.chunks:
            convs.append(flow.app.chunks)

    table = FlowTable(_Recorder, done, Limits())
    try:
        cap = open_capture(path)
    except CaptureError:
        return convs, frames, segs
    with cap:
        for n, (ts, linktype, frame) in enumerate(cap.frames(), 1):
            frames.append((linktype, frame))
            try:
                d = decode_frame(linktype, frame)
            except MalformedFrame:
                continue
            if d is None or d[0] != 6:
                continue
            key = flow_key(d[1], d[2], d[3], d[4])
            segs.setdefault(key, []).append((d[7], d[5], len(d[8])))
            table.segment(table.flows.get(key), key, ts, d, n)
    table.finish_all()
    return convs, frames, segs


def _hello_seeds(chunks: list[tuple[int, bytes]]) -> list[bytes]:
    out = []
    streams = {0: rec.RecordStream(1 << 20), 1: rec.RecordStream(1 << 20)}
    for d, data in chunks:
        try:
            events = streams[d].feed(data)
        except Exception:
            break
        for kind, a, b in events:
            if kind == rec.HANDSHAKE and b is not None:
                which = {1: 0, 2: 1, 4: 2}.get(a)
                if which is not None:
                    out.append(bytes([which]) + b)
            elif kind == rec.SSLV2_CLIENT_HELLO:
                out.append(b"\x03" + a)
    return out


def _reassembly_seed(segments: list[tuple[int, int, int]]) -> bytes | None:
    """Real segment sequence numbers and lengths, relative to the direction's start."""
    if not segments:
        return None
    flags0, seq0, _ = segments[0]
    isn = seq0 if flags0 & 2 else (seq0 - 1) & 0xFFFFFFFF
    out = bytearray(struct.pack("!IH", isn, 0x4000))
    for flags, seq, ln in segments[:200]:
        if flags & 2:
            out += struct.pack("!BHB", 1, 0, 0)
        elif ln:
            off = (seq - isn - 1) & 0xFFFFFFFF
            if off > 0xFFFF:
                break
            big = ln > 255
            units = min(255, -(-ln // 64)) if big else ln
            out += struct.pack("!BHB", 0x80 if big else 0, off, units)
    return bytes(out) if len(out) > 10 else None


def _capture_slices(path: Path, limit: int = 6 * 1024) -> list[bytes]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except Exception:
            return []
    return [raw[:limit]]


def _to_pcapng(path: Path) -> bytes | None:
    if not shutil.which("editcap"):
        return None
    out = Path("/tmp") / f"tlssniff-seed-{path.stem}.pcapng"
    proc = subprocess.run(["editcap", "-F", "pcapng", "-r", str(path), str(out), "1-12"],
                          capture_output=True)
    if proc.returncode != 0 or not out.exists():
        return None
    data = out.read_bytes()
    out.unlink()
    return data


def build(verbose: bool = True) -> dict[str, int]:
    seeds: dict[str, dict[bytes, None]] = {t: {} for t in PER_TARGET}

    def add(target: str, data: bytes | None) -> None:
        if data and len(seeds[target]) < PER_TARGET[target] * 4:
            seeds[target].setdefault(data, None)

    linktype_index = {lt: i for i, lt in enumerate(LINKTYPES)}
    for path in capture_files():
        convs, frames, segs = conversations(path)
        for chunks in convs:
            add("tls", join_chunks(chunks))
            for h in _hello_seeds(chunks):
                add("hello", h)
        for s in segs.values():
            add("reassembly", _reassembly_seed(s))
        seen_kinds = set()
        for linktype, frame in frames:
            kind = (linktype, frame[12:14] if linktype == 1 else b"", len(frame) // 400)
            if kind in seen_kinds or linktype not in linktype_index:
                continue
            seen_kinds.add(kind)
            add("decode", bytes([linktype_index[linktype]]) + frame[:2048])
        is_ng = path.suffix == ".pcapng" or path.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
        for piece in _capture_slices(path):
            add("pcapng" if is_ng else "pcap", piece)
        if not is_ng and len(seeds["pcapng"]) < PER_TARGET["pcapng"]:
            add("pcapng", _to_pcapng(path))
    # A gzip-compressed capture exercises the gzip reader from the pcap target.
    for data in list(seeds["pcap"])[:3]:
        add("pcap", gzip.compress(data, mtime=0))

    counts = {}
    for target, found in seeds.items():
        folder = CORPUS / target
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        # Up to the cap, spread evenly over the sizes found (small ones fuzz fast, large ones
        # carry certificates, tickets and long flights).
        ordered = sorted(found, key=len)
        step = max(1.0, len(ordered) / PER_TARGET[target])
        chosen = [ordered[int(i * step)] for i in range(min(PER_TARGET[target], len(ordered)))]
        for data in chosen:
            name = hashlib.sha1(data).hexdigest()[:16]
            (folder / name).write_bytes(data)
        counts[target] = len(chosen)
        if verbose:
            print(f"{target:11} {len(chosen):4} seeds, {sum(map(len, chosen)):8} bytes")
    return counts


def load(target: str) -> list[bytes]:
    folder = CORPUS / target
    if not folder.is_dir():
        return []
    return [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
