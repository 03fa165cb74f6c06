"""Hostile input and bounded memory (issue 7): malformed TLS is counted and skipped, damaged
capture files are analyzed as far as they go, limits evict and count, and flipped bytes in some
packets leave every other connection's verdict alone."""

from __future__ import annotations

import gzip
import json
import random
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import CAPTURES, run_tlssniff
from tlssniff.analysis.aggregate import Aggregator
from tlssniff.engine.pipeline import Analyzer, analyze_paths
from tlssniff.capture.decode import decode_frame, format_endpoint
from tlssniff.capture.files import open_capture
from tlssniff.flow.reassembly import MAX_SEGMENTS, StreamReassembler
from tlssniff.flow.table import PENDING_COST, FlowTable, Limits
from tlssniff.output.table import print_report
from tlssniff.testing.pcapwriter import Endpoint, PcapWriter, TcpOptions, tcp_frames, write_pcap

# -- helpers -----------------------------------------------------------------------------------


def _hellos() -> tuple[bytes, bytes]:
    """A real ClientHello record and the server's first flight, from captures/openssl-tls12.pcap."""
    client = server = None
    with open_capture(CAPTURES / "openssl-tls12.pcap") as cap:
        for _ts, lt, f in cap.frames():
            d = decode_frame(lt, f)
            if not d or d[0] != 6 or not d[8]:
                continue
            p = d[8]
            if client is None and p[:1] == b"\x16" and p[5] == 1:
                client = p
            elif client is not None and server is None and p[:1] == b"\x16" and p[5] == 2:
                server = p
                break
    assert client and server
    return client, server


CH, SH = _hellos()


def _ch_body() -> bytearray:
    return bytearray(CH[9 : 5 + ((CH[3] << 8) | CH[4])])


def _ch_record(body: bytes, declared: int | None = None) -> bytes:
    n = len(body) if declared is None else declared
    hs = b"\x01" + n.to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def _extensions_offset(body: bytes) -> int:
    p = 34
    p += 1 + body[p]
    p += 2 + ((body[p] << 8) | body[p + 1])
    p += 1 + body[p]
    return p


def _run(tmp_path: Path, conversations: list[list[tuple[str, bytes]]],
         limits: Limits | None = None) -> tuple[list, dict]:
    """Each conversation on its own client port; returns (verdicts, counters)."""
    rng = random.Random(7)
    convs = []
    for i, chunks in enumerate(conversations):
        convs.append(tcp_frames(chunks, Endpoint("10.0.0.1", 40000 + i),
                                Endpoint("10.0.0.2", 443), start=1_700_000_000.0 + i, rng=rng))
    path = tmp_path / "cap.pcap"
    write_pcap(path, convs)
    verdicts: list = []
    analyzer = analyze_paths([str(path)], verdicts.append, limits)
    return verdicts, analyzer.counters.to_dict()


GOOD = [("c", CH), ("s", SH)]


# -- malformed TLS: counted and skipped, never fatal ------------------------------------------


def test_good_baseline(tmp_path: Path) -> None:
    verdicts, c = _run(tmp_path, [GOOD])
    assert len(verdicts) == 1 and verdicts[0].note is None, verdicts
    assert c["malformed_tls"] == c["oversized_tls"] == 0


def _bad_and_good(tmp_path: Path, bad: list[tuple[str, bytes]]):
    verdicts, c = _run(tmp_path, [bad, GOOD])
    by_port = {v.client.rsplit(":", 1)[1]: v for v in verdicts}
    assert by_port["40001"].note is None, "the good connection after the bad one is analyzed"
    return by_port.get("40000"), c


def test_lengths_past_the_end(tmp_path: Path) -> None:
    body = _ch_body()
    body[34] = 0xFF  # session id length runs past the end of the message
    v, c = _bad_and_good(tmp_path, [("c", _ch_record(bytes(body))), ("s", SH)])
    assert c["malformed_tls"] == 1 and v.note.value == "malformed"


