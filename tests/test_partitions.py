"""One capture on several cores (``analyze ONE --jobs N``): flow-hash partitions merged back into
exactly what one process gives, on every capture the repository ships."""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import CAPTURES, assert_verdicts, run_tlssniff
from tlssniff.engine import fanout, merge, parallel
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.capture.files import open_capture
from tlssniff.engine.pipeline import Analyzer, partition_of
from tlssniff.errors import TlssniffError
from tlssniff.flow.table import Limits, flow_key
from tlssniff.run.offline import line_writer

ALL = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))


def _one_process(path: str, limits: Limits | None = None):
    verdicts: list = []
    a = Analyzer(verdicts.append, limits)
    a.analyze_file(path)
    a.finish()
    return verdicts, a.counters


def _partitioned(path: str, parts: int, tmp, limits: Limits | None = None):
    """What the workers and the parent do, in one process (the pool only carries it)."""
    limits = limits or Limits()
    spools = [str(tmp / f"{i}.spool") for i in range(parts)]
    results = [parallel.analyze_part(path, limits, i, parts, s) for i, s in enumerate(spools)]
    verdicts: list = []
    parallel.merge_parts(spools, verdicts.append)
    total = parallel.Counters()
    for counters, _, evicted, error in results:
        assert error is None and not evicted
        parallel.merge_counters(total, counters)
    return verdicts, total


def _partitioned_lines(path: str, parts: int, tmp, fmt: str = "jsonl"):
    spools = [str(tmp / f"l{i}.spool") for i in range(parts)]
    results = [parallel.analyze_part(path, Limits(), i, parts, s, line_writer(fmt))
               for i, s in enumerate(spools)]
    out = io.StringIO()
    agg = Aggregator()
    parallel.merge_part_lines(spools, [r[1] for r in results],
                              parallel.Split(line_writer(fmt), agg, out))
    return out.getvalue(), agg


def test_the_flow_hash_is_symmetric():
    a, b = bytes([10, 0, 0, 1]), bytes([192, 168, 7, 9])
    for parts in (2, 3, 4):
        for sport, dport in ((443, 50123), (50124, 443), (1, 65535)):
            assert partition_of(flow_key(a, b, sport, dport), parts) == partition_of(
                flow_key(b, a, dport, sport), parts)
    # Client ports spread over the partitions.
    seen = {partition_of(flow_key(a, b, p, 443), 2) for p in range(40000, 40010)}
    assert seen == {0, 1}


def test_partitions_give_the_one_process_verdicts_on_every_capture(tmp_path):
    """Verdicts (every field, in order) and counters equal one process on every shipped
    capture, for 2 and 3 partitions; JSONL lines equal byte for byte."""
    checked = 0
    for path in ALL:
        try:
            want, want_counters = _one_process(str(path))
        except TlssniffError:
            continue  # unreadable on purpose (damaged-capture tests)
        for parts in (2, 3):
            got, counters = _partitioned(str(path), parts, tmp_path)
            assert [v.to_dict() for v in got] == [v.to_dict() for v in want], (path, parts)
            assert counters.to_dict() == want_counters.to_dict(), (path, parts)
        checked += 1
    assert checked > 100


def _one_process_lines(path: str, fmt: str, limits: Limits | None = None):
    from tlssniff.output.formats import VerdictWriter

    out, agg = io.StringIO(), Aggregator()
    w = VerdictWriter(fmt, out)
    a = Analyzer(lambda v: (agg.add(v), w.write(v)), limits)
    a.analyze_file(path)
    a.finish()
    return out.getvalue(), agg, a.counters


def _assert_same_aggregate(got: Aggregator, want: Aggregator) -> None:
    assert list(got.servers) == list(want.servers)
    assert [s.to_dict() for s in got.servers.values()] == [
        s.to_dict() for s in want.servers.values()]
    assert got.total.to_dict() == want.total.to_dict()


