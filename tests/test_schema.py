"""The verdict's field list, its constructor, its serialisations and its pickling in step.

``ConnectionVerdict`` is written out field by field in several places (the dataclass, the
hand-written ``__init__``, ``to_dict``, ``to_json_line``, ``__reduce__``; CSV and ECS pick
from it). Each test changes one field at a time and checks that every serialisation that
should carry it does, and that the ones that leave it out say so in a list here: a new field
cannot be forgotten in one of them silently.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import json
import pickle
import typing
from pathlib import Path

import pytest

from tlssniff.analysis import verdict as verdict_module
from tlssniff.analysis.aggregate import ServerStats
from tlssniff.analysis.verdict import ConnectionVerdict, EarlyData, Handshake, Note, Offered
from tlssniff.output.formats import CSV_FIELDS, VerdictWriter, to_ecs

FIELDS = [f.name for f in dataclasses.fields(ConnectionVerdict)]
SOURCE = Path(verdict_module.__file__).with_suffix(".py")
if not SOURCE.exists():  # a compiled module next to its source
    SOURCE = Path(__file__).resolve().parent.parent / "tlssniff" / "analysis" / "verdict.py"


def _source_class() -> ast.ClassDef:
    tree = ast.parse(SOURCE.read_text())
    return next(n for n in tree.body if isinstance(n, ast.ClassDef)
                and n.name == "ConnectionVerdict")


# The annotations as written (a compiled class keeps only their outer types).
HINTS = {n.target.id: eval(ast.unparse(n.annotation), vars(verdict_module) | {"list": list})
         for n in _source_class().body
         if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
DERIVED = {"resumed"}  # to_dict keys computed from fields (handshake)

# Fields ECS lines carry (tlssniff.output.formats.to_ecs) and the ones they leave out.
ECS_FIELDS = {"ts", "client", "server", "transport", "version", "cipher", "alpn", "sni",
              "session_id", "established", "offered", "handshake", "hrr", "early_data", "note",
              "preamble", "proxied_client"}
NOT_IN_ECS = set(FIELDS) - ECS_FIELDS
NOT_IN_CSV = set(FIELDS) - set(CSV_FIELDS)


def _values(name: str) -> tuple:
    """Two different non-default values of field ``name``'s type."""
    hint = HINTS[name]
    kind = hint
    if typing.get_origin(hint) is not list:  # X | None -> X
        args = set(typing.get_args(hint)) - {type(None)}
        kind = next(iter(args)) if args else hint
    if name in ("client", "server", "proxied_client"):  # endpoints: ECS splits them
        return ("10.0.0.1:1000", "[fd00::2]:2000")
    if kind is float:
        return (1_700_000_001.25, 1_700_000_002.5)
    if kind is bool:
        return (True, False)
    if kind is int:
        return (7, 9)
    if kind is str:
        return ({"version": "TLSv1.2", "transport": "quic"}.get(name, f"{name}-a"),
                {"version": "TLSv1.3", "transport": "udp"}.get(name, f"{name}-b"))
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return ([1, 2], [3]) if item is int else (["h2"], ["http/1.1", "h3"])
    for enum in (Handshake, Offered, EarlyData, Note):
        if kind is enum:
            members = list(enum)
            return (members[1], members[2])
    raise AssertionError(f"{name}: no test values for {hint}")


def _base() -> ConnectionVerdict:
    return ConnectionVerdict(1_700_000_000.5, "10.0.0.9:999", "10.0.0.8:443")


def _with(name: str, value) -> ConnectionVerdict:
    v = _base()
    setattr(v, name, value)
    return v


def _csv_row(v: ConnectionVerdict) -> str:
    out = io.StringIO()
    VerdictWriter("csv", out).write(v)
    return out.getvalue().splitlines()[1]