def test_record_length_past_the_end_of_the_connection(tmp_path: Path) -> None:
    rec = CH[:3] + b"\x40\x00" + CH[5:]  # record declares 16 KB, the connection ends before
    v, c = _bad_and_good(tmp_path, [("c", rec)])
    assert v is not None and v.handshake.value == "unknown"
    assert c["tls_connections"] == 2


def test_16mb_declared_handshake(tmp_path: Path) -> None:
    rec = b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff\x03\x03" + bytes(16384 - 6)
    more = (b"\x16\x03\x01\x40\x00" + bytes(16384)) * 4
    v, c = _bad_and_good(tmp_path, [("c", rec + more)])
    assert c["oversized_tls"] == 1 and v.note.value == "oversized"


def test_zero_length_records(tmp_path: Path) -> None:
    # A zero-length handshake record from the server after the ClientHello: malformed.
    v, c = _bad_and_good(tmp_path, [("c", CH), ("s", b"\x16\x03\x03\x00\x00" + SH)])
    assert c["malformed_tls"] == 1 and v.note.value == "malformed"
    # A zero-length record first: not a ClientHello, so not TLS (counted, no verdict).
    v, c = _bad_and_good(tmp_path, [("c", b"\x16\x03\x01\x00\x00" + CH), ("s", SH)])
    assert v is None and c["not_tls_connections"] == 1


def test_zero_length_application_data_is_fine(tmp_path: Path) -> None:
    v, c = _bad_and_good(tmp_path, [("c", CH), ("s", SH), ("c", b"\x17\x03\x03\x00\x00")])
    assert v.note is None and c["malformed_tls"] == 0


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x05\x00\x03\xff\xff\xff",  # SNI whose inner lengths run past its end
    b"\x00\x2b\x00\x03\x05\x03\x04",  # supported_versions with a list length past its end
    b"\xfa\xfa\xff\xff",  # an extension declaring 65535 bytes
    b"\x00",  # one stray byte
])
def test_garbage_extensions(tmp_path: Path, garbage: bytes) -> None:
    body = _ch_body()
    p = _extensions_offset(body)
    ext = body[p + 2 :] + garbage
    body = body[:p] + len(ext).to_bytes(2, "big") + ext
    v, c = _bad_and_good(tmp_path, [("c", _ch_record(bytes(body))), ("s", SH)])
    assert c["malformed_tls"] == 1 and v.note.value == "malformed"


def test_unknown_extension_is_not_malformed(tmp_path: Path) -> None:
    body = _ch_body()
    p = _extensions_offset(body)
    ext = body[p + 2 :] + b"\xfe\xed\x00\x04\x01\x02\x03\x04"
    body = body[:p] + len(ext).to_bytes(2, "big") + ext
    v, c = _bad_and_good(tmp_path, [("c", _ch_record(bytes(body))), ("s", SH)])
    assert c["malformed_tls"] == 0 and v.note is None


def _sslv2_hello(specs: bytes) -> bytes:
    challenge = bytes(range(16))
    body = (b"\x01\x03\x01" + len(specs).to_bytes(2, "big") + b"\x00\x00"
            + len(challenge).to_bytes(2, "big") + specs + challenge)
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def test_sslv2_style_hellos(tmp_path: Path) -> None:
    ok = _sslv2_hello(b"\x00\x00\x2f\x00\x00\x35")
    v, c = _bad_and_good(tmp_path, [("c", ok), ("s", SH)])
    assert v is not None and c["malformed_tls"] == 0
    bad = _sslv2_hello(b"\x00\x00\x2f\x00")  # cipher specs not a multiple of 3 bytes
    v, c = _bad_and_good(tmp_path, [("c", bad), ("s", SH)])
    assert c["malformed_tls"] == 1 and v.note.value == "malformed"


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    b"\x00" * 600,
    bytes(random.Random(3).randrange(256) for _ in range(3000)),
    b"\x16\x03",  # two bytes that start like TLS, then nothing
])
def test_non_tls_bytes_on_443(tmp_path: Path, payload: bytes) -> None:
    v, c = _bad_and_good(tmp_path, [("c", payload), ("s", b"HTTP/1.1 400 Bad Request\r\n\r\n")])
    assert c["tcp_connections"] == 2
    assert c["tls_connections"] + c["not_tls_connections"] >= 1