FAN_OUT = [p for p in ALL if fanout.pcap_layout(str(p)) is not None]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_fan_out_gives_the_one_process_lines_on_every_pcap(tmp_path, fmt):
    """One reader handing each worker only its frames (engine/fanout.py, uncompressed pcap):
    lines byte for byte, counters (the whole file's from the reader: frames, bytes, times,
    the capture's warnings and errors) and aggregates equal one process on every shipped pcap,
    for 2 and 3 workers. CSV too: the workers write rows, the run's own writer the header."""
    from tlssniff.output.formats import VerdictWriter

    checked = 0
    for path in FAN_OUT:
        try:
            want, want_agg, want_counters = _one_process_lines(str(path), fmt)
        except TlssniffError:
            continue
        for parts in (2, 3):
            out, agg = io.StringIO(), Aggregator()
            VerdictWriter(fmt, out)  # the header, for CSV
            split = parallel.Split(line_writer(fmt), agg, out)
            total, aggs, merged = parallel._fan_out(str(path), Limits(), parts, split,
                                                    str(tmp_path), fanout.pcap_layout(str(path)))
            assert merged, (path, parts)
            parallel._copy_lines(merged, out)
            parallel.merge_ordered(agg, aggs)
            assert out.getvalue() == want, (path, parts)
            assert total.to_dict() == want_counters.to_dict(), (path, parts)
            _assert_same_aggregate(agg, want_agg)
        checked += 1
    assert checked > 100


def test_the_fan_out_spools_the_one_process_verdicts_on_every_pcap():
    """The outputs that need every verdict (json, parquet: every verdict goes through the
    run's sinks, diagnostics included) take the one reader too: each partition spools its
    verdicts (fanout.SpoolKeeper) and the parent replays them, which gives the verdicts, in
    order, and the counters one process gives, for 2 and 3 workers, on every shipped pcap."""
    checked = 0
    for path in FAN_OUT:
        try:
            want, want_counters = _one_process(str(path))
        except TlssniffError:
            continue
        for parts in (2, 3):
            got: list = []
            counters = parallel.analyze_partitioned(str(path), got.append, Limits(), parts)
            assert [v.to_dict() for v in got] == [v.to_dict() for v in want], (path, parts)
            assert counters.to_dict() == want_counters.to_dict(), (path, parts)
        checked += 1
    assert checked > 100


def test_the_spooling_fan_out_falls_back_to_one_process_on_eviction(monkeypatch):
    """A partition that evicts (its share of --max-flows) makes the spools inexact: nothing of
    them is replayed, and one process gives the verdicts."""
    path = str(CAPTURES / "nginx.pcap")
    limits = Limits(max_flows=2)
    want, want_counters = _one_process(path, limits)  # one process keeps both flows
    spooled = []
    real_fan_out = parallel._fan_out

    def fan_out(*args, **kwargs):
        result = real_fan_out(*args, **kwargs)
        spooled.append(result[2])
        return result

    monkeypatch.setattr(parallel, "_fan_out", fan_out)
    got: list = []
    counters = parallel.analyze_partitioned(path, got.append, limits, 2)
    assert spooled == [""]  # the fan-out ran, and said a partition evicted
    assert [v.to_dict() for v in got] == [v.to_dict() for v in want]
    assert counters.to_dict() == want_counters.to_dict()


def _one_process_summary(path: str, limits: Limits | None = None, **diag_limits):
    """The table's input one process gives: the aggregate, the diagnostics, the counters."""
    from tlssniff.analysis.diagnostics import Diagnostics

    agg, diag = Aggregator(), Diagnostics(**diag_limits)
    a = Analyzer(lambda v: (agg.add(v), diag.add(v)), limits)
    a.analyze_file(path)
    a.finish()
    return agg, diag, a.counters


def _fanned_out_summary(path: str, parts: int, limits: Limits | None = None, **diag_limits):
    """The table's input by ``--jobs parts`` (the split without lines), and the verdicts that
    reached ``on_verdict`` (none unless the run fell back to one process)."""
    from tlssniff.analysis.diagnostics import Diagnostics

    agg, diag = Aggregator(), Diagnostics(**diag_limits)
    replayed: list = []

    def on_verdict(v):
        replayed.append(v)
        agg.add(v)
        diag.add(v)

    counters = parallel.analyze_partitioned(path, on_verdict, limits or Limits(), parts,
                                            split=parallel.Split(None, agg, None, diag))
    return agg, diag, counters, replayed


