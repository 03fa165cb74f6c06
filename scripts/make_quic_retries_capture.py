#!/usr/bin/env python3
"""Re-create captures/quic/aioquic-retries.pcap and its truth: one QUIC connection, two Retries.

    sudo python scripts/make_quic_retries_capture.py [--out captures/quic]

Needs root (tcpdump) and ``pip install aioquic``. An aioquic server with ``retry=True`` answers
every Initial without a token with a Retry carrying a new Source Connection ID. The aioquic
client's first Initial reaches it twice: the second copy (as a network duplicate or a
retransmission would) right before the client's Initial that carries the first Retry's token.
So the server sends two Retries; the client follows the first one only (RFC 9000 §17.2.5.2,
aioquic's ``_receive_retry_packet``), and the second Retry comes after the client's new Initial
in the capture, before the server's Initial. The truth is the client's own report
(``tls.session_resumed``), port 24080.
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

from make_captures import SNI, make_cert  # noqa: E402
from udp_capture import Tcpdump  # noqa: E402

from aioquic.asyncio import connect, serve  # noqa: E402
from aioquic.quic.configuration import QuicConfiguration  # noqa: E402

PORT, CLIENT_PORT = 24080, 24081
TIMEOUT = 10.0


async def scenario() -> dict:
    cert, key = make_cert(Path(tempfile.mkdtemp()))
    scfg = QuicConfiguration(is_client=False, alpn_protocols=["hq-interop"])
    scfg.load_cert_chain(str(cert), str(key))
    server = await serve("127.0.0.1", PORT, configuration=scfg, retry=True)
    ccfg = QuicConfiguration(is_client=True, alpn_protocols=["hq-interop"], server_name=SNI)
    ccfg.verify_mode = ssl.CERT_NONE
    try:
        async with connect("127.0.0.1", PORT, configuration=ccfg, wait_connected=False,
                           local_port=CLIENT_PORT) as client:
            transport = client._transport
            real_sendto = transport.sendto
            sent: list[bytes] = []

            def sendto(data, addr=None):
                if len(sent) == 1:
                    real_sendto(sent[0], addr)  # the first Initial again: a second Retry
                sent.append(bytes(data))
                real_sendto(data, addr)

            transport.sendto = sendto
            client.transmit()
            await asyncio.wait_for(client.wait_connected(), TIMEOUT)
            await asyncio.sleep(0.2)
            quic = client._quic
            resumed = quic.tls.session_resumed
            retries = quic._retry_count
    finally:
        server.close()
    if retries != 1:
        raise RuntimeError(f"the client followed {retries} Retries, not one")
    return {
        "client": f"127.0.0.1:{CLIENT_PORT}", "server": f"127.0.0.1:{PORT}", "transport": "quic",
        "sni": SNI, "version": "TLSv1.3", "offered": "none",
        "handshake": "psk" if resumed else "full", "resumed": resumed, "hrr": False,
        "early_data": "none", "note": None, "tool": "aioquic QUICv1",
        "story": "two Retries (the first Initial reached the server twice); the client "
                 "followed the first",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "captures" / "quic")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pcap = args.out / "aioquic-retries.pcap"
    with Tcpdump(pcap, f"udp and port {PORT}"):
        run = asyncio.run(scenario())
    (args.out / "aioquic-retries.truth.jsonl").write_text(json.dumps(run) + "\n")
    print(f"{pcap}: 1 connection")
    return 0


if __name__ == "__main__":
    sys.exit(main())
