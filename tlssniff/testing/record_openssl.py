"""Record real TLS 1.3 0-RTT connections from OpenSSL into ``fixtures/``.

Python's ``ssl`` cannot send early data, so the 0-RTT templates come from ``openssl s_client``
talking to ``openssl s_server -early_data`` through a small TCP relay on loopback; the relay
records every ``recv()`` per direction, exactly the bytes on the wire. No root is needed.

    python -m tlssniff.testing.record_openssl [--out DIR]

Groups recorded (each group is one client's connections, in order):

- ``zero_rtt``: a full handshake that gets a ticket, then a resumption with early data (PSK
  accepted, 0-RTT accepted).
- ``zero_rtt_refused``: the same client after the server restarted (new ticket keys): the PSK is
  refused, a full handshake follows, early data rejected.
- ``zero_rtt_hrr``: a server that only accepts secp384r1: the full handshake has a
  HelloRetryRequest, and the resumption with early data too, so 0-RTT is rejected while the PSK
  is accepted.

The truth of each connection is taken from s_client's own report ("Reused"/"New", "Early data
was accepted/rejected") and checked against the rules of docs/verdicts.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from tlssniff.testing.handshakes import FIXTURES, HRR_RANDOM, cert_files, handshake_messages

EARLY = b"GET /early HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
LATE = b"GET /late HTTP/1.1\r\nHost: www.example.com\r\n\r\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    """Accept one connection on loopback, forward it to ``target``, record the chunks."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.chunks: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _pipe(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                self.chunks.append((direction, data))
            dst.sendall(data)

    def _run(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(("127.0.0.1", self.target_port))
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = threading.Thread(target=self._pipe, args=(client, server, "c"))
        up.start()
        self._pipe(server, client, "s")
        up.join()
        client.close()
        server.close()
        self.listener.close()

    def wait(self) -> list[tuple[str, bytes]]:
        self.thread.join(timeout=10)
        return self.chunks


class Server:
    """``openssl s_server -early_data`` on a loopback port."""

    def __init__(self, *groups: str, anti_replay: bool = True) -> None:
        cert, key = cert_files()
        self.port = _free_port()
        cmd = [
            "openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", str(cert),
            "-key", str(key), "-tls1_3", "-early_data", "-quiet", "-naccept", "100",
        ]
        if groups:
            cmd += ["-groups", ":".join(groups)]
        if not anti_replay:
            # With anti-replay on, OpenSSL forgets a ticket when it first sees it, so after a
            # HelloRetryRequest the second ClientHello's PSK would be unknown.
            cmd.append("-no_anti_replay")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("openssl s_server did not start")
        # The probe above was one accepted connection; nothing of it is recorded.

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=5)


