"""The speed and memory benchmark: tlssniff against tshark and against the bare read floor.

    python bench/gen_capture.py --preset bulk --idle 20          # once: bench/out/bulk.pcap
    python bench/gen_capture.py --preset handshakes --pool 30    # once: bench/out/handshakes.pcap
    python bench/bench.py bench/out/bulk.pcap bench/out/handshakes.pcap [--rounds 3] [--no-tshark]
    python bench/bench.py --jobs-check bench/out/bulk.pcap bench/out/handshakes.pcap
    python bench/bench.py --jobs-check bench/out/handshakes.pcap --formats csv --independent

For each capture it runs, alternating within each round so that machine noise hits all alike:

  (a) tlssniff analyze FILE --format jsonl         (the whole CLI, startup included)
  (b) tshark -r FILE -Y 'tls.handshake.type in {1,2}' -T fields -e ... (the same hello fields)
  (c) the floor: a bare Python loop that walks the pcap record headers and touches nothing else
      (run before and after (a) in each round)

and prints the best time of each, packets/s, handshakes/s, the ratios a/b and a/c, and the peak
RSS of each (from the child's rusage); then the paired ratio: per round, (a)'s CPU time over the
mean of the two floor runs around it, the median over the rounds (the steadier figure where the
machine's speed drifts between runs). It then checks tlssniff's verdict counts against the
generator's truth file next to the capture (FILE with .truth.jsonl).

``--jobs-check`` times ``tlssniff analyze A B --jobs 1`` against ``--jobs 2``, in each of
``--formats`` (default ``jsonl,table``: the lines, and the default output), and checks that
their outputs are identical (the best of each and the median of the rounds' own ratios;
``--independent`` adds two ``--jobs 1`` runs at once each round, the ceiling for ``--jobs 2``);
then one more run of each sampled per process (Linux /proc): the start-up before the first
fork, every process's CPU time, and the critical path on two cores they make (start-up plus the
rest over both cores, or the largest process), an estimate of the speed-up on a free machine
that other work on a busy one does not distort.
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TSHARK_FIELDS = (
    "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
    "tls.handshake.type", "tls.handshake.session_id", "tls.handshake.extensions_server_name",
    "tls.handshake.extension.type", "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
)

FLOOR = r"""
import struct, sys
hdr = struct.Struct("<IIII").unpack_from
n = 0
with open(sys.argv[1], "rb", buffering=0) as f:
    buf = f.read(1 << 20)
    off = 24
    while buf:
        while off + 16 <= len(buf):
            caplen = hdr(buf, off)[2]
            if off + 16 + caplen > len(buf):
                break
            off += 16 + caplen
            n += 1
        more = f.read(1 << 20)
        if not more:
            break
        buf = buf[off:] + more
        off = 0
print(n)
"""


def measured(cmd: list[str], out_path: str | None = None) -> tuple[float, float, float]:
    """Wall time, peak RSS (MB) and CPU time (user + system of the run and every process it
    started, seconds) of one run, measured in a fresh wrapper process."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "out = open(sys.argv[1], 'w') if sys.argv[1] != '-' else subprocess.DEVNULL\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)\n"
        "w = time.perf_counter() - t\n"
        "if p.returncode: sys.exit(p.stderr.decode()[-500:])\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(w, r.ru_maxrss / 1024, r.ru_utime + r.ru_stime)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, out_path or "-", *cmd], capture_output=True, text=True
    )
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
    wall, rss, cpu = proc.stdout.split()
    return float(wall), float(rss), float(cpu)


