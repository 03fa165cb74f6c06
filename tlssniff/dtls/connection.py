"""One DTLS association seen passively (sans-IO).

DTLS records (RFC 6347 §4.1) carry handshake fragments (§4.2.2) that may arrive repeated
(retransmission), out of order and split; they are reassembled by ``message_seq`` and
``fragment_offset`` and fed to the same :class:`HandshakeTracker` as TLS over TCP, as the same
record-layer events. A ClientHello loses its DTLS cookie on the way so the TLS parser reads it.
"""

from __future__ import annotations

from tlssniff.tls import records as rec
from tlssniff.tls.handshake import HandshakeTracker
from tlssniff.tls.messages import DecodeError
from tlssniff.tls.wire import (
    CT_ACK,
    CT_ALERT,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    DTLS10,
    DTLS12,
    DTLS13,
    HS_CLIENT_HELLO,
)

DTLS_VERSIONS = frozenset({DTLS10, DTLS12, DTLS13})  # 1.0, 1.2, 1.3 (1.3 records say 1.2)
RECORD_HEADER = 13  # type, version, epoch, sequence_number(48), length
HANDSHAKE_HEADER = 12  # type, length(24), message_seq, fragment_offset(24), fragment_length(24)
MAX_OPEN_MESSAGES = 16  # messages being reassembled at once, per direction


def is_client_hello(data: bytes) -> bool:
    """A datagram that starts with a DTLS handshake record holding a ClientHello fragment."""
    return (
        len(data) >= RECORD_HEADER + HANDSHAKE_HEADER
        and data[0] == CT_HANDSHAKE
        and (data[1] << 8 | data[2]) in DTLS_VERSIONS
        and data[3] == 0
        and data[4] == 0  # epoch 0: in the clear
        and data[RECORD_HEADER] == HS_CLIENT_HELLO
    )


def strip_cookie(body: bytes) -> bytes:
    """A DTLS ClientHello body as the TLS layout (RFC 6347 §4.2.1 adds ``cookie<0..2^8-1>``
    after the session id)."""
    if len(body) < 35:
        raise DecodeError("DTLS ClientHello too short")
    pos = 34 + 1 + body[34]  # version, random, session id
    if pos >= len(body) or pos + 1 + body[pos] > len(body):
        raise DecodeError("DTLS ClientHello cookie past the end")
    return body[:pos] + body[pos + 1 + body[pos] :]


class _Message:
    __slots__ = ("mtype", "buf", "have")

    def __init__(self, mtype: int, length: int):
        self.mtype = mtype
        self.buf = bytearray(length)
        self.have: list[tuple[int, int]] = []  # merged byte ranges received

    def add(self, off: int, data: bytes) -> bool:
        """Add a fragment; True once every byte is there."""
        end = off + len(data)
        self.buf[off:end] = data
        ranges = sorted(self.have + [(off, end)])
        merged = [ranges[0]]
        for a, b in ranges[1:]:
            if a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        self.have = merged
        return merged == [(0, len(self.buf))]


class _Direction:
    __slots__ = ("delivered", "open")

    def __init__(self) -> None:
        self.delivered: set[int] = set()  # message_seq values already fed to the tracker
        self.open: dict[int, _Message] = {}


