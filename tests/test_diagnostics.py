"""Diagnostics (docs/diagnostics.md): real captures with exact expected findings, and the
precision rules on hand-made verdicts.

Each ``captures/diagnostics/NAME.pcap`` was recorded by ``scripts/make_diagnostic_captures.py``
from real servers (nginx, Apache httpd) and real clients (Python ``ssl``, ``openssl
s_client``); ``NAME.expected.json`` lists the findings tlssniff must give, and no others;
``NAME.truth.jsonl`` what the Python clients themselves reported.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from tests.conftest import CAPTURES, analyze_jsonl, run_tlssniff
from tlssniff.analysis.diagnostics import Diagnostics
from tlssniff.analysis.verdict import ConnectionVerdict, Handshake, Offered

DIAG = CAPTURES / "diagnostics"
EXPECTED = sorted(DIAG.glob("*.expected.json"))
NAMES = [p.name.removesuffix(".expected.json") for p in EXPECTED]


def _expected(name: str) -> dict:
    return json.loads((DIAG / f"{name}.expected.json").read_text())


def _key(f: dict) -> tuple[str, tuple[str, ...]]:
    return f["code"], tuple(f["servers"])


def test_every_scenario_is_shipped():
    assert set(NAMES) >= {
        "cache-timeout", "cluster-separate-keys", "cluster-shared-key", "concurrent-nginx",
        "concurrent-apache", "resumption-disabled", "not-resumable", "clients", "key-rotation",
        "cache-timeout-staggered", "restart-nginx", "vip-separate-keys", "vip-shared-key",
        "haproxy-separate-keys", "haproxy-shared-keys", "cluster-separate-keys-tls13",
        "cluster-shared-key-tls13",
    }
    for name in NAMES:
        size = (DIAG / f"{name}.pcap").stat().st_size
        assert size < 64_000, f"{name}.pcap is {size} bytes: keep the captures small"


@pytest.fixture(scope="module", params=NAMES)
def scenario(request):
    name = request.param
    pcap = DIAG / f"{name}.pcap"
    doc = json.loads(run_tlssniff("analyze", str(pcap), "-f", "json").stdout)
    table = run_tlssniff("analyze", str(pcap)).stdout
    jsonl = analyze_jsonl(pcap)
    return name, _expected(name), doc, table, jsonl


def _matches(want, got) -> bool:
    if isinstance(want, list) and len(want) == 2 and all(isinstance(x, (int, float)) for x in want):
        return got is not None and want[0] <= got <= want[1]  # a bracket of plausible values
    if isinstance(want, int) and isinstance(got, list):
        return len(got) == want
    return want == got


def test_json_findings_are_exactly_the_expected(scenario):
    name, expected, doc, _, _ = scenario
    got = Counter(_key(f) for f in doc["findings"])
    want = Counter(_key(f) for f in expected["findings"])
    assert got == want, f"{name}: findings {sorted(got)}, expected {sorted(want)}"
    by_key = {_key(f): f for f in doc["findings"]}
    for w in expected["findings"]:
        f = by_key[_key(w)]
        for field, value in w.items():
            if field in ("code", "servers"):
                continue
            assert _matches(value, f.get(field)), f"{name} {w['code']}: {field}={f.get(field)!r}, want {value!r}"
        assert f["severity"] in ("error", "warning", "info")
        assert f["message"] and f["evidence"], f"{name} {w['code']}: no message or evidence"


def test_terminal_shows_the_same_findings(scenario):
    name, expected, _, table, _ = scenario
    shown = re.findall(r"(?m)^(ERROR|WARNING|INFO) (\w+) ", table)
    assert Counter(code for _, code in shown) == Counter(f["code"] for f in expected["findings"])
    if not expected["findings"]:
        assert "Findings" not in table


def test_evidence_resolves_in_jsonl(scenario):
    name, _, doc, _, jsonl = scenario
    index = {}
    for rec in jsonl:
        index.setdefault((rec["client"], rec["server"]), []).append(rec)
    for f in doc["findings"]:
        for e in f["evidence"]:
            recs = [r for r in index.get((e["client"], e["server"]), []) if abs(r["ts"] - e["ts"]) < 1e-6]
            assert len(recs) == 1, f"{name} {f['code']}: evidence {e} does not resolve"
            assert e["frames"] == recs[0]["frames"]


def test_concurrency_counts(scenario):
    name, expected, doc, _, _ = scenario
    for server, want in expected.get("concurrency", {}).items():
        got = doc["diagnostics"]["concurrency"][server]
        assert (got["offers"], got["accepted"]) == (want["offers"], want["accepted"]), name


def test_clients_own_reports(scenario):
    """The verdicts agree with what each Python client reported (session_reused, version)."""
    name, _, _, _, jsonl = scenario
    truth = [json.loads(x) for x in (DIAG / f"{name}.truth.jsonl").read_text().splitlines()]
    got = {(r["client"], r["server"]): r for r in jsonl}
    for t in truth:
        r = got[(t["client"], t["server"])]
        for field in ("offered", "handshake", "resumed", "version"):
            assert r[field] == t[field], f"{name} {t['client']}: {field} {r[field]!r} != {t[field]!r}"


def test_breakdowns_by_client_and_ja4():
    doc = json.loads(run_tlssniff("analyze", str(DIAG / "clients.pcap"), "-f", "json").stdout)
    by_ja4 = doc["diagnostics"]["clients"]["by_ja4"]
    rates = sorted((row["handshakes"], row["offered"], row["resumed"]) for row in by_ja4)
    # openssl s_client: 6 connections, never offers; Python: 4 connections, 2 offers, 2 resumed
    assert rates == [(4, 2, 2), (6, 0, 0)]
    assert all(row["ja4"] for row in by_ja4)
    by_addr = doc["diagnostics"]["clients"]["by_address"]
    assert [(r["client"], r["handshakes"]) for r in by_addr] == [("127.0.0.1", 10)]


def test_shipped_captures_raise_no_false_alarm():
    """The earlier captures restart servers (refusals younger than 1 s): not a cache timeout."""
    for pcap in ("openssl-tls12.pcap", "openssl-tls13.pcap", "nginx.pcap"):
        doc = json.loads(run_tlssniff("analyze", str(CAPTURES / pcap), "-f", "json").stdout)
        codes = {f["code"] for f in doc["findings"]}
        assert codes <= {"ticket_key_rotation"}, (pcap, codes)


# -- precision rules on hand-made verdicts -----------------------------------------------------


def _v(ts, client, server="10.0.0.1:443", *, offered="none", handshake="full", sid=None,
       issued_id=None, ticket=None, issued_ticket=None, key=None, issued_key=None, psk=None,
       end=None, version="TLSv1.2", ja4="t12d_pop") -> ConnectionVerdict:
    v = ConnectionVerdict(ts=ts, client=client, server=server, sni="example.test")
    v.version = version
    v.offered = Offered(offered)
    v.handshake = Handshake(handshake)
    v.session_id = sid
    v.issued_session_id = issued_id
    v.ticket_hash, v.ticket_key_name = ticket, key
    v.issued_ticket_hash, v.issued_ticket_key_name = issued_ticket, issued_key
    v.issued_ticket = issued_ticket is not None
    v.psk_identity_hash = psk
    v.client_hello_ts = v.server_hello_ts = ts
    v.handshake_end_ts = end if end is not None else ts + 0.01
    v.ja4 = v.ja4_base = ja4
    v.frames = [1, 2]
    return v


def _codes(verdicts, **kw) -> list[str]:
    d = Diagnostics(**kw)
    for v in verdicts:
        d.add(v)
    return sorted(f.code for f in d.findings())


def _sid(ts, client, sid, accepted):
    return _v(ts, client, offered="session_id", handshake="session_id" if accepted else "full",
              sid=sid)


# Sessions issued at 0, 2.5 and 3.5 s; accepted at ages 1, 1.5 and 2 s, refused at 5 s: the
# refusals follow age, and no single moment explains them (cc, issued before and accepted after
# every moment both refusals allow).
_ISSUED = [_v(0, "1.1.1.1:1", issued_id="aa"), _v(2.5, "1.1.1.2:1", issued_id="bb"),
           _v(3.5, "1.1.1.3:1", issued_id="cc")]
_TIMEOUT = _ISSUED + [_sid(1, "1.1.1.1:2", "aa", True), _sid(4, "1.1.1.2:2", "bb", True),
                      _sid(5, "1.1.1.1:3", "aa", False), _sid(5.5, "1.1.1.3:2", "cc", True),
                      _sid(7.5, "1.1.1.2:3", "bb", False)]


def test_cache_timeout_needs_refusals_older_than_every_acceptance():
    assert _codes(_TIMEOUT) == ["cache_timeout"]
    d = Diagnostics()
    for v in _TIMEOUT:
        d.add(v)
    (f,) = d.findings()
    assert (f.details["accepted_max_age"], f.details["refused_min_age"]) == (2.0, 5.0)
    assert (f.details["accepted"], f.details["refused"]) == (3, 2)
    # An acceptance older than a refusal: age does not explain it (a restart, an eviction).
    interleaved = _ISSUED + [_sid(1, "1.1.1.1:2", "aa", True), _sid(4, "1.1.1.2:2", "bb", True),
                             _sid(5, "1.1.1.1:3", "aa", False),
                             _sid(9.5, "1.1.1.3:2", "cc", True),
                             _sid(7.5, "1.1.1.2:3", "bb", False)]
    assert "cache_timeout" not in _codes(interleaved)
    # Offers of sessions whose issuance is not in the capture prove no age at all.
    unlinked = [_sid(5, "1.1.1.1:2", "dd", True), _sid(50, "1.1.1.2:2", "ee", False)]
    assert "cache_timeout" not in _codes(unlinked)
    # Refusals younger than a second are no timeout (lifetimes are whole seconds).
    fast = _ISSUED[:2] + [_sid(0.2, "1.1.1.1:2", "aa", True), _sid(2.6, "1.1.1.2:2", "bb", True),
                          _sid(0.6, "1.1.1.1:3", "aa", False),
                          _sid(3.0, "1.1.1.2:3", "bb", False)]
    assert "cache_timeout" not in _codes(fast)


def test_one_observation_per_side_is_neither_a_timeout_nor_a_loss():
    """The issue's restart: accepted at 0.6 s, refused at 26 s, tickets announcing 300 s."""
    vs = [_v(0, "1.1.1.1:1", issued_ticket="t1", issued_key="k1"),
          _v(0.6, "1.1.1.1:2", offered="ticket", handshake="ticket", ticket="t1", key="k1"),
          _v(26, "1.1.1.1:3", offered="ticket", ticket="t1", key="k1")]
    for v in vs:
        v.ticket_lifetime = 300 if v.issued_ticket else None
    assert _codes(vs) == []
    # Two observations on each side, all explained by age, but no restart ruled out and no
    # lifetime hint to side with: neither claim is made.
    two = _ISSUED[:2] + [_sid(1, "1.1.1.1:2", "aa", True), _sid(3.5, "1.1.1.2:2", "bb", True),
                         _sid(6, "1.1.1.1:3", "aa", False), _sid(8.5, "1.1.1.2:3", "bb", False)]
    assert _codes(two) == []


