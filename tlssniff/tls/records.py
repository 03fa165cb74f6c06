"""TLS record layer for one direction of a connection (sans-IO).

:class:`RecordStream` turns a byte stream into events, reassembling handshake messages that span
records. Its memory is bounded by design: application data and handshake messages tlssniff does
not read (certificates, ...) are skipped without buffering; one record (at most 18 KiB) and one
wanted handshake message (at most ``max_message`` bytes) are all it ever holds.
"""

from __future__ import annotations

from typing import Any, Final

from tlssniff.tls.messages import DecodeError
from tlssniff.tls.wire import (
    CT_ALERT,
    CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC,
    CT_HANDSHAKE,
    CT_HEARTBEAT,
    HS_CLIENT_HELLO,
    HS_NEW_SESSION_TICKET,
    HS_SERVER_HELLO,
    SSL2_MT_CLIENT_HELLO,
)

# Event kinds; events are small tuples ``(kind, a, b)`` because they are made per record.
# Typed with an int kind: compiled, the trackers' tests of the kind are then compares of
# machine ints, not Python-level ones (418,762 in the first 300,000 frames of
# bench/out/handshakes.pcap, 31 M instructions; callgrind, ``analyze -f jsonl``).
Event = tuple[int, Any, Any]
HANDSHAKE: Final = 1  # (HANDSHAKE, msg_type, body or None when the body was skipped)
CCS: Final = 2  # (CCS, None, None)
ALERT: Final = 3  # (ALERT, level, description); level None when the alert is encrypted
APPLICATION_DATA: Final = 4  # (APPLICATION_DATA, record length, None)
ENCRYPTED_HANDSHAKE: Final = 5  # (ENCRYPTED_HANDSHAKE, record length, None)
SSLV2_CLIENT_HELLO: Final = 6  # (SSLV2_CLIENT_HELLO, body, None)
SSLV2_OTHER: Final = 7  # (SSLV2_OTHER, message type, None)

# RFC 5246 §6.2.3: TLSCiphertext.length is at most 2^14 + 2048.
MAX_RECORD: Final = 2**14 + 2048
DEFAULT_MAX_MESSAGE: Final = 64 * 1024

# Messages whose bodies the analysis reads; every other body is skipped unbuffered. The
# per-message test compares the three Final ints (a compiled compare); WANTED is the same set.
WANTED: Final = frozenset({HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_NEW_SESSION_TICKET})


def _record_need(held: bytearray) -> int:
    """Bytes a partial record needs before it can be complete (5 while its header is partial;
    SSL 2.0 headers are parsed on every byte, they come first and are short)."""
    if len(held) < 5 or held[0] & 0x80:
        return len(held) + 1
    return 5 + ((held[3] << 8) | held[4])


class OversizedMessage(DecodeError):
    """A wanted handshake message declares more bytes than the buffering limit allows."""


