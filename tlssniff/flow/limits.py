"""What both flow tables (TCP :mod:`.table`, UDP :mod:`.udp`) share: the limits that keep memory
flat and the reasons a flow ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(slots=True)
class Limits:
    """Bounds that keep memory flat whatever the capture holds (see docs/robustness.md)."""

    max_flows: int = 200_000  # connections tracked at once; the least recently active go first
    idle_timeout: float = 300.0  # seconds of capture time without a packet
    max_buffer: int = 256 * 1024  # out-of-order bytes held per direction before a verdict
    max_message: int = 64 * 1024  # largest hello/ticket message buffered
    # Memory charged to connections still waiting for a verdict, all together: a fixed cost per
    # connection (PENDING_COST) plus every byte it buffers (out-of-order segments, a partial TLS
    # record or handshake message). Beyond it the least recently active of them are evicted.
    max_pending_memory: int = 96 * 1024 * 1024


# What a connection without a verdict costs besides the bytes it buffers: Flow, two
# reassemblers, keys and their dict entries, the TLS app, tracker and record streams (measured
# with tracemalloc on partial ClientHellos: about 1,700 bytes; see bench/adversarial.py).
PENDING_COST: Final = 1700

# Why a flow's app was told to finish (``App.finish(reason)``): plain ints, compared in
# compiled code (a Final int costs what a literal costs); END_NAMES for messages.
END_CLOSED: Final = 1  # FIN or RST in both directions (TCP)
END_EOF: Final = 2  # the input ended with the flow open
END_IDLE: Final = 3  # no packet for Limits.idle_timeout of capture time
END_EVICTED: Final = 4  # dropped for a limit (flows or pending memory)
END_GAP: Final = 5  # closed or ended with bytes missing from the capture (TCP)
END_DONE: Final = 6  # the app has its verdict (UDP: QUIC, DTLS)

END_NAMES: Final = {
    END_CLOSED: "closed",
    END_EOF: "eof",
    END_IDLE: "idle",
    END_EVICTED: "evicted",
    END_GAP: "gap",
    END_DONE: "done",
}
