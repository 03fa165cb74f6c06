"""Make captures/partitions/sid-refused-tls13-client.pcap and its truth file (run as root).

    sudo python scripts/make_partition_capture.py [--out captures/partitions]

A TLS 1.2-only ``openssl s_server -no_ticket`` on 127.0.0.1:26443 and a default ``openssl
s_client`` (which also offers TLS 1.3, so its session id could be a random compatibility id,
RFC 8446 D.4): six full handshakes, each saving the session id the server issued; the server is
restarted (empty session cache); then the six clients present their sessions and are refused
(full handshake, a new id). Whether those six ClientHellos *offered* a session depends on an
earlier connection having issued the id: this is what ``analyze ONE --jobs N`` has to settle
across flow-hash partitions (tests/test_partitions.py). The truth is the clients' own report
(``New``/``Reused``) and what each was told to present; every connection is checked against
tshark's dissection before the truth file is written (scripts/make_captures.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_captures as mc  # noqa: E402

PORT = 26443
PAIRS = 6
NAME = "sid-refused-tls13-client"


def scenario(work: Path, cert: Path, key: Path) -> list[mc.Run]:
    server = mc.OpenSSLServer(PORT, cert, key, "-tls1_2", "-no_ticket", log=work / "s_server.log")
    sessions = [work / f"s{i}.pem" for i in range(PAIRS)]
    runs = []
    with server:
        for i, sess in enumerate(sessions):
            runs.append(mc.expect(mc.s_client(PORT, "-no_ticket", sni=None, sess_out=sess,
                                              story=f"full handshake, session id {i} issued"),
                                  reused=False))
        server.restart()
        for i, sess in enumerate(sessions):
            runs.append(mc.expect(mc.s_client(PORT, "-no_ticket", sni=None, sess_in=sess,
                                              offered="session_id",
                                              story=f"session id {i} refused: server restarted"),
                                  reused=False))
    return runs


def check_links(runs: list[mc.Run], pcap: Path) -> None:
    """The wire check of make_captures (which, from one connection alone, calls a TLS 1.3-capable
    client's session id no offer), plus the link that makes it one: each refused ClientHello's
    session id is the one the ServerHello of its session's first connection issued."""
    wire_only = [copy.copy(r) for r in runs]
    for r in wire_only[PAIRS:]:
        r.offered = "none"
    mc.check_against_wire(wire_only, pcap, [PORT])
    rows = mc._tshark_fields(pcap, [PORT], ["tcp.srcport", "tcp.dstport", "tls.handshake.type",
                                            "tls.handshake.session_id"], "tls.handshake.type")
    ch: dict[int, str] = {}
    sh: dict[int, str] = {}
    for sport, dport, htype, sid in rows:
        if htype.split(",")[0] == "1":
            ch[int(sport)] = sid.split(",")[0]
        elif htype.split(",")[0] == "2":
            sh[int(dport)] = sid.split(",")[0]
    for first, again in zip(runs[:PAIRS], runs[PAIRS:]):
        issued, presented = sh.get(first.client_port), ch.get(again.client_port)
        if not issued or issued != presented:
            raise mc.CaptureFailed(f"{again.client()}: presents {presented!r}, "
                                   f"{first.client()} was issued {issued!r}")
        if sh.get(again.client_port) == presented:
            raise mc.CaptureFailed(f"{again.client()}: the restarted server accepted the id")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=mc.REPO / "captures" / "partitions")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("make_partition_capture: tcpdump needs root", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tlssniff-partitions-") as tmp:
        work = Path(tmp)
        cert, key = mc.make_cert(work)
        raw = work / "raw.pcap"
        with mc.Tcpdump(raw, [PORT]):
            runs = scenario(work, cert, key)
        mc.assign_client_ports(runs, raw, [PORT])
        check_links(runs, raw)
        shutil.copyfile(raw, args.out / f"{NAME}.pcap")
        mc.write_truth(args.out / f"{NAME}.truth.jsonl", runs)
    print(f"{NAME}.pcap: {len(runs)} connections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
