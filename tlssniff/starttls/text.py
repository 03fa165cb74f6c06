"""The line-based STARTTLS protocols: SMTP (RFC 3207), IMAP (RFC 9051 §6.2.1), POP3 (RFC 2595
§4), FTP (RFC 4217 §4), NNTP (RFC 4642) and IRC (IRCv3 ``tls``, reply 670).

They share one line parser: SMTP, NNTP and IRC send the same ``STARTTLS`` command (the
greeting, or IRC's registration commands, tell them apart), and an FTP server greets as an
SMTP one does (``220``).
"""

from __future__ import annotations

import re
from typing import Optional

from tlssniff.starttls.base import LineIO, State

IRC_COMMANDS = (b"CAP ", b"NICK ", b"PASS ", b"USER ", b"STARTTLS")

_TEXT_COMMANDS = (
    (re.compile(rb"^STARTTLS\s*$", re.I), "starttls"),  # smtp, irc or nntp: told by the server
    (re.compile(rb"^\S+ STARTTLS\s*$", re.I), "imap"),
    (re.compile(rb"^STLS\s*$", re.I), "pop3"),
    (re.compile(rb"^AUTH (TLS|SSL|TLS-C|TLS-P)\s*$", re.I), "ftp"),
)


def client_unit(state: State, buf: bytearray) -> Optional[int]:
    """One client line of any of the text protocols."""
    nl = buf.find(b"\n")
    if nl < 0:
        return 0
    line = bytes(buf[:nl]).rstrip(b"\r")
    up = line.upper()
    if any(up.startswith(c) for c in (b"NICK ", b"USER ", b"CAP ")):
        state.irc = True
    hint = state.hint
    for pattern, name in _TEXT_COMMANDS:
        if pattern.match(line):
            if name == "starttls":
                name = "irc" if state.irc else "nntp" if hint == "nntp" else "smtp"
            elif name == "ftp" and hint != "smtp":
                continue
            state.upgrade = name
            break
    return nl + 1


def server_line_is_irc(line: bytes) -> bool:
    """An IRC prefix, or IRCv3's RPL_STARTTLS (the server's lines tell IRC from SMTP/NNTP)."""
    return line[:1] == b":" or b" 670 " in line


# -- detectors --------------------------------------------------------------------------------


def smtp_greets(data: bytes) -> bool:
    return data[:4] in (b"220 ", b"220-")  # or ftp: the client's request tells


def imap_greets(data: bytes) -> bool:
    return data[:4] == b"* OK" or data[:9] == b"* PREAUTH"


def pop3_greets(data: bytes) -> bool:
    return data[:3] == b"+OK"


def nntp_greets(data: bytes) -> bool:
    return data[:4] in (b"200 ", b"201 ")


def irc_greets(data: bytes) -> bool:
    return data[:1] == b":" or data[:6] == b"NOTICE"


def irc_opens(data: bytes) -> bool:
    stripped = data.lstrip()
    return any(stripped[: len(c)].upper() == c for c in IRC_COMMANDS)


# -- the probe's side ---------------------------------------------------------------------------


def _smtp_or_ftp(io: LineIO, smtp: bool) -> None:
    code, text = io.reply()
    if code != 220:
        raise io.fail(f"greeting {text.splitlines()[0]!r}")
    if smtp:
        io.send("EHLO tlssniff-probe")
        code, text = io.reply()
        if code != 250:
            raise io.fail(f"EHLO answered {text.splitlines()[-1]!r}")
        if "STARTTLS" not in text.upper():
            raise io.fail("the server does not offer STARTTLS in its EHLO answer")
        io.send("STARTTLS")
        want = 220
    else:
        io.send("AUTH TLS")
        want = 234
    code, text = io.reply()
    if code != want:
        raise io.fail(f"answered {text.splitlines()[-1]!r}")


def smtp_negotiate(io: LineIO) -> None:
    _smtp_or_ftp(io, smtp=True)


def ftp_negotiate(io: LineIO) -> None:
    _smtp_or_ftp(io, smtp=False)


def imap_negotiate(io: LineIO) -> None:
    greeting = io.line()
    if not greeting.upper().startswith("* OK"):
        raise io.fail(f"greeting {greeting!r}")
    io.send("a1 STARTTLS")
    while True:
        line = io.line()
        if line.startswith("a1 "):
            break
    if not line.upper().startswith("A1 OK"):
        raise io.fail(f"answered {line!r}")


def pop3_negotiate(io: LineIO) -> None:
    greeting = io.line()
    if not greeting.startswith("+OK"):
        raise io.fail(f"greeting {greeting!r}")
    io.send("STLS")
    line = io.line()
    if not line.startswith("+OK"):
        raise io.fail(f"answered {line!r}")