def test_the_table_fan_out_gives_the_one_process_aggregate_and_findings_on_every_pcap():
    """The table (a summary, nothing written per verdict): the workers aggregate and send
    their verdicts' diagnostics records, which the parent diagnoses in the one-process order
    as they come; no verdict is replayed. The aggregate, every finding and the whole
    diagnostics document (concurrency, client breakdowns, limits) and the counters equal one
    process, for 2 and 3 workers, on every shipped pcap; and with diagnostics limits small
    enough to drop sessions and servers (which depends on the order they come in)."""
    checked = 0
    for path in FAN_OUT:
        try:
            want_agg, want_diag, want_counters = _one_process_summary(str(path))
        except TlssniffError:
            continue
        for parts in (2, 3):
            agg, diag, counters, replayed = _fanned_out_summary(str(path), parts)
            assert replayed == [], (path, parts)
            _assert_same_aggregate(agg, want_agg)
            assert diag.to_dict() == want_diag.to_dict(), (path, parts)
            assert counters.to_dict() == want_counters.to_dict(), (path, parts)
        checked += 1
    assert checked > 100
    limited = 0
    for path in sorted(CAPTURES.glob("diagnostics/*.pcap")):
        _, want_diag, _ = _one_process_summary(str(path), max_sessions=3, max_servers=1)
        _, diag, _, replayed = _fanned_out_summary(str(path), 2, max_sessions=3, max_servers=1)
        assert replayed == [] and diag.to_dict() == want_diag.to_dict(), path
        limits = want_diag.to_dict()["limits"]
        limited += bool(limits["sessions_dropped"] and limits["servers_dropped"])
    assert limited >= 3


def test_the_table_fan_out_falls_back_to_one_process_on_eviction():
    """A partition that evicts: the diagnostics fed during the run are forgotten (reset) and
    one process feeds every verdict again, once."""
    path = str(CAPTURES / "nginx.pcap")
    limits = Limits(max_flows=2)
    want_agg, want_diag, want_counters = _one_process_summary(path, limits)
    want, _ = _one_process(path, limits)
    agg, diag, counters, replayed = _fanned_out_summary(path, 2, limits)
    assert [v.to_dict() for v in replayed] == [v.to_dict() for v in want]
    _assert_same_aggregate(agg, want_agg)
    assert diag.to_dict() == want_diag.to_dict()
    # Every verdict counted once (not the fed records and the replay both).
    by_address = diag.to_dict()["clients"]["by_address"]
    assert sum(row["handshakes"] for row in by_address) == len(want) > 0
    assert counters.to_dict() == want_counters.to_dict()


def test_a_split_without_lines_replays_the_verdicts_where_there_is_no_fan_out():
    """pcapng, gzip, several files: no fan-out, so the table's split is dropped and the
    verdicts are replayed into on_verdict, giving what one process gives."""
    for path in (CAPTURES / "demo.pcapng", CAPTURES / "python-ssl.pcapng"):
        want_agg, want_diag, want_counters = _one_process_summary(str(path))
        agg, diag, counters, replayed = _fanned_out_summary(str(path), 2)
        assert len(replayed) == want_agg.total.handshakes > 0
        assert diag.to_dict() == want_diag.to_dict()
        _assert_same_aggregate(agg, want_agg)


def test_the_fan_out_sweeps_where_one_process_does(tmp_path):
    """A short idle timeout (2 s of capture time): connections expire in the periodic sweeps,
    which a worker runs where the reader says (it sees only its own frames); the lines and
    counters still equal one process, the idle expiries included (TCP and DTLS over UDP)."""
    limits = Limits(idle_timeout=2.0)
    expired = []
    for path in FAN_OUT:
        try:
            want, want_agg, want_counters = _one_process_lines(str(path), "jsonl", limits)
        except TlssniffError:
            continue
        out, agg = io.StringIO(), Aggregator()
        split = parallel.Split(line_writer("jsonl"), agg, out)
        total, aggs, merged = parallel._fan_out(str(path), limits, 2, split, str(tmp_path),
                                                fanout.pcap_layout(str(path)))
        assert merged, path
        parallel._copy_lines(merged, out)
        assert out.getvalue() == want, path
        assert total.to_dict() == want_counters.to_dict(), path
        if want_counters.idle_expired:
            expired.append(path.name)
    assert "smtp.pcap" in expired and "dtls13-cid.pcap" in expired, expired


