"""Make the benchmark captures (and their truth, next to them).

    python bench/gen_capture.py --preset bulk [-o bench/out/bulk.pcap] [--seed S] [--pool P]
    python bench/gen_capture.py --preset handshakes [-o bench/out/handshakes.pcap]
    python bench/gen_capture.py --preset egress [--connections 400000 --servers 330000]

``bulk``: 20,000 connections, each carrying 56 KB of encrypted application data: about
1.4 million packets and 1.2 GB, most of them bulk data segments and their ACKs.
``handshakes``: 100,000 connections, no bulk data: the per-handshake cost.
``egress``: 400,000 connections to about 330,000 distinct servers (a forward proxy or NAT
gateway: 2,000 popular servers take a Zipf share, every other connection goes to a server seen
once), from real handshake templates re-addressed per connection
(:mod:`tlssniff.testing.egress`: 100,000 connections in 13 s); its truth is
``OUT.truth.json``, the number of connections per verdict.
Any generator option (``--connections``, ``--bulk-bytes``, ...) overrides the preset, e.g. a
smaller run to measure the rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlssniff.testing import generate  # noqa: E402

PRESETS = {
    "bulk": {"connections": 20_000, "bulk_bytes": 56_000, "bulk_share": 1.0, "rate": 1000.0,
             "idle": 0.2, "pool": 0},
    "handshakes": {"connections": 100_000, "bulk_bytes": 0, "bulk_share": 0.0, "rate": 5000.0,
                   "idle": 0.5, "pool": 0},
    "egress": {"connections": 400_000, "servers": 330_000, "rate": 5000.0},
}
OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("-o", "--out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    for name in ("connections", "bulk_bytes", "pool", "servers"):
        parser.add_argument("--" + name.replace("_", "-"), type=int)
    for name in ("bulk_share", "rate", "idle"):
        parser.add_argument("--" + name.replace("_", "-"), type=float)
    args = parser.parse_args(argv)
    opts = dict(PRESETS[args.preset])
    for name in opts:
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    if args.servers is not None and args.preset != "egress":
        parser.error("--servers goes with --preset egress")
    out = args.out or OUT / f"{args.preset}.pcap"
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.preset == "egress":
        from tlssniff.testing import egress

        summary = egress.generate(out, opts["connections"], opts["servers"], seed=args.seed,
                                  rate=opts["rate"])
        print(summary.render())
        print(f"{summary.connections / summary.seconds:.0f} connections/s, "
              f"{summary.frames / summary.seconds:.0f} frames/s")
        print(f"capture: {out}\ntruth:   {out.with_name(out.stem + '.truth.json')}")
        return
    truth = generate.truth_path_for(out)
    summary = generate.generate(out, truth, opts.pop("connections"), seed=args.seed,
                                idle_mean=opts.pop("idle"), **opts)
    print(summary.render())
    rate = summary.connections / summary.seconds if summary.seconds else 0.0
    print(f"{rate:.0f} connections/s, {summary.frames / summary.seconds:.0f} frames/s, "
          f"{summary.bytes / summary.seconds / 1e6:.1f} MB/s")
    print(f"capture: {out}\ntruth:   {truth}")


if __name__ == "__main__":
    main()