def test_constructor_takes_every_field_in_field_order():
    init = next(n for n in _source_class().body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert [a.arg for a in init.args.args[1:]] == FIELDS
    assert list(HINTS) == FIELDS
    # and positionally, in whichever build runs (a compiled __init__ has no signature)
    values = [_values(name)[0] for name in FIELDS]
    v = ConnectionVerdict(*values)
    assert [getattr(v, name) for name in FIELDS] == values


def test_constructor_stores_every_argument():
    for name in FIELDS:
        a, _ = _values(name)
        v = ConnectionVerdict(**{"ts": 1.0, "client": "1.1.1.1:1", "server": "2.2.2.2:2",
                                 name: a})
        assert getattr(v, name) == a, name


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_reaches_to_dict_json_line_and_pickle(name):
    a, b = _values(name)
    va, vb = _with(name, a), _with(name, b)
    da, db = va.to_dict(), vb.to_dict()
    assert set(da) == set(FIELDS) | DERIVED
    assert da[name] != db[name], name
    for v, d in ((va, da), (vb, db)):
        line = v.to_json_line()
        assert line.endswith("\n") and "\n" not in line[:-1]
        assert json.loads(line) == d
        assert list(json.loads(line)) == list(d)  # the same key order
        assert line == json.dumps(d, separators=(",", ":")) + "\n"
        back = pickle.loads(pickle.dumps(v))
        assert [getattr(back, f) for f in FIELDS] == [getattr(v, f) for f in FIELDS]


@pytest.mark.parametrize("name", FIELDS)
def test_ecs_and_csv_carry_exactly_their_fields(name):
    a, b = _values(name)
    va, vb = _with(name, a), _with(name, b)
    ecs_differs = to_ecs(va) != to_ecs(vb)
    assert ecs_differs == (name in ECS_FIELDS), f"{name}: ECS lines {'ignore' if not ecs_differs else 'carry'} it"
    csv_differs = _csv_row(va) != _csv_row(vb)
    assert csv_differs == (name not in NOT_IN_CSV), name


def test_csv_columns_are_verdict_fields():
    assert set(CSV_FIELDS) <= set(FIELDS) | DERIVED
    row = next(csv.DictReader(io.StringIO("\n".join(
        [",".join(CSV_FIELDS), _csv_row(_with("sni", "a.example"))]))))
    assert row["sni"] == "a.example"


SERVER_FIELDS = [f.name for f in dataclasses.fields(ServerStats)]


def _server_stats(seed: int) -> ServerStats:
    s = ServerStats(f"10.0.0.{seed}:443", f"s{seed}.example")
    for i, name in enumerate(SERVER_FIELDS):
        if name in ("server", "sni"):
            continue
        kind = type(getattr(s, name))
        if name == "transport":
            s.transport = "quic"
        elif name == "starttls":
            s.starttls = "smtp"
        elif name in ("first_ts", "last_ts"):
            setattr(s, name, 1_700_000_000.0 + seed + i)
        elif kind is dict:
            setattr(s, name, {f"k{seed}": i + 1})
        else:
            setattr(s, name, seed * 100 + i + 1)
    return s


def test_server_stats_pickle_and_dict_carry_every_field():
    s = _server_stats(3)
    back = pickle.loads(pickle.dumps(s))
    assert [getattr(back, f) for f in SERVER_FIELDS] == [getattr(s, f) for f in SERVER_FIELDS]
    d = s.to_dict()
    for name in SERVER_FIELDS:
        key = {"by_handshake": "handshake", "by_offered": "offered_by_mechanism",
               "by_version": "version"}.get(name, name)
        assert key in d, name


def test_server_stats_merge_adds_every_count():
    a, b = _server_stats(1), _server_stats(2)
    before = {f: getattr(a, f) for f in SERVER_FIELDS}
    a.merge(b)
    for name in SERVER_FIELDS:
        if name in ("server", "sni", "transport", "starttls"):
            continue
        if isinstance(before[name], int):
            assert getattr(a, name) == before[name] + getattr(b, name), name
        elif isinstance(before[name], dict):
            assert getattr(a, name) == {**before[name], **getattr(b, name)}, name
    assert a.first_ts == min(before["first_ts"], b.first_ts)
    assert a.last_ts == max(before["last_ts"], b.last_ts)
