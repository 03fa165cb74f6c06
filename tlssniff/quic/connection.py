"""One QUIC connection seen passively: Initial packets decrypted, CRYPTO frames reassembled and
fed as TLS handshake messages into the same :class:`HandshakeTracker` as TLS over TCP.

Only Initial packets are decrypted (their keys are public); Handshake, 0-RTT and 1-RTT packets
are counted as encrypted records, which is what the tracker needs to see the handshake finish.
"""

from __future__ import annotations

from tlssniff.quic import packet as qp
from tlssniff.quic.crypto import DirectionKeys, initial_keys, initial_salt
from tlssniff.tls import records as rec
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.messages import DecodeError
from tlssniff.tls.wire import ALERT_FATAL

_ENCRYPTED = [(rec.ENCRYPTED_HANDSHAKE, 0, None)]
MAX_OTHER_KEYS = 4  # Initial keys kept to try besides the current ones (several Retries)


class CryptoStream:
    """One direction's CRYPTO stream in the Initial space: frames in any order, overlapping or
    repeated, out comes each byte once, in order. Holds at most ``limit`` bytes ahead of a hole."""

    __slots__ = ("offset", "pending", "held", "limit")

    def __init__(self, limit: int):
        self.offset = 0  # every byte before this was delivered
        self.pending: dict[int, bytes] = {}
        self.held = 0
        self.limit = limit

    def add(self, off: int, data: bytes) -> bytes:
        """Take one frame; returns the bytes it makes contiguous (maybe b"")."""
        end = off + len(data)
        if end <= self.offset:
            return b""  # a retransmission
        if off > self.offset:
            prev = self.pending.get(off)
            if prev is None or len(prev) < len(data):
                self.held += len(data) - (len(prev) if prev else 0)
                if self.held > self.limit:
                    raise rec.OversizedMessage(f"more than {self.limit} CRYPTO bytes behind a hole")
                self.pending[off] = data
            return b""
        out = bytearray(data[self.offset - off :])
        self.offset = end
        pending = self.pending
        while pending:
            ready = sorted(k for k in pending if k <= self.offset)
            if not ready:
                break
            for k in ready:
                chunk = pending.pop(k)
                self.held -= len(chunk)
                if k + len(chunk) > self.offset:
                    out += chunk[self.offset - k :]
                    self.offset = k + len(chunk)
        return bytes(out)


def is_initial(data: bytes) -> bool:
    """A long-header Initial packet of a QUIC version whose Initial keys tlssniff can derive."""
    if len(data) < 7 or data[0] & 0xC0 != 0xC0:
        return False
    version = int.from_bytes(data[1:5], "big")
    if initial_salt(version) is None:
        return False
    code = (data[0] >> 4) & 3
    return code == (1 if version == qp.VERSION_2 else 0)


