"""Whole-CLI mutation fuzz: real captures, damaged, through every output format and ``report``.

Each mutant is a real capture of the repository (``captures/``, ``captures/public/``) with one or
more of: bytes flipped, record lengths corrupted (pcap caplen/origlen, pcapng block and packet
lengths), timestamps corrupted (backwards, zero, far future), TLS record lengths corrupted, a
record dropped or repeated, the file cut anywhere, sometimes gzip-compressed. Each goes through
``tlssniff analyze -f FORMAT`` for every format and ``tlssniff report`` (in process, through
:func:`tlssniff.cli.run`, the console script's own boundary). The contract: exit status 0 or
2, never an internal error or a traceback; the time of every run is kept and the slowest named.

    python -m fuzz cli --minutes 10            # the long run (figures in docs/robustness.md)
    python -m fuzz cli --mutants 40 --seed 3   # a fixed number, reproducible

A mutant that breaks the contract (or runs longer than ``--slow`` seconds and three times the
same command on the intact capture) is saved under
``--findings`` with the command that failed; ``tests/test_cli_fuzz.py`` runs a bounded set.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
FORMATS = ("table", "json", "jsonl", "csv", "ecs")
MAX_SEED_BYTES = 256 * 1024  # larger captures make slow mutants without finding more
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
                b"\xa1\xb2\x3c\x4d": ">"}


def seed_captures(limit: int = MAX_SEED_BYTES) -> list[Path]:
    """The repository's captures small enough to mutate quickly, in a stable order."""
    out = []
    for p in sorted((REPO / "captures").rglob("*")):
        if p.is_file() and p.suffix in (".pcap", ".pcapng") and p.stat().st_size <= limit:
            out.append(p)
    return out


# -- structure of the seed: where records, lengths and timestamps are -------------------------

def _pcap_records(data: bytes) -> tuple[str, list[int]] | None:
    """(byte order, offsets of the record headers) of a pcap file, or None."""
    bo = _PCAP_MAGICS.get(data[:4])
    if bo is None or len(data) < 24:
        return None
    offs, off = [], 24
    while off + 16 <= len(data):
        offs.append(off)
        caplen = struct.unpack_from(bo + "I", data, off + 8)[0]
        off += 16 + caplen
    return bo, offs


def _pcapng_blocks(data: bytes) -> tuple[str, list[int]] | None:
    """(byte order, offsets of the blocks) of a pcapng file, or None."""
    if data[:4] != b"\x0a\x0d\x0d\x0a" or len(data) < 12:
        return None
    bo = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    offs, off = [], 0
    while off + 12 <= len(data):
        offs.append(off)
        length = struct.unpack_from(bo + "I", data, off + 4)[0]
        if length < 12 or length % 4:
            break
        off += length
    return bo, offs


_NASTY_U32 = (0, 1, 15, 16, 0x7F, 0xFFFF, 0x10000, 0x40000, 0x7FFFFFFF, 0xFFFFFFFF)


def _u32(rng: random.Random, old: int) -> int:
    return rng.choice(_NASTY_U32 + (old + 1, max(old - 1, 0), old * 2, rng.getrandbits(32)))


def _flip(data: bytearray, rng: random.Random) -> str:
    n = rng.choice((1, 1, 2, 4, 16, 64))
    start = 0 if rng.random() < 0.1 else min(24, len(data))
    for _ in range(n):
        if len(data) > start:
            data[rng.randrange(start, len(data))] ^= 1 << rng.randrange(8)
    return f"flip{n}"


def _lengths(data: bytearray, rng: random.Random) -> str:
    pcap = _pcap_records(bytes(data))
    if pcap and pcap[1]:
        bo, offs = pcap
        off = rng.choice(offs)
        field_off = off + rng.choice((8, 12))  # caplen or origlen
        old = struct.unpack_from(bo + "I", data, field_off)[0]
        struct.pack_into(bo + "I", data, field_off, _u32(rng, old))
        return "pcap-len"
    ng = _pcapng_blocks(bytes(data))
    if ng and ng[1]:
        bo, offs = ng
        off = rng.choice(offs)
        # block total length, or (EPB) captured/original length
        field_off = off + rng.choice((4, 4, 20, 24))
        if field_off + 4 <= len(data):
            old = struct.unpack_from(bo + "I", data, field_off)[0]
            struct.pack_into(bo + "I", data, field_off, _u32(rng, old))
        return "pcapng-len"
    return _flip(data, rng)


