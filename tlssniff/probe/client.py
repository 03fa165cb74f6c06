"""One probe connection: TCP, optional STARTTLS, a TLS handshake through memory BIOs, a clean close.

Memory BIOs (``SSLContext.wrap_bio``) instead of ``wrap_socket`` so that the probe sees the
server's first bytes (a server that speaks no TLS is named as such, with what it said), bounds
every wait by one deadline, and controls the end of the connection:

- After a TLS 1.3 handshake the session is not resumable until the server's NewSessionTicket
  arrives, after the handshake; :meth:`_Tls.wait_ticket` reads (protocol-neutral: no request is
  sent) until the session holds a ticket or a short deadline passes.
- Every connection ends with the client's close_notify. OpenSSL marks a session not resumable
  when a connection using it is freed without one (``ssl_clear_bad_session``), on both sides;
  a probe that skipped it would measure its own sloppiness.

:func:`connect` never raises for network or TLS trouble: the :class:`Outcome` carries a
:class:`ProbeFailure` whose ``kind`` says what went wrong, and the engine decides whether that
stops the probe (the first connection to a target) or is one failed attempt among many.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from dataclasses import dataclass

from tlssniff.errors import ExitCode, TlssniffError
from tlssniff.probe.target import Target, endpoint
from tlssniff.starttls import PROTOCOLS, LineIO, StartTlsFailure

#: The mechanisms, in the order they are probed, and what each makes the client present.
MECHANISMS = ("id", "ticket", "psk")
OFFERS = {"id": "session_id", "ticket": "ticket", "psk": "psk"}
DESCRIPTIONS = {
    "id": "TLS 1.2 session id (tickets off)",
    "ticket": "TLS 1.2 session ticket",
    "psk": "TLS 1.3 PSK (ticket)",
}

TICKET_WAIT = 2.0  # seconds, at most, for a TLS 1.3 NewSessionTicket after the handshake
CLOSE_WAIT = 1.0  # seconds, at most, for the server to close after our close_notify

# OpenSSL reasons meaning "no protocol version in common": the mechanism is unavailable, the
# target is fine.
_VERSION_REASONS = {
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_SSL_VERSION",
    "TLSV1_ALERT_INAPPROPRIATE_FALLBACK",
}


class ProbeFailure(TlssniffError):
    """A target problem the user can act on; ``kind`` names it for callers and JSON.

    kinds: resolve, refused, unreachable, timeout, closed, not_tls, starttls, certificate,
    version (no TLS version in common for this mechanism), tls (another handshake failure).
    """

    exit_code = ExitCode.UNREACHABLE

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


#: Failures that mean "this target cannot be probed at all" when they hit its first connection.
FATAL_KINDS = frozenset(
    {"resolve", "refused", "unreachable", "timeout", "closed", "not_tls", "starttls", "certificate"}
)


def make_context(mechanism: str, *, verify: bool = True,
                 cafile: str | None = None) -> ssl.SSLContext:
    """The client context of one mechanism; sessions only resume within their own context."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if cafile:
            ctx.load_verify_locations(cafile)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if mechanism == "id":
        ctx.options |= ssl.OP_NO_TICKET  # no SessionTicket extension: only the id can resume
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif mechanism == "ticket":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif mechanism == "psk":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        raise ValueError(f"unknown mechanism {mechanism!r}")
    return ctx


@dataclass(slots=True)
class Outcome:
    """One connection as the client saw it."""

    started: float  # epoch seconds, before the TCP connect
    client: str | None = None  # our ip:port, once connected
    handshake_done: float | None = None  # epoch seconds
    seconds: float | None = None  # handshake duration (ClientHello to Finished)
    reused: bool = False  # SSLObject.session_reused: the server accepted the session
    version: str | None = None
    session: ssl.SSLSession | None = None  # after the handshake (TLS 1.3: after the ticket)
    error: ProbeFailure | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.handshake_done is not None


def connect(
    target: Target,
    ctx: ssl.SSLContext,
    *,
    sni: str | None,
    timeout: float,
    session: ssl.SSLSession | None = None,
    starttls: str | None = None,
    want_ticket: bool = False,
    barrier: threading.Barrier | None = None,
) -> Outcome:
    """Connect, handshake (resuming ``session`` if given), close cleanly; never raises for
    network or TLS trouble (see :attr:`Outcome.error`).

    With ``barrier``, the TCP connection (and STARTTLS) is made first, then all connections of
    the burst wait for each other and send their ClientHellos at the same moment.
    """
    out = Outcome(started=time.time())
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        _tcp_connect(sock, target, timeout)
        out.client = endpoint(*sock.getsockname()[:2])
        if starttls:
            negotiate_starttls(sock, starttls, time.monotonic() + timeout, target.label)
        if barrier is not None:
            try:
                barrier.wait(timeout)
            except threading.BrokenBarrierError:
                pass  # another connection of the burst failed: go anyway
        tls = _Tls(sock, ctx, sni, session, target.label)
        t0 = time.monotonic()
        deadline = t0 + timeout
        tls.handshake(deadline, timeout)
        out.seconds = time.monotonic() - t0
        out.handshake_done = time.time()
        out.reused = tls.obj.session_reused
        out.version = tls.obj.version()
        if want_ticket and out.version == "TLSv1.3":
            tls.wait_ticket(min(deadline, time.monotonic() + TICKET_WAIT))
        out.session = tls.obj.session
        tls.close(min(deadline, time.monotonic() + CLOSE_WAIT))
    except ProbeFailure as err:
        out.error = err
    except OSError as err:  # after the handshake: the server reset us while we closed
        if out.handshake_done is None:
            out.error = ProbeFailure("closed", f"{target.label}: {err.strerror or err}")
    finally:
        sock.close()
    return out