# -- damaged capture files: analyzed as far as they go, warned with the byte offset ------------


def _clean_records(path: Path) -> list[dict]:
    proc = run_tlssniff("analyze", str(path), "-f", "jsonl", "--no-progress")
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("name,kind", [
    ("openssl-tls12.pcap", "pcap"),
    ("demo.pcapng", "pcapng"),
    ("openssl-tls13.pcap", "gzip"),
])
def test_truncated_capture_warns_with_offset(tmp_path: Path, name: str, kind: str) -> None:
    raw = (CAPTURES / name).read_bytes()
    clean = _clean_records(CAPTURES / name)
    cut = len(raw) * 2 // 3 + 7  # mid-record, almost surely
    damaged = tmp_path / ("cut." + ("pcap.gz" if kind == "gzip" else kind))
    damaged.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) * 2 // 3]
                        if kind == "gzip" else raw[:cut])
    proc = run_tlssniff("analyze", str(damaged), "-f", "jsonl", "--no-progress")
    assert "byte offset" in proc.stderr or "gzip" in proc.stderr, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert 0 < len(got) <= len(clean)
    clean_by = {(r["client"], r["server"], r["ts"]): r for r in clean}
    finished = [r for r in got if r.get("note") is None]
    assert finished, "connections wholly before the cut keep their verdicts"
    for r in finished:
        want = clean_by[(r["client"], r["server"], r["ts"])]
        assert (r["handshake"], r["offered"]) == (want["handshake"], want["offered"])


