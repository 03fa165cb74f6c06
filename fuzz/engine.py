"""Two fuzzing engines over the same targets and the same report.

* ``atheris``: coverage-guided (libFuzzer) when ``pip install atheris`` works for this Python;
  tlssniff's modules are instrumented, the seed corpus is copied to a work folder that libFuzzer
  grows with new coverage.
* ``mutate``: a dependency-free mutation loop (bit flips, interesting lengths, inserts, deletes,
  splices of seeds), deterministic for a given ``--seed``; what the test suite's smoke runs use.

Both count iterations, catch every exception the target lets out, save each distinct failing
input (and any input slower than ``--slow``) under ``--findings``, and report the slowest input.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

SLOW_SECONDS = 1.0


@dataclass
class Report:
    target: str
    engine: str
    iterations: int = 0
    seconds: float = 0.0
    exceptions: int = 0
    distinct: dict[str, str] = field(default_factory=dict)  # signature -> saved path
    slow: int = 0
    slowest: float = 0.0
    slowest_len: int = 0
    slowest_path: str | None = None
    slowest_retimed: float | None = None  # the slowest input run again (best of 3): outlier or not

    def render(self) -> str:
        rate = self.iterations / self.seconds if self.seconds else 0.0
        lines = [
            f"target {self.target} ({self.engine}): {self.iterations} iterations in "
            f"{self.seconds:.1f} s ({rate:.0f}/s)",
            f"  uncaught exceptions: {self.exceptions} ({len(self.distinct)} distinct)",
            f"  slowest input: {self.slowest * 1000:.1f} ms ({self.slowest_len} bytes)"
            + (f", {self.slowest_retimed * 1000:.1f} ms when run again"
               if self.slowest_retimed is not None else "")
            + (f", saved as {self.slowest_path}" if self.slowest_path else ""),
            f"  inputs over {SLOW_SECONDS:g} s: {self.slow}",
        ]
        for sig, path in self.distinct.items():
            lines.append(f"  finding: {sig} -> {path}")
        return "\n".join(lines)


class Runner:
    """Calls the target on one input, timing it and recording what escapes."""

    def __init__(self, name: str, fn: Callable[[bytes], None], findings: Path, engine: str,
                 iterations: int, max_seconds: float, slow: float = SLOW_SECONDS,
                 stop_on_finding: bool = False) -> None:
        self.fn = fn
        self.findings = findings
        self.report = Report(name, engine)
        self.iterations = iterations
        self.deadline = time.monotonic() + max_seconds
        self.start = time.monotonic()
        self.slow = slow
        self.stop_on_finding = stop_on_finding
        self.slowest_data = b""

    def one(self, data: bytes) -> bool:
        """Run one input; False once the iteration or time budget is spent."""
        r = self.report
        t0 = time.perf_counter()
        try:
            self.fn(data)
        except Exception as exc:  # noqa: BLE001 - everything that escapes is a finding
            r.exceptions += 1
            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            sig = f"{type(exc).__name__} at {where}"
            if sig not in r.distinct:
                r.distinct[sig] = str(self._save("crash", data))
                print(f"FINDING {sig}: {exc!r}", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
                if self.stop_on_finding:
                    raise
        dt = time.perf_counter() - t0
        if dt > r.slowest:
            r.slowest, r.slowest_len, self.slowest_data = dt, len(data), data
        if dt > self.slow:
            r.slow += 1
            if r.slow <= 20:
                self._save("slow", data)
        r.iterations += 1
        if r.iterations & 255 == 0 or r.iterations >= self.iterations:
            now = time.monotonic()
            if r.iterations >= self.iterations or now >= self.deadline:
                return False
        return True

    def _save(self, kind: str, data: bytes) -> Path:
        self.findings.mkdir(parents=True, exist_ok=True)
        path = self.findings / f"{self.report.target}-{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        return path

    def finish(self) -> Report:
        r = self.report
        r.seconds = time.monotonic() - self.start
        if self.slowest_data:
            r.slowest_path = str(self._save("slowest", self.slowest_data))
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                try:
                    self.fn(self.slowest_data)
                except Exception:  # noqa: BLE001 - already counted
                    pass
                times.append(time.perf_counter() - t0)
            r.slowest_retimed = min(times)
        return r


# -- the mutation engine ------------------------------------------------------------------------

_INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF, 0x16, 0x03, 0x14, 0x15, 0x17)
_INTERESTING16 = (0, 1, 0xFF, 0x100, 0x3FFF, 0x4000, 0x4800, 0x4801, 0x7FFF, 0x8000, 0xFFFF)
_INTERESTING24 = (0, 0xFFFF, 0x10000, 0x4000, 0xFFFFFF, (16 << 20) - 1)


def mutate(data: bytes, rng: random.Random, seeds: list[bytes], max_len: int) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 4, 8))):
        op = rng.randrange(10)
        n = len(b)
        if op == 0 and n:
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            b[rng.randrange(n)] = rng.choice(_INTERESTING8)
        elif op == 2 and n >= 2:
            i = rng.randrange(n - 1)
            b[i : i + 2] = rng.choice(_INTERESTING16).to_bytes(2, "big")
        elif op == 3 and n >= 3:
            i = rng.randrange(n - 2)
            b[i : i + 3] = rng.choice(_INTERESTING24).to_bytes(3, "big")
        elif op == 4:
            i = rng.randrange(n + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 16))))
        elif op == 5 and n:
            i = rng.randrange(n)
            del b[i : i + rng.choice((1, 2, 4, 16, 256))]
        elif op == 6 and n:
            i = rng.randrange(n)
            j = rng.randrange(i, min(n, i + 512) + 1)
            k = rng.randrange(n + 1)
            b[k:k] = b[i:j]
        elif op == 7 and seeds:
            other = rng.choice(seeds)
            if other:
                i = rng.randrange(len(other))
                cut = rng.randrange(len(b) + 1)
                b = b[:cut] + other[i : i + rng.randrange(1, 1024)]
        elif op == 8 and n:
            del b[rng.randrange(n) :]  # truncation
        elif op == 9 and n:
            i = rng.randrange(n)
            b[i] = rng.randrange(256)
    return bytes(b[:max_len])


def run_mutate(runner: Runner, seeds: list[bytes], seed: int, max_len: int) -> Report:
    rng = random.Random(seed)
    for s in seeds:  # every seed once as it is
        if not runner.one(s):
            return runner.finish()
    pool = seeds or [b""]
    while True:
        base = rng.choice(pool)
        if not runner.one(mutate(base, rng, pool, max_len)):
            return runner.finish()


# -- atheris ----------------------------------------------------------------------------------


def run_atheris(name: str, args, seed_dir: Path, findings: Path) -> None:
    """Never returns: libFuzzer owns the process; the report is printed and the process exits
    when the budget is spent."""
    import atheris  # noqa: PLC0415

    with atheris.instrument_imports(include=["tlssniff"]):
        from fuzz import targets  # noqa: PLC0415

    fn = targets.TARGETS[name]
    runner = Runner(name, fn, findings, "atheris", args.iterations, args.max_seconds, args.slow)

    def test_one_input(data: bytes) -> None:
        if not runner.one(data):
            report = runner.finish()
            print(report.render(), flush=True)
            sys.stdout.flush()
            targets.cleanup()
            os._exit(1 if report.exceptions or report.slow else 0)

    work = Path(args.work) / name
    work.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        f"-max_len={args.max_len}",
        "-timeout=20",  # a real hang: libFuzzer kills it and saves the input
        "-rss_limit_mb=4096",
        f"-seed={args.seed}",
        f"-artifact_prefix={findings}/{name}-",
        "-print_final_stats=0",
        "-len_control=0",
        str(work),
        str(seed_dir),
    ]
    findings.mkdir(parents=True, exist_ok=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()