def test_sessions_lost_at_one_moment():
    """Sessions issued before a moment are refused after it at ages 2 and 5.3 s, while one
    issued after it is accepted at 3.5 s: a loss (restart, flush), not a timeout."""
    vs = [_v(0, "1.1.1.1:1", issued_id="aa"), _v(0.2, "1.1.1.2:1", issued_id="bb"),
          _sid(0.5, "1.1.1.1:2", "aa", True), _v(1.5, "1.1.1.3:1", issued_id="cc"),
          _sid(2, "1.1.1.1:3", "aa", False), _sid(5, "1.1.1.3:2", "cc", True),
          _sid(5.5, "1.1.1.2:2", "bb", False)]
    d = Diagnostics()
    for v in vs:
        d.add(v)
    (f,) = d.findings()
    assert f.code == "sessions_lost"
    assert (f.details["lost_after"], f.details["lost_before"]) == (0.5, 1.5)
    assert (f.details["refused"], f.details["accepted_after"]) == (2, 1)
    # Without the acceptance after the moment, nothing shows the server resuming again.
    assert _codes(vs[:-2] + vs[-1:]) == []


def test_refusal_after_key_change_is_not_a_timeout():
    vs = [_v(0, "1.1.1.1:1", issued_ticket="t1", issued_key="k1"),
          _v(1, "1.1.1.1:2", offered="ticket", handshake="ticket", ticket="t1", key="k1"),
          _v(5, "1.1.1.2:1", issued_ticket="t2", issued_key="k2"),
          _v(9, "1.1.1.1:3", offered="ticket", ticket="t1", key="k1", issued_ticket="t3",
             issued_key="k2")]
    assert _codes(vs) == ["ticket_key_rotation"]