def _records(data: bytes):
    """The (header fields, frame) of each record of a little-endian microsecond pcap."""
    off = 24
    while off + 16 <= len(data):
        sec, usec, caplen, length = struct.unpack_from("<IIII", data, off)
        yield sec, usec, caplen, length, data[off + 16:off + 16 + caplen]
        off += 16 + caplen


def test_the_fan_out_on_damaged_big_endian_and_ecs_captures(tmp_path):
    """Through the CLI's own path (analyze_partitioned), what one process gives: a capture cut
    inside a record (the warning, the frames before it), one with a corrupt record length (the
    error, the frames before it), a big-endian nanosecond pcap, and ECS lines."""
    data = (CAPTURES / "nginx.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])
    corrupt = bytearray(data)
    off = 24
    for _ in range(40):
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    struct.pack_into("<I", corrupt, off + 8, 0x7FFFFF)
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(corrupt))
    magic, major, minor, zone, sigfigs, snaplen, linktype = struct.unpack_from("<IHHiIII", data)
    big = [struct.pack(">IHHiIII", 0xA1B23C4D, major, minor, zone, sigfigs, snaplen, linktype)]
    for sec, usec, caplen, length, frame in _records(data):
        big.append(struct.pack(">IIII", sec, usec * 1000, caplen, length) + frame)
    be = tmp_path / "big-endian-ns.pcap"
    be.write_bytes(b"".join(big))
    cases = [(cut, "jsonl"), (bad, "jsonl"), (be, "jsonl"),
             (CAPTURES / "openssl-tls13.pcap", "ecs")]
    for path, fmt in cases:
        assert fanout.pcap_layout(str(path)) is not None
        want, want_agg, want_counters = _one_process_lines(str(path), fmt)
        out, agg = io.StringIO(), Aggregator()
        counters = parallel.analyze_partitioned(
            str(path), lambda v: None, Limits(), 2,
            split=parallel.Split(line_writer(fmt), agg, out))
        assert out.getvalue() == want, path
        assert counters.to_dict() == want_counters.to_dict(), path
        _assert_same_aggregate(agg, want_agg)
        assert counters.tls_connections > 0
    cut_counters = _one_process_lines(str(cut), "jsonl")[2]
    assert any("truncated" in w for w in cut_counters.warnings), cut_counters.warnings
    bad_counters = _one_process_lines(str(bad), "jsonl")[2]
    assert any("corrupt" in e for e in bad_counters.errors), bad_counters.errors
    assert bad_counters.frames == 40


def test_the_fan_out_writes_into_a_regular_output_file_and_cuts_back_on_eviction(tmp_path):
    """Into a regular file (``-o FILE``, ``> FILE``) the merged lines go straight to the output,
    after what it held already; when a partition evicts, they are cut off again and one
    process writes the lines: the file then holds what --jobs 1 leaves in it. Into a pipe or a
    StringIO the lines still go to a file of their own first (the other tests)."""
    from tlssniff.output.formats import VerdictWriter

    path = str(CAPTURES / "nginx.pcap")
    evicted = []
    for limits in (Limits(), Limits(max_flows=2)):
        want, want_agg, want_counters = _one_process_lines(path, "jsonl", limits)
        probe = parallel.Split(line_writer("jsonl"), Aggregator(), io.StringIO())
        merged = parallel._fan_out(path, limits, 2, probe, str(tmp_path),
                                   fanout.pcap_layout(path))[2]
        evicted.append(not merged)
        dest = tmp_path / "out.jsonl"
        agg = Aggregator()
        with open(dest, "w", encoding="utf-8", newline="") as out:
            out.write("kept\n")
            assert parallel._direct_output(out) == (out.buffer, 5)
            w = VerdictWriter("jsonl", out)
            counters = parallel.analyze_partitioned(
                path, lambda v, agg=agg, w=w: (agg.add(v), w.write(v)), limits, 2,
                split=parallel.Split(line_writer("jsonl"), agg, out))
        assert dest.read_text(encoding="utf-8") == "kept\n" + want
        assert counters.to_dict() == want_counters.to_dict()
        _assert_same_aggregate(agg, want_agg)
        assert want.count("\n") > 3
    assert evicted == [False, True]
    r, w = os.pipe()
    with os.fdopen(w, "w", encoding="utf-8") as pipe:
        assert parallel._direct_output(pipe) is None
    os.close(r)
    assert parallel._direct_output(io.StringIO()) is None


