"""What every STARTTLS protocol module shares: the registry entry, the watcher's state, the
limits and the line reader the probe negotiates with."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

MAX_PLAINTEXT = 64 * 1024  # both directions together, before the session is given up on
MAX_PENDING = 8 * 1024  # an incomplete line / message held per direction


class State(Protocol):
    """The part of :class:`tlssniff.starttls.StartTls` a protocol's ``client_unit`` reads and
    sets: the hint the first bytes gave, whether IRC was seen, and the upgrade request."""

    hint: str
    irc: bool
    upgrade: Optional[str]


class StartTlsFailure(Exception):
    """The server did not agree to start TLS (the message says why, for the probe)."""


class LineIO:
    """Lines of a plain-text protocol over a connected socket, before a deadline (the probe's
    active side; the passive side never does I/O)."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline
        self.buf = b""

    def line(self) -> str:
        while b"\n" not in self.buf:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise self.fail("no answer in time" if not self.buf else "the answer is cut short")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, TimeoutError):
                raise self.fail(
                    "no greeting in time (an implicit-TLS port? then drop --starttls)"
                    if not self.buf else "the answer is cut short"
                ) from None
            except OSError as err:
                raise self.fail(err.strerror or str(err)) from None
            if not data:
                raise self.fail("the server closed the connection")
            self.buf += data
            if len(self.buf) > 65536:
                raise self.fail("an endless answer line")
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self) -> tuple[int, str]:
        """An SMTP/FTP reply: ``NNN-text`` lines then ``NNN text``; (code, all text)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) >= 3 and line[:3].isdigit() and line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def fail(self, why: str) -> StartTlsFailure:
        return StartTlsFailure(why)


@dataclass(frozen=True)
class StartTlsProtocol:
    """One protocol that upgrades a plain-text session to TLS in the same TCP stream.

    ``greets``: the server's first bytes announce it (server-speaks-first protocols);
    ``opens``: the client's first bytes do. ``client_unit`` consumes one client unit (line,
    message, packet) of a session announced as this protocol: its length, 0 for more bytes,
    None when the bytes are not the protocol; it sets ``state.upgrade`` on the request.
    ``negotiate`` speaks the client's part up to the ClientHello (``tlssniff probe
    --starttls``); None: recognised passively only.
    """

    name: str
    default_port: int
    reference: str
    client_unit: Callable[[State, bytearray], Optional[int]]
    greets: Optional[Callable[[bytes], bool]] = None
    opens: Optional[Callable[[bytes], bool]] = None
    negotiate: Optional[Callable[[LineIO], None]] = None
