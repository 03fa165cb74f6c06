"""tlssniff/tls/wire.py is the one home of TLS wire numbers: its display enums say the same
numbers as its Final ints, and no parser keeps a copy of its own."""

from __future__ import annotations

import ast
import pathlib

from tlssniff.tls import wire

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tlssniff"


def test_display_enums_match_the_final_ints():
    for enum, prefix in ((wire.ContentType, "CT_"), (wire.HandshakeType, "HS_"), (wire.ExtensionType, "EXT_")):
        finals = {k[len(prefix):]: v for k, v in vars(wire).items() if k.startswith(prefix)}
        assert {m.name: m.value for m in enum} == finals, enum.__name__


def test_known_names():
    assert wire.version_name(0x0303) == "TLSv1.2"
    assert wire.version_name(0x7F17) == "TLSv1.3-draft23"
    assert wire.version_name(0x7E02) == "TLSv1.3-experiment2"
    assert wire.version_name(0xFB17) == "TLSv1.3-fb23"
    assert wire.version_name(0x1234) == "0x1234"
    assert wire.is_tls13(0xFEFC) and wire.is_tls13(0x7F12) and not wire.is_tls13(0x0303)
    assert wire.is_grease(0x1A1A) and not wire.is_grease(0x1A2A)
    assert wire.ALERT_NAMES[40] == "handshake_failure"


def _module_ints(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_no_parser_defines_wire_names_of_its_own():
    owned = {k for k in vars(wire) if k.isupper()} | {"HandshakeType", "ContentType", "ExtensionType"}
    for pkg in ("tls", "dtls", "quic"):
        for path in (ROOT / pkg).glob("*.py"):
            if path.name == "wire.py":
                continue
            stray = {n.lstrip("_") for n in _module_ints(path)} & owned
            stray |= {n for n in _module_ints(path) if n.lstrip("_") in owned}
            assert not stray, f"{path.name} redefines {sorted(stray)}: import them from tls/wire.py"


def test_secret_spans_are_where_the_parsers_read_the_values():
    """tls.messages.secret_spans (report redaction) finds exactly the session id, ticket and
    PSK identities the parsers return, on real OpenSSL handshakes through memory BIOs."""
    from tlssniff.testing import handshakes as hs
    from tlssniff.tls import messages as m

    ctx = hs.server_context()
    s12 = hs.run_scenario("tls12_full", ctx).session
    s13 = hs.run_scenario("tls13_full", ctx).session
    found = set()
    for kind, session in (("tls12_full", None), ("tls12_ticket_resume", s12),
                          ("tls13_psk_resume", s13)):
        t = hs.run_scenario(kind, ctx, session=session).transcript
        for side in ("c", "s"):
            for mtype, body in hs.handshake_messages(t.bytes_from(side)):
                spans = m.secret_spans(mtype, body)
                got = {k: [body[a:b] for kk, a, b in spans if kk == k] for k in ("sid", "tkt", "psk")}
                if mtype == 1:
                    ch = m.parse_client_hello(body)
                    assert got["sid"] == ([ch.session_id] if ch.session_id else [])
                    assert got["tkt"] == ([ch.ticket] if ch.ticket else [])
                    assert got["psk"] == list(ch.psk_identities)
                elif mtype == 2:
                    sh = m.parse_server_hello(body)
                    assert got["sid"] == ([sh.session_id] if sh.session_id else [])
                elif mtype == 4:
                    assert got["tkt"] == [m.parse_new_session_ticket(body).ticket]
                found.update((mtype, k) for k, v in got.items() if v)
    assert {(1, "sid"), (1, "tkt"), (1, "psk"), (2, "sid"), (4, "tkt")} <= found
