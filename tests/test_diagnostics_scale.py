"""Diagnostics on a fleet: findings and their cost follow the problem, not servers x servers.

An egress capture holds one name behind thousands of addresses. Pairing every refusal with every
holder of a key, or every server of a name with every other, made the findings (and the table
printing them) grow with the square of the servers: 23,000 findings for 3,000 connections, and
the default table on 20,000 connections ran for more than ten minutes. These tests pin the
bounded forms and check the fast algorithms against the brute-force definitions they replace.
"""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tlssniff.analysis import diagnostics as diag
from tlssniff.analysis.diagnostics import Diagnostics
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered
from tlssniff.output.table import FINDINGS_PER_CODE, SERVERS_PER_FINDING, print_findings

NAME = "cdn.example.net"
KEY = "ab" * 16
T0 = 1_700_000_000.0


def _verdict(i: int, server: int, t: float, **fields) -> ConnectionVerdict:
    v = ConnectionVerdict(ts=t, client=f"10.0.{i >> 8 & 255}.{i & 255}:{1024 + i}",
                          server=f"192.0.{server >> 8 & 255}.{server & 255}:443", sni=NAME)
    v.version = "TLSv1.2"
    v.client_hello_ts = v.server_hello_ts = t
    v.handshake_end_ts = t + 0.05
    v.frames = [i * 10 + 1, i * 10 + 3]
    for k, x in fields.items():
        setattr(v, k, x)
    return v


def fleet(holders: int, refusers: int) -> list[ConnectionVerdict]:
    """``holders`` nodes of NAME issuing tickets under KEY, and ``refusers`` nodes of NAME each
    refusing one such ticket a second later (they lack the key)."""
    out = []
    for h in range(holders):
        out.append(_verdict(h, h, T0 + h * 0.001, handshake=Handshake.FULL,
                            issued_ticket=True, issued_ticket_hash=f"{h:016x}",
                            issued_ticket_key_name=KEY, ticket_lifetime=300))
    for r in range(refusers):
        i = holders + r
        out.append(_verdict(i, i, T0 + 1 + r * 0.001, handshake=Handshake.FULL,
                            offered=Offered.TICKET, ticket_hash=f"{r % holders:016x}",
                            ticket_key_name=KEY))
    return out


def findings_of(verdicts) -> list:
    d = Diagnostics()
    for v in verdicts:
        d.add(v)
    return d.findings()


def test_a_key_of_a_few_holders_pairs_every_holder():
    found = [f for f in findings_of(fleet(3, 1)) if f.code == "cross_server_refused"]
    # The refused ticket's own issuer by session, the other two by key name: one pair each.
    assert sorted(f.details["from"] for f in found) == [
        f"192.0.0.{h}:443 {NAME}" for h in range(3)]
    assert all("key_holders" not in f.details for f in found)


def test_a_key_a_fleet_holds_pairs_the_nearest_holder_and_counts_the_others():
    found = [f for f in findings_of(fleet(200, 1)) if f.code == "cross_server_refused"]
    by_key = [f for f in found if "key_holders" in f.details]
    assert len(found) == 2  # its issuer (by session) and one holder of the key (by key name)
    assert len(by_key) == 1 and by_key[0].details["key_holders"] == 200
    assert "199 other servers of the name hold the key" in by_key[0].message


def test_pairs_of_one_name_are_bounded_and_the_rest_counted_exactly(monkeypatch):
    verdicts = fleet(200, 60)
    found = [f for f in findings_of(verdicts) if f.code == "cross_server_refused"]
    pairs = [f for f in found if "pairs" not in f.details]
    rest = [f for f in found if "pairs" in f.details]
    assert len(pairs) == diag.MAX_PAIR_FINDINGS and len(rest) == 1
    # Every refuser gives two pairs (its ticket's issuer, a key holder), one offer each.
    assert rest[0].details["pairs"] == 60 * 2 - diag.MAX_PAIR_FINDINGS
    assert rest[0].details["offers"] == 60 * 2 - diag.MAX_PAIR_FINDINGS
    with monkeypatch.context() as m:
        m.setattr(diag, "MAX_PAIR_FINDINGS", 10**6)
        every = [f for f in findings_of(verdicts) if f.code == "cross_server_refused"]
    assert len(every) == 120 and all(f in every for f in pairs)
    hidden = [f for f in every if f not in pairs]
    assert rest[0].details["refusing_servers"] == len({f.details["to"] for f in hidden})
    assert len(rest[0].servers) == diag.MAX_EVIDENCE
    # And the same set in another order gives the same findings.
    random.Random(5).shuffle(verdicts)
    assert [f.to_dict() for f in findings_of(verdicts) if f.code == "cross_server_refused"] \
        == [f.to_dict() for f in found]


def test_findings_count_follows_the_refusers_not_holders_times_refusers():
    small = findings_of(fleet(50, 40))
    big = findings_of(fleet(2000, 40))
    assert len(big) == len(small)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sets(st.integers(0, 4), min_size=1, max_size=3),
                          st.integers(0, 20), st.integers(0, 6)), max_size=14))
