"""Exit statuses and the one domain exception family.

The CLI boundary (:func:`tlssniff.cli.main`) turns every exception into one line on stderr and
one of the :class:`ExitCode` statuses; nothing else calls ``sys.exit``.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Every exit status of ``tlssniff``, one meaning per number (README, Exit status)."""

    OK = 0
    INTERNAL = 1  # a bug: the one "internal error" line (TLSSNIFF_DEBUG=1 for the traceback)
    USAGE = 2  # bad usage or unusable input: unknown option, bad value, unreadable capture
    BELOW_THRESHOLD = 3  # a server (or the probe's lowest rate) is under --fail-under
    CONTRADICTION = 4  # verify: tshark contradicts a verdict
    UNREACHABLE = 5  # probe: a target cannot be probed (resolve, refused, timeout, not TLS...)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class TlssniffError(Exception):
    """An error the user can act on. ``str(err)`` is the whole message, one line."""

    exit_code: int = ExitCode.INTERNAL


class CaptureError(TlssniffError):
    """A capture file cannot be read at all (missing, not a capture, corrupt header)."""

    exit_code = ExitCode.USAGE


class UsageError(TlssniffError):
    """A bad option value or combination, found after parsing (the message names the option)."""

    exit_code = ExitCode.USAGE