def _timestamps(data: bytearray, rng: random.Random) -> str:
    choices = (0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 999_999, 1_000_000, rng.getrandbits(32))
    pcap = _pcap_records(bytes(data))
    if pcap and pcap[1]:
        bo, offs = pcap
        for off in rng.sample(offs, min(len(offs), rng.choice((1, 3, 20)))):
            struct.pack_into(bo + "I", data, off + rng.choice((0, 4)), rng.choice(choices))
        return "pcap-ts"
    ng = _pcapng_blocks(bytes(data))
    if ng and ng[1]:
        bo, offs = ng
        for off in rng.sample(offs, min(len(offs), rng.choice((1, 3, 20)))):
            if struct.unpack_from(bo + "I", data, off)[0] == 6 and off + 20 <= len(data):
                struct.pack_into(bo + "I", data, off + rng.choice((12, 16)), rng.choice(choices))
        return "pcapng-ts"
    return _flip(data, rng)


def _tls_lengths(data: bytearray, rng: random.Random) -> str:
    """A TLS record or handshake length inside a frame."""
    spots = [i for i in range(len(data) - 5) if data[i] in (0x14, 0x15, 0x16, 0x17)
             and data[i + 1] == 3 and data[i + 2] <= 4]
    if not spots:
        return _flip(data, rng)
    i = rng.choice(spots)
    value = rng.choice((0, 1, 4, 0x3FFF, 0x4000, 0x4001, 0xFFFF, rng.getrandbits(16)))
    if rng.random() < 0.5:
        struct.pack_into(">H", data, i + 3, value)  # record length
    elif i + 9 <= len(data):
        data[i + 6:i + 9] = rng.getrandbits(24).to_bytes(3, "big")  # handshake length
    return "tls-len"


def _records(data: bytearray, rng: random.Random) -> str:
    """A record dropped or repeated (pcap), or a block repeated (pcapng)."""
    pcap = _pcap_records(bytes(data))
    if pcap and len(pcap[1]) > 2:
        offs = pcap[1] + [len(data)]
        k = rng.randrange(len(offs) - 1)
        a, b = offs[k], offs[k + 1]
        chunk = bytes(data[a:b])
        if rng.random() < 0.5:
            del data[a:b]
            return "drop-record"
        data[b:b] = chunk * rng.choice((1, 2, 8))
        return "repeat-record"
    return _flip(data, rng)


def _cut(data: bytearray, rng: random.Random) -> str:
    at = rng.randrange(len(data)) if rng.random() < 0.9 else rng.randrange(min(64, len(data)))
    del data[at:]
    return "cut"


MUTATORS: tuple[Callable[[bytearray, random.Random], str], ...] = (
    _flip, _lengths, _timestamps, _tls_lengths, _records, _cut)


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """``data`` with one to three mutations; returns the bytes and what was done."""
    buf = bytearray(data)
    done = [rng.choice(MUTATORS)(buf, rng) for _ in range(rng.choice((1, 1, 2, 3)))]
    return bytes(buf), "+".join(done)


# -- running the CLI in process ---------------------------------------------------------------

@dataclass
class Outcome:
    argv: list[str]
    status: int
    seconds: float
    stderr: str
    problem: str | None  # why the contract is broken, or None


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``tlssniff ARGV`` in this process, through the console script's boundary (``run``)."""
    from tlssniff.cli import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = int(run(argv))
        except BaseException as exc:  # noqa: BLE001 - anything past the boundary is the finding
            import traceback

            err.write("Traceback (escaped the boundary)\n" + traceback.format_exc())
            status = -1 if not isinstance(exc, SystemExit) else int(exc.code or 0)
    return status, out.getvalue(), err.getvalue()


def check(argv: list[str]) -> Outcome:
    t0 = time.perf_counter()
    status, _out, err = run_cli(argv)
    seconds = time.perf_counter() - t0
    problem = None
    if status not in (0, 2):
        problem = f"exit status {status}"
    elif "Traceback" in err or "internal error" in err:
        problem = "traceback or internal error"
    elif status == 2 and len(err.strip().splitlines()) != 1:
        problem = "status 2 without exactly one error line"
    return Outcome(argv, status, seconds, err, problem)


def commands(path: Path, bundle: Path, report: bool, verify: bool) -> Iterator[list[str]]:
    for fmt in FORMATS:
        yield ["analyze", str(path), "-f", fmt, "--no-progress"]
    if report:
        yield ["report", str(path), "-o", str(bundle), "-q",
               "--verify" if verify else "--no-verify"]


def _baseline(cache: dict[tuple[Path, str], float], src: Path, argv: list[str],
              work: Path) -> float:
    """Seconds of the same command on the intact capture ``src`` (measured once)."""
    kind = " ".join(a for a in argv[2:] if not a.startswith("/"))
    key = (src, kind)
    if key not in cache:
        shutil.rmtree(work / "bundle-baseline", ignore_errors=True)
        args = [argv[0], str(src), *(str(work / "bundle-baseline") if a.endswith("/bundle") else a
                                      for a in argv[2:])]
        cache[key] = check(args).seconds
    return cache[key]