def test_corrupt_record_stops_with_offset_and_keeps_what_came_before(tmp_path: Path) -> None:
    raw = bytearray((CAPTURES / "openssl-tls12.pcap").read_bytes())
    # Walk to the 40th record and give it an impossible captured length.
    off, n = 24, 0
    while n < 40:
        caplen = struct.unpack_from("<I", raw, off + 8)[0]
        off += 16 + caplen
        n += 1
    struct.pack_into("<I", raw, off + 8, 0x7FFFFFF0)
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(raw))
    proc = run_tlssniff("analyze", str(path), "-f", "jsonl", "--no-progress", check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"byte offset {off}" in proc.stderr, proc.stderr
    assert proc.stdout.strip(), "what was read before the damage is reported"


# -- limits: bounded, evicting in O(1), and counted -------------------------------------------


class _Partial:
    """A stand-in app that never decides (a connection stuck mid-handshake)."""

    __slots__ = ("done", "buf")

    def __init__(self, flow) -> None:
        self.done = False
        self.buf = b""

    def data(self, from_client, data, frame, ts=0.0) -> None:
        self.buf += data

    def finish(self, reason) -> None:
        self.done = True

    def held(self) -> int:
        return len(self.buf)


def _syn_data(table: FlowTable, i: int, ts: float, payload: bytes = b"x" * 100) -> None:
    src = bytes([10, (i >> 16) & 255, (i >> 8) & 255, i & 255])
    dst = bytes([192, 0, 2, 1])
    key = src + dst + struct.pack("!HH", 1024 + i % 60000, 443)
    table.segment(table.flows.get(key), key, ts, (6, src, dst, 1024 + i % 60000, 443, 1000, 0, 2,
                                                  b""), i)
    table.segment(table.flows.get(key), key, ts, (6, src, dst, 1024 + i % 60000, 443, 1001, 0,
                                                  0x18, payload), i)


def test_flow_limit_evicts_oldest_and_counts() -> None:
    ended = []
    table = FlowTable(_Partial, ended.append, Limits(max_flows=1000))
    for i in range(20_000):
        _syn_data(table, i, 1.0 + i * 1e-4)
        assert table.count <= 1000
    assert table.counters.evicted == 19_000 and len(ended) == 19_000
    assert len(table.flows) == 2000
    # The oldest went first: the survivors are the last thousand.
    assert {f.client_ip[3] + 256 * f.client_ip[2] for f in table.flows.values()} == {
        i & 0xFFFF for i in range(19_000, 20_000)}
    # Stale queue entries stay bounded.
    assert len(table._pending_q) + len(table._done_q) <= 2 * table.count + 2048


def test_recently_active_flows_get_a_second_chance() -> None:
    table = FlowTable(_Partial, lambda f: None, Limits(max_flows=100))
    for i in range(100):
        _syn_data(table, i, 1.0)
    keep = table.flows[bytes([10, 0, 0, 0, 192, 0, 2, 1]) + struct.pack("!HH", 1024, 443)]
    keep.last = 2.0  # the fast path saw a packet of the oldest flow
    for i in range(100, 150):
        _syn_data(table, i, 3.0)
    assert table.flows.get(keep.ckey) is keep


def test_pending_memory_budget_evicts_and_counts() -> None:
    budget = 200 * (PENDING_COST + 1000)
    table = FlowTable(_Partial, lambda f: None,
                      Limits(max_flows=100_000, max_pending_memory=budget))
    for i in range(2000):
        _syn_data(table, i, 1.0, b"y" * 1000)
        assert table.held <= budget
    assert table.counters.evicted_memory == table.counters.evicted > 1700
    assert table.active <= 200


def test_out_of_order_overflow_is_counted(tmp_path: Path) -> None:
    # The first data segment arrives last; everything after it overflows a 4 KB buffer.
    rec = CH + b"\x17\x03\x03\x40\x00" + bytes(16384)
    frames = tcp_frames([("c", rec), ("s", SH)], Endpoint("10.0.0.1", 5000),
                        Endpoint("10.0.0.2", 443), rng=random.Random(1))
    data = [i for i, (_t, f) in enumerate(frames) if len(f) > 200 and f[14 + 20 + 12] >> 4]
    first = frames.pop(data[0])
    frames.insert(data[0] + 12, first)
    path = tmp_path / "ooo.pcap"
    write_pcap(path, [frames])
    verdicts = []
    a = analyze_paths([str(path)], verdicts.append, Limits(max_buffer=4096))
    assert a.counters.buffer_overflows == 1 and a.counters.gaps == 1


def test_reverse_order_tiny_segments_are_fast() -> None:
    r = StreamReassembler(1 << 20)
    r.syn(0)
    n = MAX_SEGMENTS
    t = time.perf_counter()
    for i in range(n, 0, -1):
        r.add(1 + i, b"x")
    out = r.add(1, b"y")
    assert time.perf_counter() - t < 0.5
    assert out == b"y" + b"x" * n and not r.stuck
    # Beyond MAX_SEGMENTS held segments: an overflow, counted as a gap, never a slowdown.
    r2 = StreamReassembler(1 << 20)
    r2.syn(0)
    for i in range(2 * n, 0, -1):
        r2.add(1 + i, b"x")
    assert r2.gap


def test_per_flow_memory_of_a_partial_client_hello() -> None:
    """What one stalled connection costs (the figure behind Limits and docs/robustness.md)."""
    from tlssniff.testing.pcapwriter import FrameBuilder  # noqa: PLC0415

    n = 3000
    part = CH[:200]
    frames = []
    for i in range(n):
        fb = FrameBuilder(Endpoint(f"10.1.{i >> 8}.{i & 255}", 1024 + i),
                          Endpoint("192.0.2.1", 443), rng=random.Random(i))
        frames.append(fb.frame("c", 1000, 0, 0x02))
        frames.append(fb.frame("s", 5000, 1001, 0x12))
        frames.append(fb.frame("c", 1001, 5001, 0x18, part))
    analyzer = Analyzer(lambda v: None)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for k, f in enumerate(frames):
        analyzer.feed_frame(1.0 + k * 1e-6, 1, f, k + 1)
    per_flow = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert analyzer.table.active == n
    overhead = per_flow - len(part)
    assert overhead < PENDING_COST * 1.15, overhead


def test_terminal_summary_shows_what_was_dropped() -> None:
    c = Analyzer(lambda v: None).counters.to_dict()
    c.update(evicted=5, evicted_memory=2, idle_expired=3, gaps=4, buffer_overflows=1,
             malformed_tls=6, oversized_tls=7, malformed_frames=8)
    console = Console(record=True, width=200)
    print_report(console, Aggregator(), c)
    text = console.export_text()
    for needle in ("5 connections evicted", "2 of them", "3 connections expired idle",
                   "4 connections with bytes missing", "1 out-of-order", "6 malformed TLS",
                   "7 oversized", "8 unparsable frames"):
        assert needle in text, (needle, text)


# -- acceptance 3: bytes flipped in 1% of packets leave the other connections alone ------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    from tlssniff.testing.generate import generate  # noqa: PLC0415

    out = tmp_path_factory.mktemp("flip") / "clean.pcap"
    generate(out, out.with_suffix(".truth.jsonl"), 2000, seed=1)
    return out


def _conn_key(d: tuple) -> tuple[str, str]:
    a, b = format_endpoint(d[1], d[3]), format_endpoint(d[2], d[4])
    return (a, b) if a < b else (b, a)


def _verdicts(path: Path) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}

    def on(v) -> None:
        d = v.to_dict() if hasattr(v, "to_dict") else dict(v.__dict__)
        d.pop("capture", None)
        key = (v.client, v.server) if v.client < v.server else (v.server, v.client)
        out.setdefault(key, []).append(d)

    analyze_paths([str(path)], on)
    return out