def test_partition_lines_and_aggregates_equal_one_process(tmp_path):
    for path in [CAPTURES / "demo.pcapng", CAPTURES / "openssl-tls12.pcap",
                 CAPTURES / "python-ssl.pcapng"]:
        for fmt in ("jsonl", "ecs"):
            from tlssniff.output.formats import VerdictWriter

            out, agg = io.StringIO(), Aggregator()
            w = VerdictWriter(fmt, out)

            def on(v, agg=agg, w=w):
                agg.add(v)
                w.write(v)

            a = Analyzer(on)
            a.analyze_file(str(path))
            a.finish()
            lines, got_agg = _partitioned_lines(str(path), 2, tmp_path, fmt)
            assert lines == out.getvalue()
            assert list(got_agg.servers) == list(agg.servers)
            assert [s.to_dict() for s in got_agg.servers.values()] == [
                s.to_dict() for s in agg.servers.values()]
            assert got_agg.total.to_dict() == agg.total.to_dict()


SID_REFUSED = CAPTURES / "partitions" / "sid-refused-tls13-client.pcap"


def _spooled(spool: str) -> list:
    """The records a partition wrote to its spool, in order."""
    return [r for batch in parallel._batches(spool) for r in batch]


def test_a_session_id_issued_in_another_partition_is_still_an_offer(tmp_path):
    """sid-refused-tls13-client.pcap (scripts/make_partition_capture.py): TLS 1.3-capable
    clients present TLS 1.2 session ids to a restarted server, which refuses them. Only the
    earlier connection that issued each id makes it an offer (RFC 8446 D.4), and for 2 and 3
    partitions some of those are in another partition: the partition alone says "no offer",
    the merge settles it as one process does, and the clients' own truth agrees."""
    path = str(SID_REFUSED)
    want, _ = _one_process(path)
    truth = [json.loads(line) for line in SID_REFUSED.with_suffix(".truth.jsonl").open()]
    assert_verdicts([v.to_dict() for v in want], truth)
    refused = {v.client for v in want if v.offered.value == "session_id"}
    assert len(refused) == 6
    for parts in (2, 3):
        spools = [str(tmp_path / f"{i}.spool") for i in range(parts)]
        for i, s in enumerate(spools):
            parallel.analyze_part(path, Limits(), i, parts, s)
        records = [r for s in spools for r in _spooled(s)]
        # Each partition alone calls every refused offer "none", with the alternative "offer".
        alone = {r[1].client: r for r in records if r[1].client in refused}
        assert all(r[1].offered.value == "none" and r[2] is not None
                   and r[2][1].offered.value == "session_id" for r in alone.values())
        # ... and for some of them the connection that issued the id is in another partition.
        issuer_part = {}
        for i, s in enumerate(spools):
            for r in _spooled(s):
                if r[1].issued_session_id:
                    issuer_part[r[1].issued_session_id] = i
        part_of = {r[1].client: i for i, s in enumerate(spools) for r in _spooled(s)}
        crossing = [c for c, r in alone.items()
                    if issuer_part[r[2][1].session_id] != part_of[c]]
        assert crossing, parts
        got, _ = _partitioned(path, parts, tmp_path)
        assert [v.to_dict() for v in got] == [v.to_dict() for v in want]


