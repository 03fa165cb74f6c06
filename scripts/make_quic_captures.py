#!/usr/bin/env python3
"""Re-create captures/quic/aioquic.pcap and its truth file: real QUIC handshakes on loopback.

    python scripts/make_quic_captures.py [--out captures/quic]

Needs root (tcpdump) and ``pip install aioquic``. An aioquic server and aioquic clients on
127.0.0.1: a full handshake that saves the server's ticket, a PSK resumption with it, a
resumption with 0-RTT data, the same ticket presented after the server forgot its tickets
(refused PSK, 0-RTT rejected), a handshake through a Retry, and a QUIC v2 handshake. The truth
of each connection is the client's own report (``tls.session_resumed``,
``tls.early_data_accepted``) and what it was told to present.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from make_captures import SNI, free_port, make_cert  # noqa: E402
from udp_capture import Tcpdump  # noqa: E402

from aioquic.asyncio import connect, serve  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402
from aioquic.quic.packet import QuicProtocolVersion  # noqa: E402

TIMEOUT = 10.0


class TicketStore:
    def __init__(self) -> None:
        self.tickets: dict[bytes, object] = {}

    def add(self, ticket) -> None:
        self.tickets[ticket.ticket] = ticket

    def pop(self, label: bytes):
        return self.tickets.pop(label, None)


async def client_run(port: int, local_port: int, *, ticket=None, early: bool = False,
                     version: int | None = None) -> dict:
    cfg = QuicConfiguration(is_client=True, alpn_protocols=["hq-interop"], server_name=SNI)
    cfg.verify_mode = ssl.CERT_NONE
    if version is not None:
        cfg.supported_versions = [version]
    if ticket is not None:
        cfg.session_ticket = ticket
    got: list = []
    async with connect("127.0.0.1", port, configuration=cfg, session_ticket_handler=got.append,
                       wait_connected=False, local_port=local_port) as client:
        if early:  # stream data before the handshake: sent as 0-RTT packets
            sid = client._quic.get_next_available_stream_id()
            client._quic.send_stream_data(sid, b"0-RTT hello", end_stream=False)
        client.transmit()  # wait_connected=False leaves the first flight to us
        await asyncio.wait_for(client.wait_connected(), TIMEOUT)
        for _ in range(100):  # the server's NewSessionTicket follows the handshake
            if got:
                break
            await asyncio.sleep(0.02)
        tls = client._quic.tls
        return {
            # aioquic offers early_data whenever its ticket allows it (aioquic servers' always
            # do), whether or not stream data is then sent as 0-RTT packets.
            "early_offered": ticket is not None and ticket.max_early_data_size is not None,
            "resumed": tls.session_resumed,
            "early_accepted": tls.early_data_accepted,
            "ticket": got[-1] if got else None,
        }


async def scenarios(port: int, retry_port: int) -> list[dict]:
    cert_dir = Path(tempfile.mkdtemp())
    cert, key = make_cert(cert_dir)
    store = TicketStore()

    def server_cfg() -> QuicConfiguration:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=["hq-interop"])
        cfg.supported_versions = [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2]
        cfg.load_cert_chain(str(cert), str(key))
        return cfg

    server = await serve("127.0.0.1", port, configuration=server_cfg(),
                         session_ticket_fetcher=store.pop, session_ticket_handler=store.add)
    retry_server = await serve("127.0.0.1", retry_port, configuration=server_cfg(), retry=True)
    runs = []

    async def run(story: str, *, offered: str, ticket=None, early=False, version=None,
                  p=port) -> dict:
        lp = free_port()
        r = await client_run(p, lp, ticket=ticket, early=early, version=version)
        handshake = "psk" if r["resumed"] else "full"
        early_data = "none"
        if r["early_offered"]:  # docs/verdicts.md: offered with the PSK accepted, else rejected
            early_data = "offered" if r["resumed"] else "rejected"
        runs.append({
            "client": f"127.0.0.1:{lp}", "server": f"127.0.0.1:{p}", "transport": "quic",
            "sni": SNI, "version": "TLSv1.3", "offered": offered, "handshake": handshake,
            "resumed": r["resumed"], "hrr": False, "early_data": early_data, "note": None,
            "tool": f"aioquic {version_name(version)}", "story": story,
            "early_data_accepted": r["early_accepted"], "zero_rtt_packets": early,
        })
        return r

    first = await run("full handshake; the client saves the server's ticket", offered="none")
    second = await run("PSK resumption with the saved ticket", offered="psk",
                       ticket=first["ticket"])
    await run("PSK resumption with 0-RTT stream data", offered="psk", ticket=second["ticket"],
              early=True)
    last = second["ticket"]
    store.tickets.clear()  # the server forgets every ticket: the next offer is refused
    await run("ticket the server no longer has, with 0-RTT: PSK refused, 0-RTT rejected",
              offered="psk", ticket=last, early=True)
    await run("full handshake through a Retry (RFC 9000 §8.1.2)", offered="none", p=retry_port)
    await run("full handshake in QUIC version 2 (RFC 9369)", offered="none",
              version=QuicProtocolVersion.VERSION_2)
    server.close()
    retry_server.close()
    return runs


def version_name(v) -> str:
    return "QUICv2" if v == QuicProtocolVersion.VERSION_2 else "QUICv1"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "captures" / "quic")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    port, retry_port = free_port(), free_port()
    pcap = args.out / "aioquic.pcap"
    with Tcpdump(pcap, f"udp and (port {port} or port {retry_port})"):
        runs = asyncio.run(scenarios(port, retry_port))
    with open(args.out / "aioquic.truth.jsonl", "w") as f:
        for r in runs:
            f.write(json.dumps(r) + "\n")
    print(f"{pcap}: {len(runs)} connections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