def test_concurrent_refused_counts_one_session_racing():
    vs = [_v(0, "1.1.1.1:1", version="TLSv1.3")]
    vs += [_v(10 + i * 0.001, f"1.1.1.1:{i + 2}", offered="psk", psk="p1", end=10.5,
              handshake="psk" if i == 0 else "full", version="TLSv1.3") for i in range(5)]
    d = Diagnostics()
    for v in vs:
        d.add(v)
    (f,) = d.findings()
    assert (f.code, f.details["offers"], f.details["accepted"]) == ("concurrent_refused", 5, 1)
    # The same offers one after another: not concurrency (and no other claim either).
    seq = [vs[0]] + [_v(10 + i, f"1.1.1.1:{i + 2}", offered="psk", psk="p1",
                        handshake="psk" if i == 0 else "full", version="TLSv1.3") for i in range(5)]
    assert _codes(seq) == []


def test_cross_server_is_reported_in_each_direction_shown():
    a, b = "10.0.0.1:443", "10.0.0.2:443"
    base = [_v(0, "1.1.1.1:1", a, issued_ticket="ta", issued_key="ka"),
            _v(0.5, "1.1.1.2:1", a, issued_ticket="ta2", issued_key="ka"),
            _v(1, "1.1.1.1:2", b, offered="ticket", ticket="ta", key="ka", issued_ticket="tb",
               issued_key="kb"),
            _v(1.5, "1.1.1.2:2", b, offered="ticket", ticket="ta2", key="ka")]
    # b accepts nothing, but both offers it refused were a's: a -> b is shown, b is not
    # "resumption_disabled" (the issue's missing direction).
    d = Diagnostics()
    for v in base:
        d.add(v)
    (f,) = [f for f in d.findings() if f.code == "cross_server_refused"]
    assert (f.servers, f.details["target_accepts_own"]) == ([f"{a} example.test",
                                                             f"{b} example.test"], False)
    assert "resumption_disabled" not in _codes(base)
    own = base + [_v(2, "1.1.1.1:3", b, offered="ticket", handshake="ticket", ticket="tb", key="kb")]
    d = Diagnostics()
    for v in own:
        d.add(v)
    (f,) = [f for f in d.findings() if f.code == "cross_server_refused"]
    assert f.details["target_accepts_own"] is True
    # b refuses its own sessions too: resumption is off on b, which explains a's refusal.
    off = base + [_v(2 + i, f"1.1.1.1:{3 + i}", b, offered="ticket", ticket="tb", key="kb")
                  for i in range(2)]
    assert _codes(base[:1] + base[2:3] + off[4:]) == ["resumption_disabled"]
    assert _codes(off) == ["resumption_disabled"]


