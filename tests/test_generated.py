"""Generated captures of real TLS connections, checked against their exact ground truth.

The generator (``tlssniff.testing``) runs real handshakes through Python's ``ssl`` (plus
OpenSSL-recorded 0-RTT templates), so every truth entry is what the TLS stacks themselves
reported. Three groups of tests:

- a 10,000-connection capture analyzed by the CLI: counts per verdict and every connection;
- TCP damage from the pcap writer (reordered, retransmitted, overlapping, missing SYN, cut);
- the generator itself: frame counts, tshark reads the file, the truth agrees with tshark's
  dissection of the same bytes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from tests.conftest import analyze_jsonl, assert_verdicts
from tlssniff.testing import handshakes as hs
from tlssniff.testing.generate import generate
from tlssniff.testing.pcapwriter import Endpoint, TcpOptions, tcp_frames, write_pcap

N = 10_000
SEED = 20240521
TUPLE = ("handshake", "offered", "version", "hrr", "early_data")


def read_truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def verdict_counts(records: list[dict]) -> Counter:
    return Counter(tuple(r.get(k) for k in TUPLE) for r in records)


# ------------------------------------------------------------------------------------------
# The big capture


@pytest.fixture(scope="session")
def big(tmp_path_factory):
    """A seeded 10,000-connection capture: ``(pcap, truth, summary)``."""
    folder = tmp_path_factory.mktemp("generated")
    pcap, truth = folder / "big.pcap", folder / "big.truth.jsonl"
    summary = generate(pcap, truth, N, seed=SEED, bulk_bytes=20_000, bulk_share=0.05)
    return pcap, read_truth(truth), summary


@pytest.fixture(scope="session")
def big_analyzed(big) -> list[dict]:
    pcap, _, _ = big
    return analyze_jsonl(pcap)


def test_counts_per_verdict_match_the_truth(big, big_analyzed):
    _, truth, _ = big
    got, want = verdict_counts(big_analyzed), verdict_counts(truth)
    assert len(big_analyzed) == len(truth) == N
    assert got == want, "\n".join(
        f"{key}: got {got.get(key, 0)}, want {want.get(key, 0)}"
        for key in sorted(set(got) | set(want), key=str)
        if got.get(key, 0) != want.get(key, 0)
    )


def test_every_connection_matches_the_truth(big, big_analyzed):
    _, truth, _ = big
    assert_verdicts(big_analyzed, truth)


# ------------------------------------------------------------------------------------------
# The generator itself


def test_capture_holds_every_scenario(big):
    _, truth, summary = big
    scenarios = Counter(t["scenario"] for t in truth)
    expected = set(hs.SCENARIOS) | {t.name for t in hs.load_openssl_templates()}
    assert expected <= set(scenarios), f"missing: {expected - set(scenarios)}"
    tuples = verdict_counts(truth)
    for key in [
        ("session_id", "session_id", "TLSv1.2", False, "none"),
        ("ticket", "ticket", "TLSv1.2", False, "none"),
        ("full", "session_id", "TLSv1.2", False, "none"),
        ("full", "ticket", "TLSv1.2", False, "none"),
        ("psk", "psk", "TLSv1.3", False, "none"),
        ("full", "psk", "TLSv1.3", False, "none"),
        ("psk", "psk", "TLSv1.3", True, "none"),
        ("full", "none", "TLSv1.3", True, "none"),
        ("psk", "psk", "TLSv1.3", False, "offered"),
        ("full", "psk", "TLSv1.3", False, "rejected"),
        ("psk", "psk", "TLSv1.3", True, "rejected"),
    ]:
        assert tuples[key] >= 10, f"{key}: only {tuples[key]}"
    assert summary.connections == N


def test_truth_is_one_entry_per_distinct_connection(big):
    _, truth, _ = big
    keys = {(t["client"], t["server"]) for t in truth}
    assert len(keys) == len(truth) == N
    clients = {t["client"] for t in truth}
    assert len(clients) == N, "client ip:port must be distinct per connection"
    assert any(t["client"].startswith("[") for t in truth), "no IPv6 connection"
    servers = {t["server"] for t in truth}
    assert any(s.endswith(":8443") for s in servers) and any(s.endswith(":443") for s in servers)
    assert len({t["sni"] for t in truth}) > 3


def test_resumptions_follow_a_full_handshake_with_the_same_server(big):
    _, truth, _ = big
    seen_full: set[tuple[str, str | None]] = set()
    for t in truth:  # truth lines are in connection start order
        if t["resumed"] and not t["scenario"].startswith("tls13_0rtt") and "hrr_0rtt" not in \
                t["scenario"]:
            assert (t["server"], t["sni"]) in seen_full, t
        if t["handshake"] == "full":
            seen_full.add((t["server"], t["sni"]))


def test_frame_count_and_time_order(big):
    pcap, _, summary = big
    n, last = 0, 0.0
    with open(pcap, "rb") as f:
        for ts, _buf in dpkt.pcap.Reader(f):
            assert ts >= last
            last = ts
            n += 1
    assert n == summary.frames
    assert pcap.stat().st_size == summary.bytes


def test_connections_overlap_in_time(big):
    """Thousands of connections are open at once (merge by timestamp, not one after another)."""
    pcap, _, _ = big
    first: dict[bytes, float] = {}
    last: dict[bytes, float] = {}
    with open(pcap, "rb") as f:
        for ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            tcp = ip.data
            key = min((ip.src, tcp.sport), (ip.dst, tcp.dport)).__repr__().encode() + \
                max((ip.src, tcp.sport), (ip.dst, tcp.dport)).__repr__().encode()
            first.setdefault(key, ts)
            last[key] = ts
    assert len(first) == N
    events = sorted([(t, 1) for t in first.values()] + [(t, -1) for t in last.values()])
    open_now = peak = 0
    for _, delta in events:
        open_now += delta
        peak = max(peak, open_now)
    assert peak >= 1000, f"at most {peak} connections open at once"


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_every_conversation(big):
    pcap, _, _ = big
    out = subprocess.run(["tshark", "-r", str(pcap), "-q", "-z", "conv,tcp"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    assert sum(1 for line in out.splitlines() if "<->" in line) == N


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_truth_agrees_with_tshark_dissection(tmp_path):
    """A second, independent reading of the bytes: Wireshark's dissector vs the truth."""
    pcap, truth_path = tmp_path / "small.pcap", tmp_path / "small.truth.jsonl"
    generate(pcap, truth_path, 600, seed=5, ipv6_share=0.3)
    truth = {t["client"]: t for t in read_truth(truth_path)}
    fields = ["ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst", "tcp.dstport",
              "tls.handshake.type", "tls.handshake.random", "tls.handshake.extension.type"]
    cmd = ["tshark", "-r", str(pcap), "-Y", "tls.handshake.type == 1 || "
           "tls.handshake.type == 2", "-T", "fields", "-E", "separator=|"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    hello_exts: dict[str, set] = {}
    server_hellos: dict[str, list] = {}
    for line in out.splitlines():
        s4, s6, sport, d4, d6, dport, types, randoms, exts = line.split("|")
        src = f"[{s6}]:{sport}" if s6 else f"{s4}:{sport}"
        dst = f"[{d6}]:{dport}" if d6 else f"{d4}:{dport}"
        types_l = types.split(",")
        ext_types = {int(x) for x in exts.split(",") if x}
        if types_l[0] == "1":
            hello_exts.setdefault(src, set()).update(ext_types)
        elif types_l[0] == "2":
            server_hellos.setdefault(dst, []).append(
                (randoms.split(",")[0], ext_types, set(types_l)))
    assert set(server_hellos) == set(truth)
    for client, t in truth.items():
        shs = server_hellos[client]
        hrr = any(bytes.fromhex(r.replace(":", "")) == hs.HRR_RANDOM for r, _, _ in shs)
        assert hrr == t["hrr"], t
        final_random, final_exts, final_types = shs[-1]
        if t["version"] == "TLSv1.3":
            assert (41 in final_exts) == (t["handshake"] == "psk"), t
        else:  # TLS 1.2: a full handshake's server flight has a Certificate
            assert ("11" in final_types) == (t["handshake"] == "full"), t
        assert (41 in hello_exts[client]) == (t["offered"] == "psk"), t
        assert (42 in hello_exts[client]) == (t["early_data"] != "none"), t


# ------------------------------------------------------------------------------------------
# Scenarios and templates, without the analyzer


@pytest.fixture(scope="module")
def sessions():
    """A server with its members and one session per full-handshake kind."""
    main, peer, hrr = hs.server_context(), hs.server_context(), hs.server_context(hrr=True)
    made = {}
    for kind in ("tls12_full", "tls12_sid_full", "tls13_full", "tls13_hrr_full"):
        ctx = hrr if kind in hs.HRR_SCENARIOS else main
        made[kind] = hs.run_scenario(kind, ctx, sni="www.example.com").session
    return {"main": main, "peer": peer, "hrr": hrr}, made


@pytest.mark.parametrize("kind", sorted(hs.SCENARIOS))
def test_scenario_truth(kind, sessions):
    members, made = sessions
    profile, presents, expect = hs.SCENARIOS[kind]
    session = made[hs.SESSION_SOURCE[kind]] if presents else None
    member = "hrr" if kind in hs.HRR_SCENARIOS else "peer" if presents == "foreign" else "main"
    conn = hs.run_scenario(kind, members[member], session=session, sni="www.example.com",
                           response_bytes=3000)
    t = conn.transcript.truth
    assert t["handshake"] == expect
    assert t["version"] == profile.version
    assert t["hrr"] == (kind in hs.HRR_SCENARIOS)
    assert t["resumed"] == (expect != "full")
    assert t["offered"] == hs.expected_offered(profile, presents is not None)


def test_openssl_templates_are_what_their_truth_says():
    templates = hs.load_openssl_templates()
    assert {t.name for t in templates} >= {"tls13_0rtt_accepted", "tls13_0rtt_psk_refused",
                                           "tls13_hrr_0rtt_rejected"}
    for t in templates:
        tr = hs.Transcript(chunks=t.chunks)
        exts = hs.client_hello_extensions(tr)
        assert (hs.EXT_EARLY_DATA in exts) == (t.truth["early_data"] != "none"), t.name
        assert (hs.EXT_PRE_SHARED_KEY in exts) == (t.truth["offered"] == "psk"), t.name
        assert hs.first_server_hello_is_hrr(tr) == t.truth["hrr"], t.name


# ------------------------------------------------------------------------------------------
# TCP damage: each capture holds a TLS 1.2 ticket resumption and a TLS 1.3 PSK resumption,
# cut into 200-byte segments so that every hello spans several segments.


@pytest.fixture(scope="module")
def resumptions():
    main = hs.server_context()
    s12 = hs.run_scenario("tls12_full", main, sni="api.example.com").session
    s13 = hs.run_scenario("tls13_full", main, sni="www.example.com").session
    c12 = hs.run_scenario("tls12_ticket_resume", main, session=s12, sni="api.example.com",
                          response_bytes=2000)
    c13 = hs.run_scenario("tls13_psk_resume", main, session=s13, sni="www.example.com",
                          response_bytes=2000)
    return [c12.transcript, c13.transcript]


def damaged_capture(path: Path, transcripts, options: TcpOptions, mss: int = 200,
                    truth_extra: dict | None = None) -> list[dict]:
    convs, truth = [], []
    for i, t in enumerate(transcripts):
        client, server = Endpoint(f"192.0.2.{10 + i}", 40000 + i), Endpoint("198.51.100.1", 443)
        convs.append(tcp_frames(t.chunks, client, server, start=1_700_000_000.0 + i, mss=mss,
                                options=options))
        entry = {k: t.truth[k] for k in ("sni", "version", "offered", "handshake", "resumed",
                                         "hrr", "early_data")}
        entry.update(client=str(client), server=str(server), note=None)
        entry.update(truth_extra or {})
        truth.append(entry)
    write_pcap(path, convs)
    return truth


@pytest.mark.parametrize(
    "options",
    [
        TcpOptions(),
        TcpOptions(reorder=0),  # the ClientHello's first two segments swapped
        TcpOptions(reorder=3),
        TcpOptions(retransmit=0),  # the ClientHello's first segment captured twice
        TcpOptions(retransmit=2),
        TcpOptions(overlap=0),  # a retransmission spanning two ClientHello segments
        TcpOptions(overlap=3),
        TcpOptions(omit_syn=True),  # started before the capture, ClientHello still seen
        TcpOptions(no_fin=True),
    ],
    ids=["clean", "reorder-ch", "reorder", "retransmit-ch", "retransmit", "overlap-ch",
         "overlap", "no-syn", "no-fin"],
)
def test_damage_keeps_the_verdict(tmp_path, resumptions, options):
    truth = damaged_capture(tmp_path / "d.pcap", resumptions, options)
    assert_verdicts(analyze_jsonl(tmp_path / "d.pcap"), truth)


def test_cut_before_the_server_answers(tmp_path, resumptions):
    # SYN, SYN/ACK, ACK and the whole ClientHello (default MSS: one segment; the TLS 1.3
    # hello with its PSK needs the 200-byte MSS's several segments, so count them).
    transcripts = resumptions
    convs, truth = [], []
    for i, t in enumerate(transcripts):
        client, server = Endpoint(f"192.0.2.{20 + i}", 41000 + i), Endpoint("198.51.100.2", 443)
        hello_len = len(t.chunks[0][1])
        assert t.chunks[0][0] == "c"
        frames = tcp_frames(t.chunks, client, server, start=1_700_000_100.0 + i,
                            options=TcpOptions(cut_after=3 + -(-hello_len // 1448)))
        convs.append(frames)
        truth.append({"client": str(client), "server": str(server), "sni": t.truth["sni"],
                      "offered": t.truth["offered"], "handshake": "unknown", "resumed": False,
                      "note": "no_server_hello"})
    write_pcap(tmp_path / "cut.pcap", convs)
    assert_verdicts(analyze_jsonl(tmp_path / "cut.pcap"), truth)


def test_writer_options_change_the_frames():
    t = hs.Transcript(chunks=[("c", b"\x16" * 1000), ("s", b"\x16" * 3000), ("c", b"x" * 10)])
    c, s = Endpoint("192.0.2.1", 40000), Endpoint("198.51.100.1", 443)

    def frames(**options):
        return tcp_frames(t.chunks, c, s, mss=500, rng=random.Random(1),
                          options=TcpOptions(**options))

    clean = frames()
    # 3-way + 2 + 6 (+ 2 delayed ACKs) + 1 + final ACK + FIN/FIN/ACK
    assert len(clean) == 3 + 2 + 6 + 2 + 1 + 1 + 3
    assert len(frames(retransmit=0)) == len(clean) + 1
    assert len(frames(overlap=0)) == len(clean) + 1
    assert len(frames(omit_syn=True)) == len(clean) - 3
    assert len(frames(cut_after=5)) == 5
    assert frames(cut_after=5) == clean[:5]
    reordered = frames(reorder=0)
    assert reordered[3][1] == clean[4][1] and reordered[4][1] == clean[3][1]
    times = [ts for ts, _ in reordered]
    assert times == sorted(times)


def _ones_complement(data: bytes) -> int:
    """RFC 1071, the plain way: independent of the writer's modulo shortcut."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for k in range(0, len(data), 2):
        total += (data[k] << 8) | data[k + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def test_writer_checksums_and_payload_roundtrip(tmp_path):
    t = hs.Transcript(chunks=[("c", bytes(range(256)) * 7), ("s", b"y" * 4001)])
    for client, server in [(Endpoint("192.0.2.1", 40000), Endpoint("198.51.100.1", 443)),
                           (Endpoint("2001:db8::1", 40000), Endpoint("2001:db8::2", 8443))]:
        path = tmp_path / "rt.pcap"
        write_pcap(path, [tcp_frames(t.chunks, client, server)])
        streams = {"c": b"", "s": b""}
        with open(path, "rb") as f:
            for _ts, buf in dpkt.pcap.Reader(f):
                ip = dpkt.ethernet.Ethernet(buf).data
                raw_tcp = bytes(ip.data)
                if isinstance(ip, dpkt.ip.IP):
                    assert _ones_complement(buf[14:34]) == 0xFFFF  # IPv4 header checksum
                    pseudo = ip.src + ip.dst + bytes([0, 6]) + len(raw_tcp).to_bytes(2, "big")
                else:
                    pseudo = ip.src + ip.dst + len(raw_tcp).to_bytes(4, "big") + bytes([0, 0, 0, 6])
                assert _ones_complement(pseudo + raw_tcp) == 0xFFFF  # TCP checksum
                tcp = ip.data
                if tcp.data:
                    streams["c" if tcp.dport == server.port else "s"] += tcp.data
        assert streams["c"] == t.bytes_from("c") and streams["s"] == t.bytes_from("s")