class DtlsConnection:
    """The UDP-flow application for DTLS; ``datagram`` is fed each datagram of the flow."""

    transport = "udp"
    early_data_seen = False

    __slots__ = ("tracker", "max_message", "sides", "done", "end_reason")

    def __init__(self, max_message: int):
        self.tracker = HandshakeTracker(max_message)
        self.max_message = max_message
        self.sides = (_Direction(), _Direction())
        self.done = False
        self.end_reason: int | None = None  # an END_* of flow/limits.py

    def datagram(self, from_client: bool, data: bytes, frame: int) -> bool:
        if not data or not 20 <= data[0] <= 63:
            # RFC 7983 §7: on a WebRTC 5-tuple, STUN (0-3), RTP/RTCP (128-191) and others share
            # the ports with DTLS (20-63); only DTLS is read.
            return False
        t = self.tracker
        events: list[rec.Event] = []
        try:
            self._records(from_client, data, events)
        except DecodeError as err:
            t.fail(err)
        if events:
            if from_client:
                t.client_events(events, frame)
            else:
                t.server_events(events, frame)
        if t.done:
            self.done = True
        return True

    def _records(self, from_client: bool, data: bytes, events: list[rec.Event]) -> None:
        pos = 0
        n = len(data)
        while pos < n:
            first = data[pos]
            if first & 0xE0 == 0x20:
                # RFC 9147 §4: the unified header of an encrypted DTLS 1.3 record; its length
                # may be absent and a connection id may precede it: the rest is ciphertext.
                events.append((rec.ENCRYPTED_HANDSHAKE, n - pos, None))
                return
            if n - pos < RECORD_HEADER:
                raise DecodeError("truncated DTLS record header")
            version = data[pos + 1] << 8 | data[pos + 2]
            if version not in DTLS_VERSIONS or not CT_CHANGE_CIPHER_SPEC <= first <= CT_ACK:
                raise DecodeError(f"not a DTLS record header: {data[pos:pos + 3].hex()}")
            epoch = data[pos + 3] << 8 | data[pos + 4]
            length = data[pos + 11] << 8 | data[pos + 12]
            body = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
            if len(body) != length:
                raise DecodeError("DTLS record past the datagram's end")
            pos += RECORD_HEADER + length
            if first == CT_HANDSHAKE and epoch == 0:
                self._handshake(from_client, body, events)
            elif first == CT_CHANGE_CIPHER_SPEC:
                events.append((rec.CCS, None, None))
            elif first == CT_ALERT and epoch == 0 and length == 2:
                events.append((rec.ALERT, body[0], body[1]))
            elif first == CT_ALERT:
                events.append((rec.ALERT, None, None))
            elif first == CT_HANDSHAKE:
                events.append((rec.ENCRYPTED_HANDSHAKE, length, None))  # epoch > 0: Finished
            else:
                events.append((rec.APPLICATION_DATA, length, None))

    def _handshake(self, from_client: bool, body: bytes, events: list[rec.Event]) -> None:
        side = self.sides[0 if from_client else 1]
        pos = 0
        while len(body) - pos >= HANDSHAKE_HEADER:
            h = body[pos : pos + HANDSHAKE_HEADER]
            mtype = h[0]
            length = int.from_bytes(h[1:4], "big")
            seq = h[4] << 8 | h[5]
            off = int.from_bytes(h[6:9], "big")
            flen = int.from_bytes(h[9:12], "big")
            frag = body[pos + HANDSHAKE_HEADER : pos + HANDSHAKE_HEADER + flen]
            pos += HANDSHAKE_HEADER + flen
            if len(frag) != flen or off + flen > length:
                raise DecodeError("DTLS handshake fragment past its message")
            if seq in side.delivered:
                continue  # a retransmission
            if mtype not in rec.WANTED:
                side.delivered.add(seq)
                events.append((rec.HANDSHAKE, mtype, None))
                continue
            if length > self.max_message:
                raise rec.OversizedMessage(
                    f"handshake message type {mtype} declares {length} bytes (limit {self.max_message})"
                )
            msg = side.open.get(seq)
            if msg is None or msg.mtype != mtype or len(msg.buf) != length:
                if len(side.open) >= MAX_OPEN_MESSAGES:
                    raise rec.OversizedMessage("too many DTLS handshake messages in reassembly")
                msg = side.open[seq] = _Message(mtype, length)
            if msg.add(off, frag):
                del side.open[seq]
                side.delivered.add(seq)
                out = bytes(msg.buf)
                if mtype == HS_CLIENT_HELLO:
                    out = strip_cookie(out)
                events.append((rec.HANDSHAKE, mtype, out))
        if pos != len(body):
            raise DecodeError("trailing bytes in a DTLS handshake record")

    def finish(self, reason: int) -> None:
        self.end_reason = reason
        self.tracker.finish()
        self.done = True
