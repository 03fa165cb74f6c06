"""A bounded run of the whole-CLI mutation fuzz (fuzz/cli.py; the long run: ``python -m fuzz cli
--minutes N``, figures in docs/robustness.md).

Real captures of the repository with bytes flipped, lengths and timestamps corrupted, records
dropped or repeated, files cut, go through ``analyze -f`` each format and ``report``, in
process through the console script's boundary: every run ends with status 0 or 2, never a
traceback or an internal error, and a status 2 is one line.
"""

from __future__ import annotations

from fuzz import cli


def test_mutants_through_every_format_and_report(tmp_path):
    seeds = cli.seed_captures(limit=64 * 1024)
    assert len(seeds) >= 24
    summary = cli.fuzz(seed=20261201, mutants=24, report_every=4, slow=float("inf"),
                       findings=tmp_path / "findings", seeds=seeds)
    print(summary.render())  # the slowest run, with -s
    assert summary.mutants == 24
    assert summary.runs == 24 * len(cli.FORMATS) + 6
    assert not summary.failures, summary.render()
    assert set(summary.statuses) <= {0, 2}
    assert summary.statuses.get(2, 0) > 0  # the damage is real: some files are refused


def test_the_mutators_change_what_they_say(tmp_path):
    """Each mutation touches the structure it names (a fuzz that mutates nothing cannot fail)."""
    import random

    pcap = (cli.REPO / "captures" / "openssl-tls12.pcap").read_bytes()
    ng = (cli.REPO / "captures" / "python-ssl.pcapng").read_bytes()
    rng = random.Random(7)
    for mutator in cli.MUTATORS:
        for data in (pcap, ng):
            buf = bytearray(data)
            what = mutator(buf, rng)
            assert bytes(buf) != data, what
    assert cli._pcap_records(pcap) is not None and len(cli._pcap_records(pcap)[1]) > 20
    assert cli._pcapng_blocks(ng) is not None and len(cli._pcapng_blocks(ng)[1]) > 20
