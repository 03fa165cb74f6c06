"""The self-check's pairing of the probe's attempts with the passive verdicts of a capture.

Linux reuses a loopback client port in TIME_WAIT (``net.ipv4.tcp_tw_reuse=2``), so one probe can
make two connections on the same client and server ``ip:port``; each attempt must be compared
with its own connection, not with the last one on the pair (CI once saw a TLS 1.2 session-ID
attempt compared with the TLS 1.3 PSK connection that reused its port a second later).
"""

from __future__ import annotations

from types import SimpleNamespace

from tlssniff.probe.client import Outcome
from tlssniff.probe.engine import Attempt
from tlssniff.probe.selfcheck import Capture, check
from tlssniff.testing import handshakes as hs
from tlssniff.testing.pcapwriter import Endpoint, tcp_frames, write_pcap

CLIENT, SERVER = Endpoint("10.1.0.5", 40000), Endpoint("10.2.0.1", 443)
T0 = 1_700_000_000.0


def _attempt(mechanism: str, phase: str, offered: str, started: float, reused: bool) -> Attempt:
    out = Outcome(started=started, client=str(CLIENT), handshake_done=started + 0.01,
                  reused=reused, version="TLSv1.3")
    return Attempt(mechanism=mechanism, phase=phase, target="a", server=str(SERVER), issuer="a",
                   offered=offered, outcome=out)


def _result(attempts: list[Attempt]):
    config = SimpleNamespace(write=None, starttls=None)
    return SimpleNamespace(config=config, attempts=lambda: list(attempts))


def _reuse_capture(tmp_path, gap: float = 1.0):
    server = hs.server_context()
    first = hs.run_scenario("tls13_full", server, sni="reuse.example")
    second = hs.run_scenario("tls13_psk_resume", server, session=first.session, sni="reuse.example")
    path = tmp_path / "reuse.pcap"
    write_pcap(path, [tcp_frames(first.transcript.chunks, CLIENT, SERVER, start=T0),
                      tcp_frames(second.transcript.chunks, CLIENT, SERVER, start=T0 + gap)])
    return path


def _check(tmp_path, attempts):
    pcap = _reuse_capture(tmp_path)
    return check(_result(attempts), Capture("lo", "tcp"), pcap)


def test_each_attempt_meets_its_own_connection_on_a_reused_port(tmp_path):
    full = _attempt("psk", "issue", "none", T0 - 0.0005, reused=False)
    resumed = _attempt("psk", "sequential", "psk", T0 + 0.9, reused=True)
    sc = _check(tmp_path, [resumed, full])  # the order attempts are listed in does not matter
    assert (sc.connections, sc.agree, sc.unseen, sc.disagreements) == (2, 2, 0, [])
    assert (full.wire["handshake"], full.wire["offered"]) == ("full", "none")
    assert (resumed.wire["handshake"], resumed.wire["offered"]) == ("psk", "psk")


def test_a_wrong_client_view_on_a_reused_port_is_still_a_disagreement(tmp_path):
    """The pairing must not hide a real disagreement: the client claims a full handshake on the
    connection the wire shows resumed."""
    full = _attempt("psk", "issue", "none", T0 - 0.0005, reused=False)
    claims_full = _attempt("psk", "sequential", "psk", T0 + 0.9, reused=False)
    sc = _check(tmp_path, [full, claims_full])
    assert sc.agree == 1
    assert [(d["client_view"]["handshake"], d["wire_view"]["handshake"])
            for d in sc.disagreements] == [("full", "psk")]


def test_an_attempt_whose_connection_is_missing_is_unseen_not_the_next_one(tmp_path):
    """Three attempts on the pair, two connections captured: the middle attempt's connection was
    not captured, so it has no verdict rather than borrowing the third's."""
    full = _attempt("psk", "issue", "none", T0 - 0.0005, reused=False)
    lost = _attempt("psk", "sequential", "psk", T0 + 0.5, reused=True)
    resumed = _attempt("psk", "sequential", "psk", T0 + 0.9, reused=True)
    sc = _check(tmp_path, [full, lost, resumed])
    assert (sc.agree, sc.unseen) == (2, 1)
    assert lost.wire is None
    assert [d["why"] for d in sc.disagreements] == ["no verdict on the wire"]
