"""TLS after a preamble (PROXY protocol, HTTP CONNECT, SOCKS, RDP, banners, client prefixes) and
TCP Fast Open: real captures made with haproxy, nginx, tinyproxy, danted, curl and Python ssl
(scripts/make_preamble_captures.py), their truth from the clients' own view; the parser's
bounds and refusals on hand-made bytes."""

from __future__ import annotations

import ipaddress
import json
import struct
from pathlib import Path

import dpkt
import pytest

from tests.conftest import CAPTURES, analyze_jsonl, assert_verdicts, run_tlssniff
from tlssniff import preamble as pa

PREAMBLE = CAPTURES / "preamble"
TRUTHS = sorted(PREAMBLE.glob("*.truth.jsonl"))
CH = bytes.fromhex("160301002f0100002b0303") + b"\x00" * 40  # a ClientHello's first bytes
SH = bytes.fromhex("160303003a0200003603") + b"\x00" * 40


def _truth(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_kind_has_a_capture():
    kinds = {t.get("preamble") for p in TRUTHS for t in _truth(p)}
    assert {"proxy-v1", "proxy-v2", "http-connect", "socks5", "socks4", "banner", "prefix"} <= kinds
    assert {t.get("tfo") for t in _truth(PREAMBLE / "tfo.truth.jsonl")} == {
        "cookie", "accepted", "refused"}


@pytest.mark.parametrize("truth", TRUTHS, ids=lambda p: p.name.removesuffix(".truth.jsonl"))
def test_capture_matches_what_the_clients_reported(truth: Path):
    assert_verdicts(analyze_jsonl(truth.with_name(truth.name.replace(".truth.jsonl", ".pcap"))),
                    _truth(truth))


def test_proxy_protocol_names_the_balancers_client():
    """Each backend connection's proxied_client is the client haproxy accepted (the front
    connection of the same run), for v1 and v2 alike."""
    records = analyze_jsonl(PREAMBLE / "proxy-protocol.pcap")
    fronts = sorted(r["client"] for r in records if r["preamble"] is None)
    proxied = sorted(r["proxied_client"] for r in records if r["preamble"] in ("proxy-v1", "proxy-v2"))
    assert len(fronts) == 10 and proxied == fronts
    assert sum(c.startswith("[::1]:") for c in proxied) == 2  # TCP6 and AF_INET6 headers


def test_refused_socks4a_is_counted_not_reported():
    """danted refuses SOCKS 4A (reply 91): that connection never reaches TLS."""
    doc = json.loads(run_tlssniff("analyze", "-f", "json", str(PREAMBLE / "socks.pcap")).stdout)
    c = doc["counters"]
    assert (c["tcp_connections"], c["tls_connections"], c["not_tls_connections"]) == (7, 6, 1)


def test_refused_connect_is_counted_not_reported():
    """tinyproxy answers a CONNECT to a port it does not allow with 403: not TLS."""
    doc = json.loads(run_tlssniff("analyze", "-f", "json", str(PREAMBLE / "http-connect.pcap")).stdout)
    c = doc["counters"]
    assert (c["tcp_connections"], c["tls_connections"], c["not_tls_connections"]) == (5, 4, 1)


def _tfo_syns(pcap: Path) -> list[tuple[int, bool]]:
    """(SYN payload length, SYN-ACK acknowledges it) of each connection, from the raw capture."""
    syns: dict[tuple, tuple[int, int]] = {}
    acks: dict[tuple, int] = {}
    with open(pcap, "rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            if not tcp.flags & dpkt.tcp.TH_SYN:
                continue
            if tcp.flags & dpkt.tcp.TH_ACK:
                acks.setdefault((tcp.dport, tcp.sport), tcp.ack)
            else:
                syns.setdefault((tcp.sport, tcp.dport), (tcp.seq, len(tcp.data)))
    return [(n, acks[k] == (seq + 1 + n) & 0xFFFFFFFF) for k, (seq, n) in syns.items()]


def test_tfo_capture_has_syn_data_accepted_and_refused():
    """The capture itself holds what the TFO truth says: SYN data acknowledged by one SYN-ACK,
    not by another (then sent again: read once)."""
    shapes = sorted(_tfo_syns(PREAMBLE / "tfo.pcap"))
    assert shapes[0] == (0, True)  # the cookie request
    assert [ok for n, ok in shapes[1:]] == [False, True] or [ok for n, ok in shapes[1:]] == [True, False]
    assert all(n > 100 for n, _ in shapes[1:])  # a ClientHello rides in each


# -- the parser ----------------------------------------------------------------------------


def _feed(kind: str, exchange: list[tuple[bool, bytes]]) -> tuple[int, pa.Preamble]:
    p = pa.Preamble(kind)
    result = pa.WAIT
    for from_client, data in exchange:
        result = p.feed(from_client, data)
        if result != pa.WAIT:
            break
    return result, p


@pytest.mark.parametrize("header, client", [
    (b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n", "192.0.2.7:51234"),
    (b"PROXY TCP6 2001:DB8:0:0::7 2001:db8::1 51234 443\r\n", "[2001:db8::7]:51234"),
    (b"PROXY UNKNOWN\r\n", None),
])
def test_proxy_v1(header, client):
    assert pa.client_hint(header) == "proxy-v1"
    result, p = _feed("proxy-v1", [(True, header[:9]), (True, header[9:] + CH)])
    assert result == pa.UPGRADED and p.tls_bytes == CH and p.proxied_client == client
    assert p.server_tls(SH) == SH


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 192.0.2.7\x1b[31m 198.51.100.1 1 443\r\n",  # not an address: never copied out
    b"PROXY TCP4 2001:db8::7 198.51.100.1 1 443\r\n",  # a v6 address under TCP4
    b"PROXY TCP4 192.0.2.7 198.51.100.1 99999 443\r\n",
    b"PROXY " + b"x" * 120,
])
def test_proxy_v1_malformed_is_not_tls(header):
    assert _feed("proxy-v1", [(True, header + CH)])[0] == pa.GIVE_UP


def _v2(command: int, family: int, addresses: bytes, tlvs: bytes = b"") -> bytes:
    body = addresses + tlvs
    return pa.PROXY_V2_SIGNATURE + bytes([0x20 | command, family << 4 | 1]) + struct.pack(
        "!H", len(body)) + body


def test_proxy_v2_ipv6_with_tlvs_and_local():
    src = ipaddress.IPv6Address("2001:db8::42").packed
    dst = ipaddress.IPv6Address("2001:db8::1").packed
    tlvs = b"\x01\x00\x02h2" + b"\x20\x00\x05\x01\x00\x00\x00\x00"  # ALPN, SSL
    header = _v2(1, 2, src + dst + struct.pack("!HH", 40000, 443), tlvs)
    result, p = _feed("proxy-v2", [(True, header[:5]), (True, header[5:20]), (True, header[20:] + CH)])
    assert result == pa.UPGRADED and p.proxied_client == "[2001:db8::42]:40000"
    local = _v2(0, 0, b"")
    result, p = _feed("proxy-v2", [(True, local + CH)])
    assert result == pa.UPGRADED and p.proxied_client is None


def test_http_connect_refused_by_the_proxy_is_not_tls():
    req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    result, _ = _feed("http-connect", [(True, req), (False, b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")])
    assert result == pa.GIVE_UP
    result, p = _feed("http-connect", [(True, req), (False, b"HTTP/1.1 200 OK\r\nVia: x\r\n\r\n"), (True, CH)])
    assert result == pa.UPGRADED and p.server_tls(SH) == SH


def test_http_connect_response_after_the_client_hello_is_skipped():
    """Capture order may put the proxy's 200 after the ClientHello (a retransmission): the
    server's TLS still starts after its own preamble."""
    req = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"
    result, p = _feed("http-connect", [(True, req + CH)])
    assert result == pa.UPGRADED
    assert p.server_tls(b"HTTP/1.1 200 Connection established\r\n") == b""
    assert p.server_tls(b"\r\n" + SH) == SH


def test_socks5_with_username_password_and_a_refusal():
    greeting, auth = b"\x05\x02\x00\x02", b"\x01\x04user\x04pass"
    request = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
    reply = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x10\x00"
    result, p = _feed("socks5", [(True, greeting), (False, b"\x05\x02"), (True, auth),
                                 (False, b"\x01\x00"), (True, request), (False, reply), (True, CH)])
    assert result == pa.UPGRADED and p.protocol == "socks5"
    assert p.server_tls(SH) == SH
    refused = b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00"  # connection refused
    result, _ = _feed("socks5", [(True, b"\x05\x01\x00"), (False, b"\x05\x00"), (True, request),
                                 (False, refused)])
    assert result == pa.GIVE_UP


def test_socks4a_names_itself():
    req = b"\x04\x01\x01\xbb\x00\x00\x00\x01user\x00example.com\x00"
    result, p = _feed("socks4", [(True, req), (False, b"\x00\x5a" + b"\x00" * 6), (True, CH)])
    assert result == pa.UPGRADED and p.protocol == "socks4a"
    assert _feed("socks4", [(True, req), (False, b"\x00\x5b" + b"\x00" * 6)])[0] == pa.GIVE_UP


def test_rdp_x224_then_tls():
    cr = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00"
    cc = b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x00\x08\x00\x01\x00\x00\x00"
    assert pa.client_hint(cr) == "rdp"
    result, p = _feed("rdp", [(True, cr), (False, cc), (True, CH)])
    assert result == pa.UPGRADED and p.server_tls(SH) == SH


def test_upgrade_to_something_else_than_tls_is_not_tls():
    cr = b"\x03\x00\x00\x0b\x06\xe0\x00\x00\x00\x00\x00"
    assert _feed("rdp", [(True, cr), (True, b"\x03\x00\x01\x00" + b"\x02" * 20)])[0] == pa.GIVE_UP


@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.2\r\n",
    b"\x00" * pa.SCAN_BYTES,
])
def test_plain_protocols_are_decided_on_their_first_segment(first):
    assert pa.client_hint(first) is None


def test_prefix_bounds():
    assert pa.client_hint(b"hi\n" + CH) == "prefix"
    result, p = _feed("prefix", [(True, b"x" * (pa.SCAN_BYTES - 7) + CH)])
    assert result == pa.UPGRADED and p.tls_bytes == CH
    assert _feed("prefix", [(True, b"x" * pa.SCAN_BYTES), (True, CH)])[0] == pa.GIVE_UP
    # the client's bytes answered by the server: a plaintext protocol, no ClientHello after it
    assert _feed("prefix", [(True, b"\x01\x02hello"), (False, b"\x01ok"), (True, CH)])[0] == pa.GIVE_UP


def test_banner_server_tls_found_after_the_rest_of_the_banner():
    result, p = _feed("banner", [(False, b"hello, "), (True, CH)])
    assert result == pa.UPGRADED
    assert p.server_tls(b"this is a banner\r\n" + SH[:4]) == b""
    assert p.server_tls(SH[4:]) == SH
    assert _feed("banner", [(False, b"hello\r\n"), (True, b"HELO me\r\n")])[0] == pa.GIVE_UP


def test_a_server_that_answers_tls_with_text_after_a_banner_is_malformed_not_skipped():
    result, p = _feed("banner", [(False, b"hello\r\n"), (True, CH)])
    out = p.server_tls(b"E" * (pa.SCAN_BYTES + 1))
    assert result == pa.UPGRADED and out == b"E" * (pa.SCAN_BYTES + 1) and p.synced


def test_buffers_are_bounded():
    p = pa.Preamble("http-connect")
    assert p.feed(True, b"CONNECT a:1 HTTP/1.1\r\n" + b"X: y\r\n" * 2000) == pa.GIVE_UP
    p = pa.Preamble("socks5")
    assert p.feed(False, b"\x05\x00" * (pa.MAX_HELD // 2 + 1)) == pa.GIVE_UP


def test_proxied_client_in_csv_and_ecs():
    pcap = str(PREAMBLE / "proxy-protocol.pcap")
    rows = run_tlssniff("analyze", "-f", "csv", pcap).stdout.splitlines()
    header = rows[0].split(",")
    assert header[-2:] == ["preamble", "proxied_client"]
    backends = [r.split(",") for r in rows[1:] if ",proxy-v" in r]
    assert len(backends) == 10 and all(r[-1].startswith(("127.0.0.1:", "[::1]:")) for r in backends)
    docs = [json.loads(line) for line in run_tlssniff("analyze", "-f", "ecs", pcap).stdout.splitlines()]
    proxied = [d for d in docs if "forwarded_ip" in d["network"]]
    assert len(proxied) == 10
    assert all(d["network"]["forwarded_ip"] in ("127.0.0.1", "::1") and d["tlssniff"]["preamble"] in (
        "proxy-v1", "proxy-v2") for d in proxied)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as hs
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None

if given is not None:
    _KINDS = ["proxy-v1", "proxy-v2", "http-connect", "socks4", "socks5", "rdp", "banner", "prefix"]

    @settings(max_examples=300, deadline=None)
    @given(kind=hs.sampled_from(_KINDS),
           chunks=hs.lists(hs.tuples(hs.booleans(), hs.binary(max_size=300)), max_size=12))
    def test_any_bytes_any_split_end_in_one_of_the_three_outcomes(kind, chunks):
        """The parse contract on hostile bytes: WAIT, UPGRADED or GIVE_UP, never an exception;
        memory bounded; a proxied_client is always an address tlssniff formatted itself."""
        p = pa.Preamble(kind)
        for from_client, data in chunks:
            if p.upgraded:
                p.server_tls(data)
                continue
            r = p.feed(from_client, data)
            assert r in (pa.WAIT, pa.UPGRADED, pa.GIVE_UP)
            assert p.held() <= 2 * pa.MAX_HELD + 300
            if r == pa.GIVE_UP:
                break
        if p.proxied_client is not None:
            host, _, port = p.proxied_client.rpartition(":")
            ipaddress.ip_address(host.strip("[]"))
            assert 0 <= int(port) <= 65535
