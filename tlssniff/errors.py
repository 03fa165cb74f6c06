"""The one domain exception family; the CLI turns it into a one-line message and an exit code."""


class TlssniffError(Exception):
    """An error the user can act on. ``str(err)`` is the whole message, one line."""

    exit_code = 1


class CaptureError(TlssniffError):
    """A capture file cannot be read at all (missing, not a capture, corrupt header)."""

    exit_code = 2


class UsageError(TlssniffError):
    exit_code = 2
