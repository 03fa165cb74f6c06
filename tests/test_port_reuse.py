"""A client that reuses its port: each connection on the same 4-tuple gets its own verdict."""

from __future__ import annotations

import pytest

from tests.conftest import analyze_jsonl
from tlssniff.testing import handshakes as hs
from tlssniff.testing.pcapwriter import Endpoint, tcp_frames, write_pcap


@pytest.mark.parametrize("client_ip, server_ip", [("10.1.0.5", "10.2.0.1"), ("fd00::5", "fd00::1")])
def test_reused_client_port_is_a_new_connection(tmp_path, client_ip, server_ip):
    server = hs.server_context()
    first = hs.run_scenario("tls13_full", server, sni="reuse.example")
    second = hs.run_scenario("tls13_psk_resume", server, session=first.session, sni="reuse.example")
    client, srv = Endpoint(client_ip, 40000), Endpoint(server_ip, 443)
    conversations = [
        tcp_frames(first.transcript.chunks, client, srv, start=1_700_000_000.0),
        tcp_frames(second.transcript.chunks, client, srv, start=1_700_000_005.0),
    ]
    path = tmp_path / "reuse.pcap"
    write_pcap(path, conversations)
    records = analyze_jsonl(path)
    assert [(r["client"], r["handshake"], r["offered"]) for r in records] == [
        (str(client), "full", "none"),
        (str(client), "psk", "psk"),
    ]