def test_a_partition_that_evicts_falls_back_to_one_process(tmp_path):
    """Partitions get a share of the limits; when one evicts, the run is one process."""
    path = str(CAPTURES / "demo.pcapng")
    limits = Limits(max_flows=4)
    counters, _, evicted, _ = parallel.analyze_part(path, limits, 0, 2, str(tmp_path / "s"))
    assert evicted
    want, want_counters = _one_process(path, limits)
    got: list = []
    counters = parallel.analyze_partitioned(path, got.append, limits, 2)
    assert [v.to_dict() for v in got] == [v.to_dict() for v in want]
    assert counters.to_dict() == want_counters.to_dict()


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "table"])
@pytest.mark.parametrize("capture", ["demo.pcapng", "diagnostics/cluster-separate-keys.pcap"])
def test_cli_jobs_on_one_capture_is_byte_identical(fmt, capture):
    path = str(CAPTURES / capture)
    one = run_tlssniff("analyze", path, "-f", fmt, "--jobs", "1", "-q").stdout
    two = run_tlssniff("analyze", path, "-f", fmt, "--jobs", "2", "-q").stdout
    assert one == two
    assert one.count("\n") > 5
    if fmt == "table" and capture.endswith(".pcap"):
        assert "Findings" in one


def test_streamed_lines_fall_back_to_one_process_on_eviction():
    """JSONL workers stream their lines to the merging parent; when a partition evicted, the
    merged file is thrown away and one process writes the lines (and aggregates)."""
    from tlssniff.output.formats import VerdictWriter

    path = str(CAPTURES / "demo.pcapng")
    for limits in (Limits(max_flows=4), Limits()):
        want, want_agg = io.StringIO(), Aggregator()
        w = VerdictWriter("jsonl", want)
        a = Analyzer(lambda v, agg=want_agg, w=w: (agg.add(v), w.write(v)), limits)
        a.analyze_file(path)
        a.finish()
        got, agg = io.StringIO(), Aggregator()
        gw = VerdictWriter("jsonl", got)
        counters = parallel.analyze_partitioned(
            path, lambda v, agg=agg, gw=gw: (agg.add(v), gw.write(v)), limits, 2,
            split=parallel.Split(line_writer("jsonl"), agg, got))
        assert got.getvalue() == want.getvalue()
        assert counters.to_dict() == a.counters.to_dict()
        assert [s.to_dict() for s in agg.servers.values()] == [
            s.to_dict() for s in want_agg.servers.values()]


@given(
    st.lists(st.tuples(st.integers(0, 50), st.integers(0, 2), st.integers(0, 50)), unique=True,
             max_size=60),
    st.integers(1, 4),
    st.lists(st.integers(0, 7), max_size=11).map(lambda sizes: [*sizes, 1]),  # empty ones too
    st.randoms(use_true_random=False),
)
def test_merge_records_is_the_one_process_order(orders, parts, sizes, rnd) -> None:
    """The parent's merge (engine/merge.py: a two-way merge over batches for two partitions,
    heapq beyond) gives every record once, in order, whatever the batch sizes (empty batches
    included) and however the records fall to the partitions."""
    own: list[list[tuple]] = [[] for _ in range(parts)]
    for order in sorted(orders):
        own[rnd.randrange(parts)].append((order, f"line {order}"))

    def batches(records: list[tuple]):
        i = k = 0
        while i < len(records):
            n = sizes[k % len(sizes)]
            k += 1
            yield records[i:i + n]
            i += n

    got = list(merge.merge_records([batches(r) for r in own]))
    assert got == [(o, f"line {o}") for o in sorted(orders)]


def test_partition_of_spreads_ipv4_and_ipv6_clients() -> None:
    """The flow hash reads only twelve bytes (the low four of each address and the ports): both
    partitions still get a fair share of clients on consecutive ports, over IPv4 and IPv6."""
    for a, b in ((bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])),
                 (bytes(15) + b"\x01", bytes(15) + b"\x02")):
        counts = [0, 0]
        for port in range(40000, 42000):
            counts[partition_of(flow_key(a, b, port, 443), 2)] += 1
        assert min(counts) > 800, counts


@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=16, max_size=16),
                          st.binary(min_size=16, max_size=16), st.integers(0, 65535),
                          st.integers(0, 65535)), min_size=1, max_size=40),
       st.integers(2, 5))