def test_disjoint_at_once_equals_the_pairwise_definition(spec):
    class S:
        def __init__(self, label):
            self.label = label
            self.endpoint = label

    group = [(S(f"s{i}"), names, first, first + span)
             for i, (names, first, span) in enumerate(spec)]
    expected = {}
    for i, (a, na, fa, la) in enumerate(group):
        for b, nb, fb, lb in group[i + 1:]:
            if na & nb or la < fb or lb < fa:
                continue
            expected[a.label] = na
            expected[b.label] = nb
    got = diag._disjoint_at_once(group)
    assert {k: v[1] for k, v in got.items()} == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=20), st.integers(-5, 35))
def test_nearest_equals_the_scan(starts, t):
    # Real Conn objects (the compiled build accepts no stand-in): connection i starts at
    # starts[i], its client port breaking ties.
    s = diag.ServerDiag("10.9.0.1:443", "10.9.0.1:443", None)
    conns = sorted((diag.Conn(diag.diag_record(_verdict(i, 1, float(st_))), s)
                    for i, st_ in enumerate(starts)), key=lambda a: (a.start, a.order()))
    want = min(conns, key=lambda a: (abs(a.start - t), a.order()))
    assert diag._nearest(conns, [a.start for a in conns], float(t)) is want


def test_the_table_shows_a_screen_of_findings_and_counts_the_rest():
    from tlssniff.analysis.findings import Finding, Severity

    many = [Finding("ticket_key_rotation", Severity.INFO, [f"192.0.2.{i}:443"], "rotated")
            for i in range(FINDINGS_PER_CODE + 7)]
    wide = Finding("ticket_keys_differ", Severity.WARNING,
                   [f"198.51.100.{i}:443" for i in range(SERVERS_PER_FINDING + 3)], "differ")
    buf = io.StringIO()
    print_findings(Console(file=buf, width=200, color_system=None), [wide, *many])
    text = buf.getvalue()
    assert text.count("ticket_key_rotation 192.0.2.") == FINDINGS_PER_CODE
    assert "Not shown: 7 more ticket_key_rotation (-f json lists every finding" in text
    assert "and 3 more servers" in text
    assert f"198.51.100.{SERVERS_PER_FINDING - 1}:443" in text
    assert f"198.51.100.{SERVERS_PER_FINDING}:443" not in text


def test_a_server_clients_present_sessions_to_keeps_no_returning_client_records():
    """no_resumption_offered needs the returning clients of servers nobody presents anything
    to; once a server sees an offer they are dropped (on an egress capture they were what
    grew: 52,000 records at 1,000,000 connections), and the finding of a server without
    offers is unchanged."""
    out = []
    for server in (1, 2):
        for i in range(6):  # the same client back six times, given a session id each time
            out.append(_verdict(i % 2, server, T0 + server * 10 + i, handshake=Handshake.FULL,
                                issued_session_id=f"{server:02x}{i:02x}" * 8))
    # Server 2 also sees one offer (a refused ticket): it can no longer lack offers.
    out.append(_verdict(9, 2, T0 + 30, handshake=Handshake.FULL, offered=Offered.TICKET,
                        ticket_hash="ff" * 8))
    d = Diagnostics()
    for v in out:
        d.add(v)
    one, two = (d.servers[f"192.0.0.{n}:443 {NAME}"] for n in (1, 2))
    assert one.clients and len(one.clients) == 2
    assert two.clients is None
    codes = {(f.code, tuple(f.servers)) for f in d.findings()}
    assert ("no_resumption_offered", (f"192.0.0.1:443 {NAME}",)) in codes
    assert not any(c == "no_resumption_offered" and s == (f"192.0.0.2:443 {NAME}",)
                   for c, s in codes)


def test_a_population_that_offered_keeps_no_examples():
    """client_never_resumes shows examples of a population that never offered: one that
    did keeps none, one that never did keeps its earliest (and the finding holds)."""
    out = []
    for i in range(8):
        pop = "t13d_offers" if i % 2 else "t13d_never"
        out.append(_verdict(i, 1, T0 + i, handshake=Handshake.FULL, ja4_base=pop,
                            issued_session_id=f"{i:02x}" * 16))
    out.append(_verdict(1, 1, T0 + 20, handshake=Handshake.SESSION_ID,
                        offered=Offered.SESSION_ID, session_id="01" * 16,
                        ja4_base="t13d_offers"))
    d = Diagnostics()
    for v in out:
        d.add(v)
    pops = d.servers[f"192.0.0.1:443 {NAME}"].populations
    assert pops["t13d_offers"][1] == 1 and pops["t13d_offers"][2] == []
    assert len(pops["t13d_never"][2]) == diag.MAX_EVIDENCE
    never = [f for f in d.findings() if f.code == "client_never_resumes"]
    assert [f.details["population"] for f in never] == ["t13d_never"]
