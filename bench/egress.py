"""Every output format on an egress-shaped capture: wall time and peak RSS, against -f jsonl.

    python bench/gen_capture.py --preset egress                        # bench/out/egress.pcap
    python bench/egress.py bench/out/egress.pcap [--formats table,json,...] [--without-diagnostics]

Runs ``tlssniff analyze FILE -f FORMAT -o OUT`` for table, json, jsonl, csv and ecs, and
``tlssniff report FILE --no-verify -o DIR``, each in a fresh process (the file in the page
cache first), and prints one row per run: wall time, CPU time (user + system: steadier than the
wall time on a shared machine) and its ratio to ``-f jsonl``'s, peak RSS (the child's
``ru_maxrss``), CPU microseconds per connection, and whether the run holds the acceptance
bounds (1.5x jsonl, 300 MB). It then checks the verdict
counts of the JSONL run against the capture's ``.truth.json``. ``--python`` chooses the
interpreter (default: this one); the sources are those on its path (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FORMATS = ("jsonl", "table", "json", "csv", "ecs", "report")
ACCEPT_RATIO = 1.5
ACCEPT_RSS_MB = 300

_WRAPPER = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "w = time.perf_counter() - t\n"
    "if p.returncode not in (0, 3): sys.exit(p.stderr.decode()[-800:])\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(w, r.ru_maxrss / 1024, r.ru_utime + r.ru_stime)\n"
)


def measured(cmd: list[str]) -> tuple[float, float, float]:
    """Wall time (s), peak RSS (MB) and CPU time (user + system, s) of ``cmd``, measured from
    a fresh wrapper process. On a shared machine the CPU time is the steadier figure."""
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    wall, rss, cpu = proc.stdout.split()
    return float(wall), float(rss), float(cpu)


def warm(path: Path) -> None:
    """Read the file once so that every run starts with it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        while f.read(1 << 22):
            pass


def command(python: str, fmt: str, capture: Path, out: Path, diagnostics: bool = True
            ) -> list[str]:
    base = [python, "-m", "tlssniff"] if diagnostics else \
        [python, str(Path(__file__).with_name("_without_diagnostics.py"))]
    if fmt == "report":
        return [*base, "report", str(capture), "--no-verify", "-q", "-o", str(out)]
    return [*base, "analyze", str(capture), "-f", fmt, "-q", "--no-progress", "-o", str(out)]


def check_counts(jsonl: Path, truth: Path) -> str:
    if not truth.exists():
        return f"no truth file {truth.name}"
    got: collections.Counter = collections.Counter()
    with open(jsonl) as f:
        for line in f:
            d = json.loads(line)
            got[(d["version"], d["offered"], d["handshake"], d["hrr"], d["early_data"])] += 1
    want = {(t["version"], t["offered"], t["handshake"], t["hrr"], t["early_data"]):
            t["connections"] for t in json.loads(truth.read_text())["verdicts"]}
    if got == want:
        return f"verdict counts equal the truth ({sum(want.values())} connections)"
    return f"verdict counts DIFFER from the truth: {sorted((got - collections.Counter(want)).items())[:5]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep", type=Path, help="keep the outputs in this directory")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every format this many times, alternating; each row shows "
                        "its fastest round (noise only slows a run down) and its largest RSS")
    parser.add_argument("--without-diagnostics", action="store_true",
                        help="run with the findings stubbed out (bench/_without_diagnostics.py)"
                        ": what the outputs cost apart from them")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    truth = args.capture.with_name(args.capture.name.removesuffix(".pcap") + ".truth.json")
    connections = json.loads(truth.read_text())["connections"] if truth.exists() else None
    size = os.path.getsize(args.capture)
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        runs: dict[str, list[tuple[float, float, float]]] = {f: [] for f in formats}
        for r in range(args.rounds):
            for fmt in formats:
                out = Path(tmp) / (fmt if fmt == "report" else f"out.{fmt}")
                if fmt == "report" and out.exists():
                    shutil.rmtree(out)
                warm(args.capture)
                wall, rss, cpu = measured(command(args.python, fmt, args.capture, out,
                                               not args.without_diagnostics))
                runs[fmt].append((wall, rss, cpu))
                print(f"  round {r + 1}: {fmt}: {wall:.1f} s, CPU {cpu:.1f} s, {rss:.0f} MB",
                      file=sys.stderr, flush=True)
        rows = [(fmt, min(w for w, _, _ in got), max(m for _, m, _ in got),
                 min(c for _, _, c in got)) for fmt, got in runs.items()]
        check = check_counts(Path(tmp) / "out.jsonl", truth) if "jsonl" in formats else ""
    base = {f: cpu for f, _, _, cpu in rows}.get("jsonl")
    print(f"{args.capture.name}: {size / 1e6:.0f} MB"
          + (f", {connections:,} connections" if connections else "")
          + (", findings stubbed out" if args.without_diagnostics else "")
          + (f", fastest of {args.rounds} rounds" if args.rounds > 1 else ""))
    print("| output | wall | CPU | CPU / jsonl | peak RSS | CPU per connection | holds |")
    print("|---|---|---|---|---|---|---|")
    for fmt, wall, rss, cpu in rows:
        label = "report --no-verify" if fmt == "report" else f"-f {fmt}"
        ratio = cpu / base if base else None
        per = f"{1e6 * cpu / connections:.0f} µs" if connections else "-"
        ok = (ratio is None or ratio <= ACCEPT_RATIO) and rss <= ACCEPT_RSS_MB
        print(f"| {label} | {wall:.1f} s | {cpu:.1f} s | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} | {rss:.0f} MB | {per} | "
              f"{'yes' if ok else 'no'} |")
    if check:
        print(check)


if __name__ == "__main__":
    main()
