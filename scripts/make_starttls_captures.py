#!/usr/bin/env python3
"""Re-create captures/starttls/*.pcap and their truth files: real STARTTLS upgrades on loopback.

    python scripts/make_starttls_captures.py [--out captures/starttls]

Needs root (tcpdump) and openssl. Minimal SMTP (RFC 3207) and IMAP (RFC 9051) servers written
here with Python's ``ssl`` speak the plaintext protocol on 127.0.0.1, then upgrade; the clients
are ``openssl s_client -starttls smtp|imap``, full handshakes and resumptions (TLS 1.3 PSK,
TLS 1.2 ticket, TLS 1.2 session id). The truth of each connection is s_client's own
``New,``/``Reused,`` report and what it was told to present.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from make_captures import assign_client_ports, free_port, make_cert, s_client  # noqa: E402
from udp_capture import Tcpdump  # noqa: E402


class StartTlsServer:
    """A thread serving one plaintext protocol that upgrades with STARTTLS, one client at a time."""

    def __init__(self, proto: str, port: int, ctx: ssl.SSLContext):
        self.proto, self.port, self.ctx = proto, port, ctx
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.running = False
        self.thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            try:
                conn.settimeout(10)
                self._session(conn)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        send = conn.sendall
        send(b"220 tlssniff.test ESMTP\r\n" if self.proto == "smtp" else b"* OK IMAP4rev1 ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            words = line.strip().split()
            if self.proto == "smtp":
                cmd = words[0].upper() if words else b""
                if cmd in (b"EHLO", b"HELO"):
                    send(b"250-tlssniff.test\r\n250 STARTTLS\r\n")
                elif cmd == b"STARTTLS":
                    send(b"220 2.0.0 Ready to start TLS\r\n")
                    break
                else:
                    send(b"502 5.5.2 not implemented\r\n")
            else:
                tag = words[0] if words else b"*"
                cmd = words[1].upper() if len(words) > 1 else b""
                if cmd == b"CAPABILITY":
                    send(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n" + tag + b" OK done\r\n")
                elif cmd == b"STARTTLS":
                    send(tag + b" OK Begin TLS negotiation now\r\n")
                    break
                else:
                    send(tag + b" BAD unknown\r\n")
        tls = self.ctx.wrap_socket(conn, server_side=True)
        tf = tls.makefile("rb")
        tf.readline()  # whatever the client says first over TLS (s_client sends a GET line)
        tls.sendall(b"221 2.0.0 bye\r\n" if self.proto == "smtp" else b"* BYE\r\n")
        tls.close()


def server_context(cert: Path, key: Path, *, max_version: ssl.TLSVersion, tickets: bool):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.maximum_version = max_version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET  # TLS 1.2: session-id resumption from the server cache
    return ctx


def scenario(proto: str, work: Path, cert: Path, key: Path, ports: list[int]):
    """The runs of one protocol's connections, on three servers at ``ports``."""
    runs = []
    servers = []
    free = iter(ports)
    try:
        for label, maxv, tickets, cargs, offered in (
            ("TLS 1.3", ssl.TLSVersion.TLSv1_3, True, (), "psk"),
            ("TLS 1.2 ticket", ssl.TLSVersion.TLSv1_2, True, ("-tls1_2",), "ticket"),
            ("TLS 1.2 session id", ssl.TLSVersion.TLSv1_2, False, ("-tls1_2", "-no_ticket"),
             "session_id"),
        ):
            port = next(free)
            servers.append(StartTlsServer(proto, port, server_context(cert, key, max_version=maxv,
                                                                      tickets=tickets)))
            sess = work / f"{proto}-{port}.sess"
            args = ("-starttls", proto, *cargs)
            runs.append(s_client(port, *args, sess_out=sess, story=f"{proto} {label}: full"))
            runs.append(s_client(port, *args, sess_in=sess, offered=offered,
                                 story=f"{proto} {label}: offers the saved session (s_client reports the outcome)"))
    finally:
        for s in servers:
            s.close()
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "captures" / "starttls")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    cert, key = make_cert(work)
    for proto in ("smtp", "imap"):
        pcap = args.out / f"{proto}.pcap"
        ports = [free_port() for _ in range(3)]
        with Tcpdump(pcap, "tcp and (" + " or ".join(f"port {p}" for p in ports) + ")"):
            runs = scenario(proto, work, cert, key, ports)
        assign_client_ports(runs, pcap, ports)
        with open(args.out / f"{proto}.truth.jsonl", "w") as fh:
            for run in runs:
                t = run.truth()
                t["transport"] = "tcp"
                t["starttls"] = proto
                fh.write(json.dumps(t) + "\n")
        print(f"{pcap}: {len(runs)} connections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