@dataclass
class Summary:
    mutants: int = 0
    runs: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)
    slow: list[Outcome] = field(default_factory=list)
    slowest: Outcome | None = None
    seconds: float = 0.0

    def add(self, o: Outcome, slow: bool) -> None:
        self.runs += 1
        self.statuses[o.status] = self.statuses.get(o.status, 0) + 1
        if o.problem:
            self.failures.append(o)
        if slow:
            self.slow.append(o)
        if self.slowest is None or o.seconds > self.slowest.seconds:
            self.slowest = o

    def render(self) -> str:
        st = ", ".join(f"{n} x status {s}" for s, n in sorted(self.statuses.items()))
        lines = [f"cli fuzz: {self.mutants} mutants, {self.runs} runs in {self.seconds:.0f} s "
                 f"({st}); {len(self.failures)} broke the contract, {len(self.slow)} slow"]
        if self.slowest is not None:
            lines.append(f"slowest run: {self.slowest.seconds:.2f} s: tlssniff "
                         f"{' '.join(self.slowest.argv)}")
        for o in self.failures[:20]:
            lines.append(f"FAIL {o.problem}: tlssniff {' '.join(o.argv)}: "
                         f"{o.stderr.strip().splitlines()[-1:] or ''}")
        return "\n".join(lines)


def fuzz(*, seed: int = 1, mutants: int | None = None, minutes: float | None = None,
         report_every: int = 3, verify_every: int = 0, slow: float = 10.0,
         findings: Path | None = None, seeds: list[Path] | None = None,
         on_progress: Callable[[Summary], None] | None = None) -> Summary:
    """Run mutants until ``mutants`` are done or ``minutes`` have passed (whichever is given)."""
    rng = random.Random(seed)
    seeds = seeds or seed_captures()
    originals = {p: p.read_bytes() for p in seeds}
    summary = Summary()
    baselines: dict[tuple[Path, str], float] = {}
    started = time.monotonic()
    deadline = None if minutes is None else started + 60 * minutes
    with tempfile.TemporaryDirectory(prefix="tlssniff-cli-fuzz-") as tmp:
        work = Path(tmp)
        # Imports and caches (matplotlib's fonts) warmed up: the first run is not "slow".
        for argv in commands(seeds[0], work / "bundle", True, False):
            check(argv)
        started = time.monotonic()
        i = 0
        while (mutants is None or i < mutants) and (deadline is None or time.monotonic() < deadline):
            src = seeds[i % len(seeds)] if mutants is not None else rng.choice(seeds)
            data, what = mutate(originals[src], rng)
            gz = rng.random() < 0.1
            name = f"m{i:06d}-{src.stem}-{what}{src.suffix}" + (".gz" if gz else "")
            path = work / name
            path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
            report = report_every > 0 and i % report_every == 0
            verify = verify_every > 0 and i % verify_every == 0
            for argv in commands(path, work / "bundle", report, verify):
                o = check(argv)
                # Slow: over ``slow`` seconds and over 3 times the same command on the intact
                # capture (a loaded machine makes everything slow; a bad input makes one run).
                is_slow = o.seconds > slow and o.seconds > 3 * _baseline(
                    baselines, src, argv, work)
                summary.add(o, is_slow)
                if (o.problem or is_slow) and findings is not None:
                    findings.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, findings / name)
                    (findings / (name + ".txt")).write_text(
                        f"source: {src.relative_to(REPO)}\nmutation: {what}\ncommand: tlssniff "
                        f"{' '.join(argv)}\nstatus: {o.status}\nseconds: {o.seconds:.2f}\n"
                        f"problem: {o.problem or 'slow'}\nstderr:\n{o.stderr}")
            shutil.rmtree(work / "bundle", ignore_errors=True)
            path.unlink()
            i += 1
            summary.mutants = i
            summary.seconds = time.monotonic() - started
            if on_progress is not None and i % 50 == 0:
                on_progress(summary)
    summary.seconds = time.monotonic() - started
    return summary


def main(args) -> int:
    os.environ.pop("TLSSNIFF_DEBUG", None)

    def progress(s: Summary) -> None:
        print(f"... {s.mutants} mutants, {s.runs} runs, {len(s.failures)} failures, "
              f"{s.seconds:.0f} s", file=sys.stderr, flush=True)

    summary = fuzz(seed=args.seed, mutants=args.mutants, minutes=args.minutes,
                   report_every=args.report_every, verify_every=args.verify_every,
                   slow=args.slow, findings=args.findings, on_progress=progress)
    print(summary.render())
    return 1 if summary.failures or summary.slow else 0
