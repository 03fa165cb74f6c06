"""STARTTLS: the plaintext upgrade recognised on any port, the TLS after it classified like any
TLS connection; real captures made here, every STARTTLS connection of the public captures, and
a mixed capture (TCP TLS, STARTTLS, QUIC) in one per-server table."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import CAPTURES, PUBLIC, REPO, analyze_jsonl, assert_verdicts, run_tlssniff
from tlssniff import starttls as st

CH = bytes.fromhex("160301002f0100002b0303") + b"\x00" * 40  # a ClientHello's first bytes


def _run(hint: str, exchange: list[tuple[bool, bytes]]) -> st.StartTls:
    s = st.StartTls(hint)
    result = st.WAIT
    for from_client, data in exchange:
        result = s.feed(from_client, data)
        if result != st.WAIT:
            break
    assert result == st.UPGRADED, result
    return s


@pytest.mark.parametrize(
    "greeting, client, reply, proto",
    [
        (b"220 mx ESMTP\r\n", b"EHLO me\r\nSTARTTLS\r\n", b"220 go\r\n", "smtp"),
        (b"220 (vsFTPd)\r\n", b"AUTH TLS\r\n", b"234 ok\r\n", "ftp"),
        (b"* OK ready\r\n", b"a1 STARTTLS\r\n", b"a1 OK\r\n", "imap"),
        (b"+OK pop\r\n", b"STLS\r\n", b"+OK\r\n", "pop3"),
        (b":irc.example NOTICE * :hi\r\n", b"STARTTLS\r\n", b":irc 670 :go\r\n", "irc"),
        (b"200 news\r\n", b"STARTTLS\r\n", b"382 go\r\n", "nntp"),
    ],
)
def test_text_protocols(greeting, client, reply, proto):
    hint = st.server_greeting(greeting)
    s = _run(hint, [(False, greeting), (True, client), (False, reply), (True, CH)])
    assert s.protocol == proto and s.tls_bytes == CH


def test_command_split_across_segments_and_tls_in_same_segment():
    s = _run("smtp", [(False, b"220 x\r\n"), (True, b"STAR"), (True, b"TTLS\r"), (False, b"220 ok\r\n"),
                      (True, b"\n" + CH)])
    assert s.protocol == "smtp" and s.tls_bytes == CH


def test_refused_upgrade_then_plaintext_goes_on_and_gives_up():
    s = st.StartTls("smtp")
    assert s.feed(True, b"STARTTLS\r\n") == st.WAIT
    assert s.feed(False, b"454 TLS not available\r\n") == st.WAIT
    assert s.feed(True, b"MAIL FROM:<a@b>\r\n") == st.WAIT
    assert s.upgrade is None
    assert s.feed(True, b"x" * st.MAX_PLAINTEXT) == st.GIVE_UP


def test_binary_protocols():
    pg = bytes.fromhex("0000000804d2162f")
    assert st.client_opening(pg) == "postgresql"
    assert _run("postgresql", [(True, pg), (False, b"S"), (True, CH)]).protocol == "postgresql"
    ldap = b"0\x1d\x02\x01\x01w\x18\x80\x161.3.6.1.4.1.1466.20037"
    assert st.client_opening(ldap) == "ldap"
    assert _run("ldap", [(True, ldap), (False, b"0\x0c\x02\x01\x01x\x07\n\x01\x00\x04\x00\x04\x00"),
                         (True, CH)]).protocol == "ldap"
    greeting = b"j\x00\x00\x00\n5.5.5-MariaDB\x00" + b"\x00" * 90
    assert st.server_greeting(greeting) == "mysql"
    ssl_request = b" \x00\x00\x01\x85\xae?\x00" + b"\x00" * 28
    assert _run("mysql", [(False, greeting), (True, ssl_request), (True, CH)]).protocol == "mysql"
    xmpp = b"<?xml version='1.0'?><stream:stream to='x'>"
    assert st.client_opening(xmpp) == "xmpp"
    assert _run("xmpp", [(True, xmpp), (False, b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                         (True, b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
                         (False, b"<proceed/>"), (True, CH)]).protocol == "xmpp"


def test_other_plaintext_is_not_a_candidate():
    assert st.server_greeting(b"SSH-2.0-OpenSSH_9.6\r\n") is None
    assert st.client_opening(b"GET / HTTP/1.1\r\n") is None
    assert st.client_opening(b"\x00\x00\x00\x08\x04\xd2\x16\x30") is None  # GSSENCRequest


@pytest.mark.parametrize("proto", ["smtp", "imap"])
def test_openssl_starttls_captures(proto):
    truth = [json.loads(x) for x in (CAPTURES / "starttls" / f"{proto}.truth.jsonl").read_text().splitlines()]
    records = analyze_jsonl(CAPTURES / "starttls" / f"{proto}.pcap")
    assert_verdicts(records, truth)
    assert {r["starttls"] for r in records} == {proto}
    assert {r["handshake"] for r in records} >= {"full", "psk", "ticket"}


PUBLIC_TRUTH = json.loads((REPO / "tests" / "data" / "public_truth.json").read_text())
STARTTLS_FILES = sorted(n for n, e in PUBLIC_TRUTH.items() if any("starttls" in t for t in e["tls"]))


def test_public_truth_lists_every_starttls_protocol():
    protos = {t["starttls"] for n in STARTTLS_FILES for t in PUBLIC_TRUTH[n]["tls"] if "starttls" in t}
    assert protos == {"smtp", "imap", "pop3", "ftp", "xmpp", "ldap", "postgresql", "mysql", "irc"}


@pytest.mark.parametrize("name", STARTTLS_FILES)
def test_public_starttls_protocol_recorded(name):
    records = {(r["client"], r["server"]): r for r in analyze_jsonl(PUBLIC / name)}
    for t in PUBLIC_TRUTH[name]["tls"]:
        assert records[(t["client"], t["server"])]["starttls"] == t.get("starttls")


# -- one table for TCP, STARTTLS and QUIC ------------------------------------------------------

MIXED = [CAPTURES / "openssl-tls12.pcap", CAPTURES / "starttls" / "smtp.pcap", CAPTURES / "quic" / "aioquic.pcap"]


@pytest.mark.skipif(shutil.which("mergecap") is None, reason="mergecap (tshark) is not installed")
def test_mixed_capture_one_table_with_correct_rates(tmp_path):
    mixed = tmp_path / "mixed.pcap"
    subprocess.run(["mergecap", "-F", "pcap", "-w", str(mixed), *map(str, MIXED)], check=True)
    truth = []
    for p in MIXED:
        lines = p.with_suffix(".truth.jsonl").read_text().splitlines()
        truth += [json.loads(x) for x in lines]
    assert_verdicts(analyze_jsonl(mixed), truth)
    expected: dict[tuple, dict] = {}
    for t in truth:
        key = (t["server"], t["sni"], t.get("transport", "tcp"))
        e = expected.setdefault(key, {"handshakes": 0, "resumed": 0, "offered": 0, "accepted": 0})
        e["handshakes"] += 1
        e["resumed"] += t["handshake"] not in ("full", "unknown")
        e["offered"] += t["offered"] != "none"
        e["accepted"] += t["offered"] != "none" and t["handshake"] not in ("full", "unknown")
    report = json.loads(run_tlssniff("analyze", str(mixed), "--format", "json").stdout)
    servers = {(s["server"], s["sni"], s["transport"]): s for s in report["servers"]}
    assert set(servers) == set(expected)
    for key, e in expected.items():
        got = servers[key]
        assert {k: got[k] for k in e} == e, key
    assert {s["transport"] for s in servers.values()} == {"tcp", "quic"}
    assert any(s["starttls"] == "smtp" for s in servers.values())
    table = run_tlssniff("analyze", str(mixed)).stdout
    assert " quic" in table and " smtp" in table


def test_one_registry_serves_detector_and_probe():
    """Every protocol is one registry entry: the passive detectors are the entries', the
    probe's --starttls choices and default ports are the entries with a negotiation."""
    from tlssniff.probe import client
    from tlssniff.probe.target import DEFAULT_PORTS

    assert list(st.PROTOCOLS) == ["smtp", "imap", "pop3", "ftp", "nntp", "irc", "xmpp", "ldap",
                                  "postgresql", "mysql"]
    assert st.PROBE_PROTOCOLS == ("smtp", "imap", "pop3", "ftp")
    assert DEFAULT_PORTS == {None: 443, "smtp": 25, "imap": 143, "pop3": 110, "ftp": 21}
    greets = {b"220 mx\r\n": "smtp", b"* OK x\r\n": "imap", b"+OK\r\n": "pop3",
              b"200 news\r\n": "nntp", b":irc NOTICE\r\n": "irc",
              bytes.fromhex("4a0000000a382e30"): "mysql"}
    opens = {bytes.fromhex("0000000804d2162f"): "postgresql", b"0\x1d\x02\x01\x01w": "ldap",
             b"<?xml version='1.0'?>": "xmpp", b"NICK me\r\n": "irc"}
    for data, name in greets.items():
        assert st.server_greeting(data) == name
        assert st.PROTOCOLS[name].greets(data)
    for data, name in opens.items():
        assert st.client_opening(data) == name
    # Detectors are disjoint: no first bytes are claimed by two protocols.
    for data in [*greets, *opens]:
        assert sum(bool(p.greets and p.greets(data)) for p in st.PROTOCOLS.values()) <= 1
        assert sum(bool(p.opens and p.opens(data)) for p in st.PROTOCOLS.values()) <= 1
    with pytest.raises(ValueError):
        client.negotiate_starttls(None, "xmpp", 0.0, "x")  # passive only: no negotiation