def test_flipped_bytes_leave_untouched_connections_alone(generated: Path, tmp_path: Path) -> None:
    rng = random.Random(2026)
    flipped = tmp_path / "flipped.pcap"
    touched: set[tuple[str, str]] = set()
    frames = n_flipped = 0
    with open_capture(generated) as cap, open(flipped, "wb") as f:
        w = PcapWriter(f)
        for ts, lt, frame in cap.frames():
            frames += 1
            if rng.random() < 0.01:
                d = decode_frame(lt, frame)
                if d is not None and d[0] == 6 and d[8]:
                    start = len(frame) - len(d[8])
                    b = bytearray(frame)
                    for _ in range(rng.randint(1, 8)):
                        b[start + rng.randrange(len(d[8]))] ^= 1 << rng.randrange(8)
                    frame = bytes(b)
                    touched.add(_conn_key(d))
                    n_flipped += 1
            w.write(ts, frame)
    assert n_flipped > frames * 0.004, (n_flipped, frames)
    clean, dirty = _verdicts(generated), _verdicts(flipped)
    assert len(clean) > 1500
    untouched = [k for k in clean if k not in touched]
    assert len(untouched) > len(clean) * 0.5
    diffs = [(k, clean[k], dirty.get(k)) for k in untouched if clean[k] != dirty.get(k)]
    assert not diffs, diffs[:3]


def test_evicted_partial_client_hello_is_reported_evicted(tmp_path: Path) -> None:
    """A connection evicted before its ClientHello was whole says so (not `malformed`)."""
    convs = []
    for i in range(30):
        convs.append(tcp_frames([("c", CH[: len(CH) // 2])], Endpoint("10.0.0.1", 30000 + i),
                                Endpoint("10.0.0.2", 443), start=1_700_000_000.0 + i,
                                options=TcpOptions(no_fin=True),
                                rng=random.Random(i)))
    path = tmp_path / "partial.pcap"
    write_pcap(path, convs)
    verdicts: list = []
    a = analyze_paths([str(path)], verdicts.append, Limits(max_flows=10))
    notes = [v.note.value for v in verdicts]
    assert a.counters.evicted == 20 and notes.count("evicted") == 20, notes
