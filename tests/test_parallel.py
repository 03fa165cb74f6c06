"""--jobs gives byte-identical output; --one-stream follows connections across rotated files."""

from __future__ import annotations

import json
import struct

from tests.conftest import CAPTURES, PUBLIC, run_tlssniff

TLS = sorted((PUBLIC / "zeek" / "tls").glob("*.pcap")) + sorted(CAPTURES.glob("*.pcap*"))


def test_jobs_output_is_identical():
    args = [str(p) for p in TLS]
    for fmt in ("jsonl", "ecs", "csv", "json", "table"):
        one = run_tlssniff("analyze", *args, "-f", fmt, "--jobs", "1", "-q").stdout
        two = run_tlssniff("analyze", *args, "-f", fmt, "--jobs", "2", "-q").stdout
        assert one == two, fmt
        assert one.strip()


def test_jobs_fail_under_uses_the_merged_aggregates():
    """With --jobs the workers aggregate their own captures; the gate sees the merged figures."""
    args = [str(p) for p in TLS]
    one = run_tlssniff("analyze", *args, "-f", "jsonl", "--fail-under", "60%", "--jobs", "1",
                       "-q", check=False)
    two = run_tlssniff("analyze", *args, "-f", "jsonl", "--fail-under", "60%", "--jobs", "2",
                       "-q", check=False)
    assert one.returncode == two.returncode == 3
    assert "resumption rate under 60%: 127.0.0.1:44331: 20%" in one.stderr
    assert one.stderr == two.stderr


def test_merged_aggregates_equal_one_pass():
    """Aggregator.merge of per-capture aggregates (in capture order) equals adding every
    verdict to one aggregator, server by server and in total, and survives pickling."""
    import pickle

    from tlssniff.analysis.aggregate import Aggregator
    from tlssniff.engine.pipeline import analyze_paths

    whole, merged = Aggregator(), Aggregator()
    for path in TLS:
        part = Aggregator()

        def add(v, part=part):
            whole.add(v)
            part.add(v)

        analyze_paths([str(path)], add)
        merged.merge(pickle.loads(pickle.dumps(part)))
    assert whole.total.handshakes > 100
    assert merged.total.to_dict() == whole.total.to_dict()
    assert [s.to_dict() for s in merged.sorted_servers()] == [
        s.to_dict() for s in whole.sorted_servers()]
    assert list(merged.servers) == list(whole.servers)


def _split_pcap(src, at: int, a, b) -> None:
    """Write the first ``at`` records of a little-endian pcap to ``a``, the rest to ``b``."""
    data = src.read_bytes()
    off = 24
    for _ in range(at):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    a.write_bytes(data[:off])
    b.write_bytes(data[:24] + data[off:])


def test_one_stream_follows_connections_across_files(tmp_path):
    src = CAPTURES / "openssl-tls12.pcap"
    whole = run_tlssniff("analyze", str(src), "-f", "jsonl").stdout.splitlines()
    a, b = tmp_path / "part0.pcap", tmp_path / "part1.pcap"
    _split_pcap(src, 30, a, b)
    joined = run_tlssniff("analyze", "--one-stream", str(a), str(b), "-f", "jsonl").stdout
    def strip(lines):  # frame numbers and the file name are per file
        recs = [json.loads(line) for line in lines]
        return [{k: v for k, v in r.items() if k not in ("frames", "capture")} for r in recs]

    assert strip(joined.splitlines()) == strip(whole)
    # Analyzed as separate captures, the connection cut by the split is reported twice:
    # once unfinished, once seen from its middle; never as a made-up verdict.
    separate = run_tlssniff("analyze", str(a), str(b), "-f", "jsonl").stdout.splitlines()
    assert len(separate) > len(whole)