def test_tls13_cross_server_and_several_key_sets():
    """TLS 1.3: PSK key names. Accepted by a, refused by b (same SNI): cross_server_refused;
    one address refusing then accepting one key name: several key sets behind it."""
    a, b = "10.0.0.1:443", "10.0.0.2:443"
    t13 = dict(version="TLSv1.3", offered="psk")
    vs = [_v(1, "1.1.1.1:2", a, handshake="psk", psk="p1", **t13),
          _v(2, "1.1.1.1:3", b, handshake="full", psk="p1", **t13)]
    for v in vs:
        v.psk_key_name = "k1"
    d = Diagnostics()
    for v in vs:
        d.add(v)
    assert [(f.code, f.servers) for f in d.findings()] == [
        ("cross_server_refused", [f"{a} example.test", f"{b} example.test"])]
    # Refused by b an hour after a accepted it: it may just have expired (age unknown).
    vs[1].ts = vs[1].client_hello_ts = vs[1].server_hello_ts = 3600
    vs[1].handshake_end_ts = 3600.01
    assert _codes(vs) == []
    vip = [_v(1, "1.1.1.1:2", a, handshake="full", psk="p1", **t13),
           _v(2, "1.1.1.1:3", a, handshake="psk", psk="p1", **t13)]
    for v in vip:
        v.psk_key_name = "k1"
    assert _codes(vip) == ["several_key_sets"]
    # Accepted, then refused: a TLS 1.3 ticket of unknown age may have expired: no claim.
    vip[0].handshake, vip[1].handshake = Handshake.PSK, Handshake.FULL
    assert _codes(vip) == []
    # Refused, then *another* ticket under the same name accepted: the refused one may have
    # expired (its age is unknown): no claim either.
    other = [_v(1, "1.1.1.1:2", a, handshake="full", psk="p1", **t13),
             _v(2, "1.1.1.1:3", a, handshake="psk", psk="p2", **t13)]
    for v in other:
        v.psk_key_name = "k1"
    assert _codes(other) == []


