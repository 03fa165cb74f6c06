"""``python -m fuzz``: run tlssniff's fuzz targets, rebuild the seed corpus, replay inputs.

    python -m fuzz list
    python -m fuzz seeds                                   # rebuild fuzz/corpus/ from captures
    python -m fuzz run TARGET --iterations N --max-seconds S [--engine atheris|mutate]
    python -m fuzz replay TARGET FILE...                   # time and run saved inputs
    python -m fuzz cli --minutes N                         # the whole CLI on damaged captures

``run`` stops at whichever budget is spent first and prints iterations, uncaught exceptions
(distinct ones are saved under --findings) and the slowest input. Exit status 1 when an exception
escaped or an input took over --slow seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_NAMES = ("tls", "preamble", "hello", "reassembly", "pcap", "pcapng", "decode")


def _atheris_available() -> bool:
    try:
        import atheris  # noqa: F401, PLC0415
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the targets")
    sub.add_parser("seeds", help="rebuild fuzz/corpus/ from the captures")
    r = sub.add_parser("run", help="fuzz one target")
    r.add_argument("target", choices=TARGET_NAMES)
    r.add_argument("--iterations", type=int, default=1_000_000)
    r.add_argument("--max-seconds", type=float, default=1800.0)
    r.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--max-len", type=int, default=1 << 16)
    r.add_argument("--slow", type=float, default=1.0, help="seconds that make an input slow")
    r.add_argument("--findings", type=Path, default=HERE / "findings")
    r.add_argument("--work", type=Path, default=Path("/tmp/tlssniff-fuzz"),
                   help="atheris: folder for the corpus libFuzzer grows")
    c = sub.add_parser("cli", help="whole-CLI mutation fuzz: damaged captures through every "
                       "format and report (fuzz/cli.py)")
    budget = c.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="run for this long")
    budget.add_argument("--mutants", type=int, help="run this many mutants")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--report-every", type=int, default=3, help="report on every Nth mutant")
    c.add_argument("--verify-every", type=int, default=0,
                   help="with tshark's cross-check on every Nth (0: never)")
    c.add_argument("--slow", type=float, default=10.0, help="seconds that make a run slow")
    c.add_argument("--findings", type=Path, default=HERE / "findings" / "cli")
    rp = sub.add_parser("replay", help="run saved inputs through a target")
    rp.add_argument("target", choices=TARGET_NAMES)
    rp.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)

    if args.cmd == "list":
        from fuzz import targets  # noqa: PLC0415

        for name, fn in targets.TARGETS.items():
            print(f"{name:11} {fn.__module__}.{fn.__name__}")
        return 0
    if args.cmd == "seeds":
        from fuzz import corpus  # noqa: PLC0415

        corpus.build()
        return 0
    if args.cmd == "cli":
        from fuzz import cli  # noqa: PLC0415

        if args.minutes is None and args.mutants is None:
            args.minutes = 10.0
        return cli.main(args)
    if args.cmd == "replay":
        from fuzz import targets  # noqa: PLC0415

        status = 0
        for f in args.files:
            data = f.read_bytes()
            t0 = time.perf_counter()
            try:
                targets.TARGETS[args.target](data)
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001
                outcome = f"{type(exc).__name__}: {exc}"
                status = 1
            print(f"{f}: {len(data)} bytes, {1000 * (time.perf_counter() - t0):.1f} ms, {outcome}")
        return status

    engine = args.engine
    if engine == "auto":
        engine = "atheris" if _atheris_available() else "mutate"
    seed_dir = HERE / "corpus" / args.target
    if engine == "atheris":
        from fuzz.engine import run_atheris  # noqa: PLC0415

        run_atheris(args.target, args, seed_dir, args.findings)
        return 0  # not reached
    from fuzz import corpus, targets  # noqa: PLC0415
    from fuzz.engine import Runner, run_mutate  # noqa: PLC0415

    runner = Runner(args.target, targets.TARGETS[args.target], args.findings, "mutate",
                    args.iterations, args.max_seconds, args.slow)
    report = run_mutate(runner, corpus.load(args.target), args.seed, args.max_len)
    print(report.render())
    return 1 if report.exceptions or report.slow else 0


if __name__ == "__main__":
    sys.exit(main())