def _tcp_connect(sock: socket.socket, target: Target, timeout: float) -> None:
    sock.settimeout(timeout)
    label = target.label
    try:
        sock.connect((target.ip, target.port))
    except ConnectionRefusedError:
        raise ProbeFailure(
            "refused", f"{label}: connection refused (nothing listens on {target.endpoint})"
        ) from None
    except (socket.timeout, TimeoutError):
        raise ProbeFailure(
            "timeout",
            f"{label}: no answer to the TCP connection within {timeout:g} s "
            "(host down, or the port is filtered)",
        ) from None
    except OSError as err:
        # EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL, ...: the kernel's words say which.
        kind = "refused" if err.errno == errno.ECONNRESET else "unreachable"
        raise ProbeFailure(
            kind, f"{label}: cannot connect to {target.endpoint}: {err.strerror}") from None


class _Tls:
    """The TLS side of one connection: an SSLObject over memory BIOs, pumped by hand."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, sni: str | None,
                 session: ssl.SSLSession | None, label: str):
        self.sock = sock
        self.label = label
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni, session=session)
        self.server_spoke = False

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _feed(self, deadline: float) -> None:
        """Move one chunk from the socket into OpenSSL; EOF becomes the BIO's EOF."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout()
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            self.inc.write_eof()
            return
        if not self.server_spoke:
            self.server_spoke = True
            # A TLS server answers a ClientHello with a handshake (22) or alert (21) record of
            # major version 3; anything else is another protocol talking.
            if data[0] not in (21, 22) or (len(data) > 1 and data[1] != 3):
                raise ProbeFailure("not_tls", f"{self.label}: the server does not speak TLS "
                                   f"here: it answered {describe_bytes(data)}")
        self.inc.write(data)

    def handshake(self, deadline: float, timeout: float) -> None:
        try:
            while True:
                try:
                    self.obj.do_handshake()
                    self._flush()
                    return
                except ssl.SSLWantReadError:
                    self._flush()
                    self._feed(deadline)
        except ProbeFailure:
            raise
        except ssl.SSLCertVerificationError as err:
            raise ProbeFailure(
                "certificate",
                f"{self.label}: certificate verification failed: {err.verify_message} "
                "(--cafile FILE trusts another CA; --insecure skips verification)",
            ) from None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError):
            if not self.server_spoke:
                raise ProbeFailure(
                    "closed", f"{self.label}: the server closed the connection without answering "
                    "the ClientHello (not a TLS port, or the server refuses this client)",
                ) from None
            raise ProbeFailure(
                "closed", f"{self.label}: the server closed the connection during the handshake"
            ) from None
        except ssl.SSLError as err:
            reason = err.reason or str(err)
            if reason in _VERSION_REASONS:
                raise ProbeFailure("version", f"{self.label}: no TLS version in common "
                                   f"({reason.lower().replace('_', ' ')})") from None
            raise ProbeFailure("tls", f"{self.label}: TLS handshake failed: "
                               f"{reason.lower().replace('_', ' ')}") from None
        except (socket.timeout, TimeoutError):
            what = "the handshake did not complete" if self.server_spoke else "no TLS answer"
            raise ProbeFailure("timeout", f"{self.label}: {what} within {timeout:g} s") from None
        except OSError as err:
            raise ProbeFailure("closed", f"{self.label}: {err.strerror or err}") from None

    def wait_ticket(self, deadline: float) -> None:
        """TLS 1.3: read until the session holds a ticket (NewSessionTicket) or the deadline."""
        while True:
            try:
                self.obj.read(65536)  # application data, if the server talks first: ignored
            except ssl.SSLWantReadError:
                pass  # every buffered record processed (tickets included)
            except (ssl.SSLError, OSError):
                return
            session = self.obj.session
            if session is not None and session.has_ticket:
                return
            try:
                self._flush()
                self._feed(deadline)
            except (OSError, ProbeFailure):
                return

    def close(self, deadline: float) -> None:
        """Send close_notify, then wait (bounded) for the server to close its side."""
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        try:
            self._flush()
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                if not self.sock.recv(65536):
                    return
        except OSError:
            return


def describe_bytes(data: bytes) -> str:
    """The first line a non-TLS server sent, printable, with a hint at what it is."""
    first = data[:80].split(b"\n", 1)[0].rstrip(b"\r")
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in first)
    hint = ""
    if data.startswith(b"220") or data.startswith(b"* OK") or data.startswith(b"+OK"):
        hint = " (a plain-text greeting: try --starttls smtp, ftp, imap or pop3)"
    elif data.startswith(b"HTTP/"):
        hint = " (plain HTTP)"
    elif data.startswith(b"SSH-"):
        hint = " (an SSH server)"
    return f"{text!r}{hint}"


# --------------------------------------------------------------------------------------------
# STARTTLS


def negotiate_starttls(sock: socket.socket, proto: str, deadline: float, label: str) -> None:
    """Speak the plain-text protocol up to the point where the server expects a ClientHello
    (the protocol's ``negotiate`` in :data:`tlssniff.starttls.PROTOCOLS`)."""
    entry = PROTOCOLS.get(proto)
    if entry is None or entry.negotiate is None:
        raise ValueError(f"unknown STARTTLS protocol {proto!r}")
    io = LineIO(sock, deadline)
    try:
        entry.negotiate(io)
        if io.buf:
            raise io.fail("the server sent data after agreeing to start TLS")
    except StartTlsFailure as err:
        raise ProbeFailure("starttls", f"{label}: STARTTLS ({proto}) failed: {err}") from None