class QuicConnection:
    """The UDP-flow application for QUIC; ``datagram`` is fed each datagram of the flow."""

    transport = "quic"

    __slots__ = (
        "tracker", "version", "keys", "crypto", "largest", "zero_rtt", "retry", "retries",
        "other_keys", "opened", "undecryptable", "done", "end_reason",
    )

    def __init__(self, version: int, dcid: bytes, max_message: int):
        self.tracker = HandshakeTracker(max_message)
        self.version = version
        self.keys: tuple[DirectionKeys, DirectionKeys] | None = initial_keys(version, dcid)
        self.crypto = (CryptoStream(max_message), CryptoStream(max_message))
        self.largest = [-1, -1]
        self.zero_rtt = 0  # 0-RTT packets the client sent
        self.retry = False
        self.retries = 0  # Retry packets seen (a server may send several; see datagram)
        # Keys of the Retries not followed and of the original DCID: tried when the current
        # keys do not open an Initial (at most MAX_OTHER_KEYS).
        self.other_keys: list[tuple[DirectionKeys, DirectionKeys]] = []
        self.opened = 0  # Initial packets decrypted
        self.undecryptable = 0
        self.done = False
        self.end_reason: int | None = None  # an END_* of flow/limits.py

    @property
    def early_data_seen(self) -> bool:
        return self.zero_rtt > 0

    def datagram(self, from_client: bool, data: bytes, frame: int) -> bool:
        """One UDP datagram of the flow; True when it carried handshake packets."""
        try:
            packets = qp.split_datagram(data)
        except DecodeError:
            return False
        t = self.tracker
        for pkt in packets:
            kind = pkt.kind
            if kind == qp.INITIAL:
                self._initial(from_client, data, pkt, frame)
            elif kind == qp.HANDSHAKE or kind == qp.SHORT:
                # Encrypted with keys a passive observer lacks: what the tracker needs is that
                # it came after the ServerHello (the handshake went on / finished).
                if from_client:
                    t.client_events(_ENCRYPTED, frame)
                else:
                    t.server_events(_ENCRYPTED, frame)
            elif kind == qp.ZERO_RTT:
                if from_client:
                    self.zero_rtt += 1
            elif kind == qp.RETRY and not from_client:
                self._retry(pkt)
            if t.done:
                self.done = True
                break
        return True

    def _retry(self, pkt: qp.Packet) -> None:
        """RFC 9000 §17.2.5: the client's next Initials go to the Retry's SCID, and both sides
        derive Initial keys from it (RFC 9001 §5.2). A client follows at most one Retry
        (§17.2.5.2) and none once the server's Initial came; a server may still send several
        (one per Initial it saw, retransmissions included), and the capture may miss the one the
        client followed: the others' keys are kept to try, not switched to."""
        self.retries += 1
        keys = initial_keys(pkt.version, pkt.scid)
        if keys is None:
            return
        if not self.retry and self.largest[1] < 0:
            self.retry = True
            if self.keys is not None:
                self._keep(self.keys)
            self.keys = keys
        else:
            self._keep(keys)

    def _keep(self, keys: tuple[DirectionKeys, DirectionKeys]) -> None:
        if len(self.other_keys) < MAX_OTHER_KEYS:
            self.other_keys.append(keys)

    def _initial(self, from_client: bool, data: bytes, pkt: qp.Packet, frame: int) -> None:
        side = 0 if from_client else 1
        keys = self.keys
        res = unprotect_with(data, pkt, keys, side, self.largest[side])
        if res is None:
            # A Retry the capture missed, or compatible version negotiation (RFC 9368): the
            # client's new DCID (or the server's new version) gives the keys; else one of the
            # Retries not followed (or the original DCID's keys, when the client followed none).
            candidates: list[tuple[DirectionKeys, DirectionKeys] | None] = list(self.other_keys)
            if from_client:
                candidates.insert(0, initial_keys(pkt.version, pkt.dcid))
            for alt in candidates:
                res = unprotect_with(data, pkt, alt, side, self.largest[side])
                if res is not None:
                    if keys is not None and alt is not None:
                        if alt in self.other_keys:
                            self.other_keys.remove(alt)
                        self._keep(keys)
                    self.keys = alt
                    break
            if res is None:
                self.undecryptable += 1
                return
        pn, payload = res
        self.opened += 1
        if pn > self.largest[side]:
            self.largest[side] = pn
        t = self.tracker
        try:
            frames, close = qp.initial_frames(payload)
            stream = self.crypto[side]
            for off, chunk in sorted(frames):
                new = stream.add(off, chunk)
                if new:
                    t.handshake_bytes(from_client, new, frame)
        except DecodeError as err:
            t.fail(err)
            return
        if close is not None and 0x100 <= close <= 0x1FF:
            # RFC 9001 §4.8: a TLS alert travels as CONNECTION_CLOSE with error 0x100 + alert.
            ev = [(rec.ALERT, ALERT_FATAL, close & 0xFF)]
            if from_client:
                t.client_events(ev, frame)
            else:
                t.server_events(ev, frame)

    def finish(self, reason: int) -> None:
        self.end_reason = reason
        self.tracker.finish()
        self.done = True


def unprotect_with(data, pkt, keys, side, largest):
    if keys is None:
        return None
    try:
        return qp.unprotect(data, pkt, keys[side], largest)
    except DecodeError:
        return None