def client_run(port: int, sess_out: Path | None = None, sess_in: Path | None = None,
               early: Path | None = None) -> tuple[list[tuple[str, bytes]], str]:
    """One s_client connection through a fresh relay; returns ``(chunks, s_client output)``."""
    relay = Relay(port)
    cmd = ["openssl", "s_client", "-connect", f"127.0.0.1:{relay.port}",
           "-servername", "www.example.com", "-tls1_3"]
    if sess_out:
        cmd += ["-sess_out", str(sess_out)]
    if sess_in:
        cmd += ["-sess_in", str(sess_in)]
    if early:
        cmd += ["-early_data", str(early)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    # Give the server time to send its NewSessionTickets before the client writes and closes.
    time.sleep(0.4)
    proc.stdin.write(LATE)
    proc.stdin.flush()
    time.sleep(0.4)
    proc.stdin.close()
    out = proc.stdout.read().decode(errors="replace")
    proc.wait(timeout=10)
    return relay.wait(), out


def _truth(chunks: list[tuple[str, bytes]], out: str, offered_psk: bool, early: bool) -> dict:
    reused = "Reused, TLSv1.3" in out
    if not reused and "New, TLSv1.3" not in out:
        raise RuntimeError(f"s_client did not report a TLS 1.3 session:\n{out}")
    first_server = next(d for s, d in chunks if s == "s")
    msgs = handshake_messages(first_server)
    hrr = msgs[0][0] == 2 and msgs[0][1][2:34] == HRR_RANDOM
    if early:
        accepted = "Early data was accepted" in out
        if not accepted and "Early data was rejected" not in out:
            raise RuntimeError(f"s_client did not say what became of its early data:\n{out}")
        early_data = "offered" if reused and not hrr else "rejected"
        if accepted and early_data != "offered":
            raise RuntimeError("early data accepted although the wire says rejected")
    else:
        early_data = "none"
    return {
        "sni": "www.example.com",
        "version": "TLSv1.3",
        "offered": "psk" if offered_psk else "none",
        "handshake": "psk" if reused else "full",
        "resumed": reused,
        "hrr": hrr,
        "early_data": early_data,
    }


def record(out_dir: Path) -> list[dict]:
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tlssniff-record-"))
    early = work / "early.txt"
    early.write_bytes(EARLY)
    recorded: list[tuple[str, str, list, dict]] = []

    def run(group: str, name: str, port: int, expect: dict, **kw) -> None:
        chunks, out = client_run(port, **kw)
        truth = _truth(chunks, out, offered_psk=kw.get("sess_in") is not None,
                       early=kw.get("early") is not None)
        for k, v in expect.items():
            if truth[k] != v:
                raise RuntimeError(f"{name}: {k} is {truth[k]!r}, expected {v!r}\n{out}")
        truth["scenario"] = name
        recorded.append((group, name, chunks, truth))

    sess = work / "sess.pem"
    server = Server()
    try:
        run("zero_rtt", "tls13_full_for_0rtt", server.port, {"handshake": "full"},
            sess_out=sess)
        run("zero_rtt", "tls13_0rtt_accepted", server.port,
            {"handshake": "psk", "early_data": "offered"}, sess_in=sess, early=early)
    finally:
        server.stop()
    # The same client after a server restart: new ticket keys, the PSK is unknown.
    sess2 = work / "sess2.pem"
    server = Server()
    try:
        run("zero_rtt_refused", "tls13_full_before_restart", server.port,
            {"handshake": "full"}, sess_out=sess2)
    finally:
        server.stop()
    server = Server()
    try:
        run("zero_rtt_refused", "tls13_0rtt_psk_refused", server.port,
            {"handshake": "full", "early_data": "rejected"}, sess_in=sess2, early=early)
    finally:
        server.stop()
    sess3 = work / "sess3.pem"
    server = Server("secp384r1", anti_replay=False)
    try:
        run("zero_rtt_hrr", "tls13_hrr_full_for_0rtt", server.port,
            {"handshake": "full", "hrr": True}, sess_out=sess3)
        run("zero_rtt_hrr", "tls13_hrr_0rtt_rejected", server.port,
            {"handshake": "psk", "hrr": True, "early_data": "rejected"},
            sess_in=sess3, early=early)
    finally:
        server.stop()

    index = []
    for group, name, chunks, truth in recorded:
        blob = b"".join(d for _, d in chunks)
        (out_dir / f"{name}.bin").write_bytes(blob)
        index.append({"name": name, "group": group, "file": f"{name}.bin",
                      "chunks": [[s, len(d)] for s, d in chunks], "truth": truth})
    (out_dir / "openssl_templates.json").write_text(dump_index(index))
    return index


def dump_index(index: list[dict]) -> str:
    """The fixture index, one template per line (diffs stay readable)."""
    return "[\n" + ",\n".join(json.dumps(e, separators=(",", ":")) for e in index) + "\n]\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURES)
    args = parser.parse_args(argv)
    for entry in record(args.out):
        t = entry["truth"]
        print(f"{entry['name']:28} {len(entry['chunks']):3} chunks  handshake={t['handshake']} "
              f"offered={t['offered']} hrr={t['hrr']} early_data={t['early_data']}")


if __name__ == "__main__":
    main()
