"""End to end on loopback: real servers, real clients, tcpdump, then tlssniff.

Each test starts servers on free loopback ports, records them with ``tcpdump -i lo``, runs real
clients one after another and checks tlssniff's verdict of every connection against the client's
own report (s_client's ``New,``/``Reused,``, Python's ``SSLSocket.session_reused``) and against
what the client was told to present (``-sess_in``, ``-no_ticket``, ``session=``).

Client ports: Python clients know theirs (``getsockname()``); s_client connections are matched
by order, since the clients run one at a time. The loopback machinery is shared with
``scripts/make_captures.py``, which makes the shipped captures the same way.

Needs root (tcpdump), openssl, tcpdump and tshark; the nginx test also needs nginx
(``scripts/install-system-deps.sh`` installs them all).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import ssl
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, analyze_jsonl, assert_verdicts

pytestmark = pytest.mark.e2e


def _load_loopback():
    name = "tlssniff_make_captures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "make_captures.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
    return sys.modules[name]


def _missing_requirement() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: tcpdump captures on the loopback interface"
    for tool in ("openssl", "tcpdump", "tshark", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps.sh)"
    return None


_REASON = _missing_requirement()
if _REASON:
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=_REASON)]


@pytest.fixture(scope="module")
def lo():
    return _load_loopback()


@pytest.fixture
def cert(lo, tmp_path: Path) -> tuple[Path, Path]:
    return lo.make_cert(tmp_path)


def _check(lo, pcap: Path, runs: list, ports: list[int]) -> None:
    """tlssniff's verdicts against the clients' own reports, connection by connection."""
    lo.assign_client_ports(runs, pcap, ports)  # s_client: by order; Python: must agree
    truth = [run.truth() for run in runs]
    assert_verdicts(analyze_jsonl(pcap), truth)


def test_openssl_servers(lo, cert, tmp_path: Path):
    """s_server TLS 1.2 with tickets, TLS 1.2 -no_ticket, TLS 1.3: full, resumed, refused."""
    crt, key = cert
    p12, p12_sid, p13 = (lo.free_port() for _ in range(3))
    pcap = tmp_path / "openssl.pcap"
    log = tmp_path / "s_server.log"
    s_tkt, s_sid, s_13 = (tmp_path / f"{n}.pem" for n in ("tkt", "sid", "psk"))
    runs = []
    with lo.Tcpdump(pcap, [p12, p12_sid, p13]):
        with lo.OpenSSLServer(p12, crt, key, "-tls1_2", log=log) as tickets, \
                lo.OpenSSLServer(p12_sid, crt, key, "-tls1_2", "-no_ticket", log=log), \
                lo.OpenSSLServer(p13, crt, key, "-tls1_3", log=log) as tls13:
            runs.append(lo.s_client(p12, "-tls1_2", sess_out=s_tkt))
            runs.append(lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"))
            runs.append(lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_out=s_sid))
            runs.append(lo.s_client(p12_sid, "-tls1_2", "-no_ticket", sess_in=s_sid,
                                    offered="session_id"))
            runs.append(lo.s_client(p13, sess_out=s_13))
            runs.append(lo.s_client(p13, sess_in=s_13, offered="psk"))
            tickets.restart()  # new ticket key: the client's ticket is refused
            runs.append(lo.s_client(p12, "-tls1_2", sess_in=s_tkt, offered="ticket"))
            tls13.restart()
            runs.append(lo.s_client(p13, sess_in=s_13, offered="psk"))
    # The clients themselves say what happened; the test needs both outcomes to mean anything.
    assert [r.reused for r in runs] == [False, True, False, True, False, True, False, False], \
        [(r.server, r.offered, r.reused) for r in runs]
    _check(lo, pcap, runs, [p12, p12_sid, p13])


def test_nginx_with_python_and_s_client(lo, cert, tmp_path: Path):
    """nginx (shared session cache, tickets on and off): s_client and Python ``session=``."""
    if lo.nginx_binary() is None:
        pytest.skip("nginx is not installed (scripts/install-system-deps.sh)")
    crt, key = cert
    on = lo.free_port()
    while not lo.port_is_free(on):  # the tickets-on server listens on ::1 too
        on = lo.free_port()
    off = lo.free_port()
    pcap = tmp_path / "nginx.pcap"
    sess = tmp_path / "s.pem"
    ndir = tmp_path / "nginx"
    ndir.mkdir()
    t12 = ssl.TLSVersion.TLSv1_2
    runs = []
    with lo.Tcpdump(pcap, [on, off]):
        with lo.nginx(ndir, crt, key, on, off):
            runs.append(lo.s_client(on, "-tls1_2", sess_out=sess))
            runs.append(lo.s_client(on, "-tls1_2", sess_in=sess, offered="ticket"))
            for host in ("127.0.0.1", "::1"):
                first, session = lo.py_client(on, host=host)
                again, _ = lo.py_client(on, host=host, session=session, offered="psk")
                runs += [first, again]
            first, session = lo.py_client(off, max_version=t12)
            again, _ = lo.py_client(off, max_version=t12, session=session,
                                    offered="session_id")
            runs += [first, again]
    assert [r.reused for r in runs] == [False, True] * 4, \
        [(r.server, r.offered, r.reused) for r in runs]
    assert any(r.server.startswith("[::1]") for r in runs)
    _check(lo, pcap, runs, [on, off])