def tlssniff_cmd(path: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tlssniff", "analyze", path, "--format", "jsonl", "--no-progress", *extra]


def tshark_cmd(path: str) -> list[str]:
    cmd = ["tshark", "-n", "-r", path, "-Y", "tls.handshake.type in {1,2}", "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    return cmd


def count_packets(path: str) -> int:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        raise SystemExit(f"{path}: the floor loop reads little-endian pcap files only")
    return int(subprocess.run([sys.executable, "-c", FLOOR, path], capture_output=True,
                              text=True, check=True).stdout)


def verdict_counts(lines) -> collections.Counter:
    keys = ("version", "offered", "handshake", "hrr", "early_data")
    return collections.Counter(tuple(rec[k] for k in keys) for rec in lines)


def check_truth(path: str, jsonl: str) -> str:
    truth = Path(path).with_suffix(".truth.jsonl")
    if not truth.exists():
        return "no truth file"
    want = verdict_counts(json.loads(line) for line in truth.open())
    got = verdict_counts(json.loads(line) for line in open(jsonl))
    if want == got:
        return f"verdict counts equal the truth ({sum(want.values())} connections)"
    diff = {k: (want.get(k, 0), got.get(k, 0)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
    return f"MISMATCH with the truth (want, got): {diff}"


def warm(*paths: str) -> None:
    """Read the files once so that each timed run starts with them in the page cache. This
    machine reclaims cached pages within seconds (its page cache holds ~2.5 GB of 24 GB), so
    without it a run could pay for the previous tool's evictions; every tool gets the same."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 24):
                pass


def bench_file(path: str, rounds: int, tshark: bool) -> None:
    size = os.path.getsize(path)
    packets = count_packets(path)
    best = {"tlssniff": (1e9, 0.0), "tshark": (1e9, 0.0), "floor": (1e9, 0.0)}
    # The best CPU time (user + system) of each as well: on a machine other work keeps busy,
    # wall times wait for a core, CPU times much less so.
    cpu = {"tlssniff": 1e9, "tshark": 1e9, "floor": 1e9}
    out = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
    # This machine's speed drifts by up to 2x over minutes (the floor alone has taken 1.6 to
    # 3.1 s for the same file), so best-of figures of separate runs can pair a fast moment of
    # one with a slow moment of the other. Each round therefore also gives a ratio of its own:
    # tlssniff's CPU time over the mean of the floor's just before and just after it.
    paired: list[float] = []
    floor_cmd = [sys.executable, "-c", FLOOR, path]
    for _ in range(rounds):
        runs = [("floor", floor_cmd, None), ("tlssniff", tlssniff_cmd(path), out),
                ("floor", floor_cmd, None)]
        if tshark:
            runs.append(("tshark", tshark_cmd(path), None))
        used_in_round = []
        for name, cmd, dest in runs:
            warm(path)
            wall, rss, used = measured(cmd, dest)
            used_in_round.append(used)
            cpu[name] = min(cpu[name], used)
            if wall < best[name][0]:
                best[name] = (wall, max(rss, best[name][1]))
            else:
                best[name] = (best[name][0], max(rss, best[name][1]))
        paired.append(used_in_round[1] * 2 / (used_in_round[0] + used_in_round[2]))
    handshakes = sum(1 for _ in open(out))
    print(f"\n{path}: {size / 1e9:.2f} GB, {packets:,} packets, {handshakes:,} TLS connections "
          f"(best of {rounds}, python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(f"  {'':10} {'seconds':>8} {'packets/s':>12} {'handshakes/s':>13} {'peak RSS':>9} "
          f"{'CPU s':>7}")
    for name in ("tlssniff", "tshark", "floor"):
        wall, rss = best[name]
        if wall >= 1e9:
            continue
        print(f"  {name:10} {wall:8.2f} {packets / wall:12,.0f} {handshakes / wall:13,.0f} "
              f"{rss:7.0f} MB {cpu[name]:7.2f}")
    a = best["tlssniff"][0]
    if best["tshark"][0] < 1e9:
        print(f"  tshark / tlssniff = {best['tshark'][0] / a:.1f}x (tlssniff is that much faster)")
    print(f"  tlssniff / floor  = {a / best['floor'][0]:.2f}x "
          f"(CPU time: {cpu['tlssniff'] / cpu['floor']:.2f}x)")
    paired.sort()
    print(f"  paired CPU ratio  = {paired[len(paired) // 2]:.2f}x median of {rounds} rounds "
          f"(each: tlssniff over the floor runs on both sides of it; "
          f"{', '.join(f'{r:.2f}' for r in paired)})")
    print(f"  {check_truth(path, out)}")
    os.unlink(out)


def process_cpu(cmd: list[str], out_path: str) -> tuple[float, list[float]] | None:
    """CPU time (user + system, seconds) of each process of one run: the command's own CPU when
    its first child appeared (the start-up, which no core shares), then every process's
    own total (the command's first). Sampled from /proc every 5 ms (Linux only; None elsewhere),
    so in a run of its own: the sampling takes CPU from the run it watches."""
    if not os.path.isdir("/proc/self"):
        return None
    tick = os.sysconf("SC_CLK_TCK")

    def table() -> dict[int, tuple[int, float]]:
        got = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    text = Path(f"/proc/{name}/stat").read_text()
                except OSError:
                    continue
                rest = text[text.rindex(")") + 2:].split()
                got[int(name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / tick)
        return got

    cpu: dict[int, float] = {}
    startup = None
    with open(out_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            now = table()
            family = {proc.pid}
            grown = True
            while grown:
                grown = False
                for pid, (ppid, _) in now.items():
                    if ppid in family and pid not in family:
                        family.add(pid)
                        grown = True
            for pid in family & now.keys():
                cpu[pid] = max(cpu.get(pid, 0.0), now[pid][1])
            if startup is None and len(family) > 1 and proc.pid in now:
                startup = now[proc.pid][1]
            time.sleep(0.005)
    own = cpu.pop(proc.pid, 0.0)
    return (startup if startup is not None else own), [own, *sorted(cpu.values(), reverse=True)]


def independent_pair(cmd: list[str]) -> float:
    """Wall time of two copies of ``cmd`` started at once (outputs discarded): what the machine
    gives two processes that share nothing, the reference for ``--jobs 2``."""
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    for proc in procs:
        if proc.wait():
            raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - start


def jobs_check(paths: list[str], rounds: int, fmt: str = "jsonl",
               independent: bool = False) -> None:
    """``--jobs 1`` against ``--jobs 2`` in ``fmt``, alternating within each round (machine
    noise hits both alike); with one capture ``--jobs 2`` splits it by flow hash
    (engine/parallel.py).

    Besides wall time it prints the CPU time (user + system, all processes) of each: on a
    machine whose cores are busy with other sessions' work the wall time of ``--jobs 2`` shows
    little of the split (the scheduler gives each session its share, however many processes it
    runs), while the CPU time shows what the split costs.

    ``independent``: each round also times two ``--jobs 1`` runs at once, and prints the
    throughput they get over one run's (what two cores give two processes that share nothing
    at that moment, the ceiling for ``--jobs 2``)."""
    outs: dict[str, bytes] = {}
    times = {"1": 1e9, "2": 1e9}
    cpus = {"1": 1e9, "2": 1e9}
    same = True
    # Per round, --jobs 1's wall time over --jobs 2's just after it: the median is the steadier
    # figure where the machine's speed drifts between rounds (as bench_file's paired ratio).
    paired: list[float] = []
    pairs: list[float] = []
    for _ in range(rounds):
        walls = {}
        for jobs in ("1", "2"):
            dest = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
            warm(*paths)
            cmd = [sys.executable, "-m", "tlssniff", "analyze", *paths, "--format", fmt,
                   "--no-progress", "--jobs", jobs]
            wall, _, cpu = measured(cmd, dest)
            walls[jobs] = wall
            times[jobs] = min(times[jobs], wall)
            cpus[jobs] = min(cpus[jobs], cpu)
            data = Path(dest).read_bytes()
            if jobs in outs and outs[jobs] != data:
                same = False
            outs.setdefault(jobs, data)
            if len(paths) == 1 and jobs == "1" and fmt == "jsonl":
                truth = check_truth(paths[0], dest)
            os.unlink(dest)
        paired.append(walls["1"] / walls["2"])
        if independent:
            warm(*paths)
            pairs.append(2 * walls["1"] / independent_pair(
                [sys.executable, "-m", "tlssniff", "analyze", *paths, "--format", fmt,
                 "--no-progress", "--jobs", "1"]))
    same = same and outs["1"] == outs["2"]
    print(f"\n{' '.join(paths)} -f {fmt} (best of {rounds}, alternating)")
    print(f"--jobs 1: {times['1']:.2f} s, --jobs 2: {times['2']:.2f} s, "
          f"speed-up {times['1'] / times['2']:.2f}x, outputs identical: {same}")
    paired.sort()
    print(f"  paired speed-up {paired[len(paired) // 2]:.2f}x median of {rounds} rounds "
          f"(each: --jobs 1 over the --jobs 2 run after it; "
          f"{', '.join(f'{r:.2f}' for r in paired)})")
    if pairs:
        pairs.sort()
        print(f"  two independent --jobs 1 runs at once: {pairs[len(pairs) // 2]:.2f}x the "
              f"throughput of one, median ({', '.join(f'{r:.2f}' for r in pairs)})")
    print(f"  CPU time: --jobs 1 {cpus['1']:.2f} s, --jobs 2 {cpus['2']:.2f} s (all processes; "
          f"{cpus['2'] / cpus['1']:.2f}x the CPU of one process)")
    if len(paths) == 1 and fmt == "jsonl":
        print(f"  {truth}")
    # One more run of each, sampled per process: the critical path on two cores is the start-up
    # (before the first fork) plus the rest spread over both cores, or the largest process.
    for jobs in ("1", "2"):
        dest = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
        warm(*paths)
        got = process_cpu([sys.executable, "-m", "tlssniff", "analyze", *paths, "--format",
                           fmt, "--no-progress", "--jobs", jobs], dest)
        os.unlink(dest)
        if got is None:
            break
        startup, each = got
        rest = [each[0] - startup, *each[1:]] if len(each) > 1 else []
        path_s = startup + max([*rest, sum(rest) / 2]) if rest else each[0]
        cpus[jobs] = path_s
        if rest:
            print(f"  --jobs {jobs} CPU per process: start-up {startup:.2f} s, then the parent "
                  f"{rest[0]:.2f} s and its children {', '.join(f'{c:.2f}' for c in rest[1:])} "
                  f"s; critical path on two cores {path_s:.2f} s")
        else:
            print(f"  --jobs {jobs} CPU: one process, {path_s:.2f} s")
    else:
        print(f"  estimated speed-up on two free cores (CPU): {cpus['1'] / cpus['2']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--jobs-check", action="store_true")
    ap.add_argument("--formats", default="jsonl,table",
                    help="--jobs-check: the output formats to time, comma-separated")
    ap.add_argument("--independent", action="store_true",
                    help="--jobs-check: also time two --jobs 1 runs at once, each round")
    args = ap.parse_args()
    os.chdir(ROOT)
    if args.jobs_check:
        for fmt in args.formats.split(","):
            jobs_check(args.captures, args.rounds, fmt, args.independent)
        return
    tshark = not args.no_tshark and shutil.which("tshark") is not None
    for path in args.captures:
        bench_file(path, args.rounds, tshark)


if __name__ == "__main__":
    main()