def test_the_reader_places_each_frame_in_its_flow_hash_partition(flows, parts) -> None:
    """The reader (engine/fanout.py Reader.scan) hands every Ethernet + IPv4/IPv6 + TCP frame
    to the partition partition_of gives its 4-tuple (the one a worker's own Analyzer would
    pick), and only there: the hash read in place at the header offsets of both families."""
    records = []
    want = []
    for v6, src, dst, sport, dport in flows:
        if v6:
            ip = (b"\x60" + bytes(5) + b"\x06\x40" + src + dst)
            key = flow_key(src, dst, sport, dport)
            eth_type = b"\x86\xdd"
        else:
            ip = (b"\x45" + bytes(8) + b"\x06" + bytes(2) + src[:4] + dst[:4])
            key = flow_key(src[:4], dst[:4], sport, dport)
            eth_type = b"\x08\x00"
        frame = bytes(12) + eth_type + ip + struct.pack(">HH", sport, dport) + bytes(16)
        records.append(struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)
        want.append(partition_of(key, parts))
    buf = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "flows.pcap")
        with open(path, "wb") as f:
            f.write(buf)
        with open_capture(path) as cap:
            reader = fanout.Reader(cap, fanout.pcap_layout(path), parts, 60.0,
                                   lambda w, data: None)
            end, _ = reader.scan(buf, 24)
    assert end == len(buf)
    got = [-1] * len(flows)
    for w, places in enumerate(reader.frames):
        for place in places:
            i = (place >> fanout._OFF_BITS) - 1
            assert got[i] == -1
            got[i] = w
    assert got == want


def test_without_an_aggregator_the_workers_write_the_same_lines_and_aggregate_nothing(tmp_path):
    """``-f jsonl``/``ecs`` without --fail-under reads no per-server figure, so the run gives
    its Split no aggregator and the workers skip the aggregation: the lines and counters are
    still exactly one process's, on every path --jobs takes (the fan-out of a pcap, the
    streamed partitions of a pcapng, one worker per file), and no worker made an aggregate."""
    from tlssniff.engine.parallel import analyze_captures

    for path, fmt in ((CAPTURES / "nginx.pcap", "jsonl"), (CAPTURES / "python-ssl.pcapng", "ecs")):
        want, _, want_counters = _one_process_lines(str(path), fmt)
        out = io.StringIO()
        counters = parallel.analyze_partitioned(
            str(path), lambda v: None, Limits(), 2,
            split=parallel.Split(line_writer(fmt), None, out))
        assert out.getvalue() == want, path
        assert counters.to_dict() == want_counters.to_dict(), path
        assert want.count("\n") > 3
    nginx, tls13 = str(CAPTURES / "nginx.pcap"), str(CAPTURES / "openssl-tls13.pcap")
    out = io.StringIO()
    analyze_captures([nginx, tls13], lambda v: None, jobs=2,
                     split=parallel.Split(line_writer("jsonl"), None, out))
    assert out.getvalue() == _one_process_lines(nginx, "jsonl")[0] + _one_process_lines(
        tls13, "jsonl")[0]
    spool = str(tmp_path / "part.spool")
    assert parallel.analyze_part(nginx, Limits(), 0, 2, spool, line_writer("jsonl"),
                                 aggregate=False)[1] is None
    assert parallel.analyze_part(nginx, Limits(), 0, 2, spool, line_writer("jsonl"))[1] is not None
    assert fanout.LineKeeper(line_writer("jsonl"), None, nginx, False).agg is None
    assert fanout.LineKeeper(line_writer("jsonl"), None, nginx).agg is not None


def test_jsonl_lines_are_the_same_whether_or_not_the_run_aggregates():
    """--fail-under makes a jsonl run aggregate; the lines it writes are the same."""
    capture = str(CAPTURES / "nginx.pcap")
    for jobs in ("1", "2"):
        plain = run_tlssniff("analyze", capture, "-f", "jsonl", "--jobs", jobs)
        judged = run_tlssniff("analyze", capture, "-f", "jsonl", "--jobs", jobs,
                              "--fail-under", "0%")
        assert plain.returncode == judged.returncode == 0, (plain.stderr, judged.stderr)
        assert plain.stdout == judged.stdout and plain.stdout.count("\n") > 3