def test_findings_do_not_depend_on_the_order_of_the_verdicts():
    """Per-node pieces in either order (an offer before the connection that issued it)."""
    import random

    for vs in (_TIMEOUT, [_v(0, "1.1.1.1:1", "10.0.0.1:443", issued_ticket="ta", issued_key="ka"),
                          _v(1, "1.1.1.1:2", "10.0.0.2:443", offered="ticket", ticket="ta",
                             key="ka", issued_ticket="tb", issued_key="kb"),
                          _v(2, "1.1.1.1:3", "10.0.0.2:443", offered="ticket", handshake="ticket",
                             ticket="tb", key="kb", issued_ticket="tc", issued_key="kb"),
                          _v(3, "1.1.1.1:4", "10.0.0.2:443", offered="ticket", handshake="ticket",
                             ticket="tc", key="kb")]):
        want = None
        for seed in range(6):
            shuffled = list(vs)
            random.Random(seed).shuffle(shuffled)
            d = Diagnostics()
            for v in shuffled:
                d.add(v)
            got = [f.to_dict() for f in d.findings()]
            assert got, "the scenario has findings"
            want = want or got
            assert got == want


def test_one_connection_raises_nothing():
    assert _codes([_v(0, "1.1.1.1:1", issued_id="aa")]) == []
    assert _codes([_v(0, "1.1.1.1:1", offered="session_id", sid="zz")]) == []


def test_memory_is_bounded():
    d = Diagnostics(max_sessions=10)
    for i in range(1000):
        d.add(_v(i, f"1.1.1.1:{i}", issued_id=f"{i:04x}"))
        d.add(_v(i + 0.5, f"1.1.1.1:{i}", offered="session_id", handshake="session_id", sid=f"{i:04x}"))
    assert len(d.sessions) <= 10
    assert d.to_dict()["limits"]["sessions_dropped"] >= 990


def test_servers_are_bounded_and_the_rest_counted():
    d = Diagnostics(max_servers=5)
    for i in range(50):
        d.add(_v(i, f"1.1.1.1:{i}", f"10.0.{i}.1:443", issued_id=f"{i:04x}"))
    limits = d.to_dict()["limits"]
    assert (limits["servers"], limits["servers_dropped"]) == (5, 45)
    (f,) = d.findings()
    assert (f.code, f.severity.value, f.details["servers_dropped"]) == ("diagnostics_limited",
                                                                       "info", 45)


def _findings_of_every_capture() -> dict:
    from tlssniff.engine.parallel import analyze_captures

    out = {}
    root = CAPTURES.parent
    for p in sorted(CAPTURES.rglob("*")):
        if not p.name.endswith((".pcap", ".pcapng", ".pcap.gz")):
            continue
        d = Diagnostics()
        analyze_captures([str(p)], d.add)
        out[str(p.relative_to(root))] = sorted([f.code, *f.servers] for f in d.findings())
    return out


def test_findings_on_every_shipped_capture_are_pinned():
    """The findings (code and servers) of every capture in the repository, public ones
    included, are pinned in tests/data/findings_pinned.json: a change to the analysis that
    changes one must change that file, deliberately (regenerate it with the document this
    test prints)."""
    pinned = json.loads((CAPTURES.parent / "tests" / "data" / "findings_pinned.json").read_text())
    got = _findings_of_every_capture()
    assert got == pinned, json.dumps(got, indent=1)