class RecordStream:
    """Splits one direction into TLS records and handshake messages.

    ``feed`` returns the events the new bytes complete and raises :class:`DecodeError` when the
    bytes are not TLS; after an error the stream must not be fed again.
    """

    __slots__ = (
        "_buf",
        "_record_skip",
        "_hs",
        "_hs_skip",
        "_need",
        "_hs_need",
        "encrypted",
        "encrypt_after_ccs",
        "max_message",
        "_first",
        "records",
    )

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE):
        self._buf = bytearray()
        self._record_skip = 0  # record body bytes still to skip (application data, ciphertext)
        self._hs = bytearray()  # handshake-layer bytes not yet a complete message
        self._hs_skip = 0  # handshake-layer bytes still to skip (an unwanted message body)
        self._need = 0  # bytes ``_buf`` must hold before a record can be complete
        self._hs_need = 0  # bytes ``_hs`` must hold before a message can be complete
        self.encrypted = False  # a ChangeCipherSpec was seen and TLS <= 1.2 rules apply
        self.encrypt_after_ccs = True  # cleared by the caller once TLS 1.3 is negotiated
        self.max_message = max_message
        self._first = True
        self.records = 0

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        if self._record_skip:
            n = len(data)
            if n <= self._record_skip:
                self._record_skip -= n
                return events
            data = data[self._record_skip :]
            self._record_skip = 0
        # Usually nothing is held over and the chunk holds whole records: parse the chunk
        # itself and copy only what is left over into the buffer.
        held = self._buf
        if held:
            # A record spans chunks: parse once it can be complete (one copy; a stream dripped
            # byte by byte costs O(n), not a re-parse per byte).
            held += data
            if len(held) < self._need:
                return events
            buf = bytes(held)
            held.clear()
        else:
            buf = data
        pos = 0
        end = len(buf)
        try:
            while end - pos >= 5:
                if self._first and buf[pos] & 0x80:
                    consumed = self._sslv2(buf, pos, events)
                    if not consumed:
                        break
                    pos += consumed
                    continue
                ctype = buf[pos]
                length = (buf[pos + 3] << 8) | buf[pos + 4]
                if ctype < CT_CHANGE_CIPHER_SPEC or ctype > CT_HEARTBEAT or buf[pos + 1] != 3 or buf[pos + 2] > 4:
                    raise DecodeError(
                        f"not a TLS record header: {bytes(buf[pos:pos + 5]).hex()}"
                    )
                if length > MAX_RECORD:
                    raise DecodeError(f"record of {length} bytes exceeds {MAX_RECORD}")
                self._first = False
                if ctype == CT_APPLICATION_DATA or ctype == CT_HEARTBEAT or (ctype == CT_HANDSHAKE and self.encrypted):
                    # Opaque to a passive observer: count it, skip the body without buffering.
                    self.records += 1
                    events.append(
                        (APPLICATION_DATA if ctype != CT_HANDSHAKE else ENCRYPTED_HANDSHAKE, length, None)
                    )
                    avail = end - pos - 5
                    if avail >= length:
                        pos += 5 + length
                        continue
                    self._record_skip = length - avail
                    pos = end
                    break
                if end - pos - 5 < length:
                    break
                body = buf[pos + 5 : pos + 5 + length]
                pos += 5 + length
                self.records += 1
                if ctype == CT_HANDSHAKE:
                    if not length:
                        raise DecodeError("zero-length handshake record")
                    self._handshake(body, events)
                elif ctype == CT_CHANGE_CIPHER_SPEC:
                    events.append((CCS, None, None))
                    if self.encrypt_after_ccs:
                        self.encrypted = True
                elif ctype == CT_ALERT:
                    if self.encrypted or length != 2:
                        events.append((ALERT, None, None))
                    else:
                        events.append((ALERT, body[0], body[1]))
        finally:
            if pos < end:
                held += buf[pos:]
                self._need = _record_need(held)
        return events

    def held(self) -> int:
        """Bytes buffered: a partial record and a partial wanted handshake message."""
        return len(self._buf) + len(self._hs)

    def handshake_bytes(self, data: bytes) -> list[Event]:
        """Handshake-layer bytes with no record header around them (QUIC CRYPTO stream data,
        reassembled DTLS messages); returns the HANDSHAKE events they complete."""
        events: list[Event] = []
        self._handshake(data, events)
        return events

    def _sslv2(self, buf: bytes, pos: int, events: list[Event]) -> int:
        """An SSL 2.0 record header (2 bytes, high bit set); returns bytes consumed or 0 for more."""
        length = ((buf[pos] & 0x7F) << 8) | buf[pos + 1]
        if length < 1:
            raise DecodeError("empty SSLv2 record")
        if len(buf) - pos - 2 < length:
            if length > MAX_RECORD:
                raise DecodeError(f"SSLv2 record of {length} bytes")
            return 0
        body = buf[pos + 2 : pos + 2 + length]
        self._first = False
        self.records += 1
        if body[0] == SSL2_MT_CLIENT_HELLO:
            events.append((SSLV2_CLIENT_HELLO, body, None))
        else:
            events.append((SSLV2_OTHER, body[0], None))
        return 2 + length

    def _handshake(self, body: bytes, events: list[Event]) -> None:
        if self._hs_skip:
            if len(body) <= self._hs_skip:
                self._hs_skip -= len(body)
                return
            body = body[self._hs_skip :]
            self._hs_skip = 0
        held = self._hs
        if held:
            # A message spans records: parse once it can be complete (see feed).
            held += body
            if len(held) < self._hs_need:
                return
            hs = bytes(held)
            held.clear()
        else:
            hs = body
        pos = 0
        end = len(hs)
        try:
            while end - pos >= 4:
                mtype = hs[pos]
                mlen = (hs[pos + 1] << 16) | (hs[pos + 2] << 8) | hs[pos + 3]
                if mtype == HS_CLIENT_HELLO or mtype == HS_SERVER_HELLO or mtype == HS_NEW_SESSION_TICKET:
                    if mlen > self.max_message:
                        raise OversizedMessage(
                            f"handshake message type {mtype} declares {mlen} bytes "
                            f"(limit {self.max_message})"
                        )
                    if end - pos - 4 < mlen:
                        break
                    events.append((HANDSHAKE, mtype, hs[pos + 4 : pos + 4 + mlen]))
                    pos += 4 + mlen
                else:
                    events.append((HANDSHAKE, mtype, None))
                    avail = end - pos - 4
                    if avail >= mlen:
                        pos += 4 + mlen
                    else:
                        self._hs_skip = mlen - avail
                        pos = end
                        break
        finally:
            if pos < end:
                held += hs[pos:]
                self._hs_need = 4 + ((held[1] << 16) | (held[2] << 8) | held[3]) if len(held) >= 4 else 4
