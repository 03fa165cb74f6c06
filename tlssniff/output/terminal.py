"""The rich console tlssniff writes its stdout reports with.

Rich's own ``Console`` exits with status 1 when stdout's reader goes away (``| head -1``);
:class:`OutputConsole` raises ``BrokenPipeError`` instead, which the CLI boundary
(:func:`tlssniff.cli.run`) turns into a quiet exit with status 0, as for every other format.
"""

from __future__ import annotations

import errno

from rich.console import Console


class OutputConsole(Console):
    """A :class:`rich.console.Console` whose closed pipe is an exception, not an exit."""

    def on_broken_pipe(self) -> None:
        self.quiet = True  # nothing more is written to the closed pipe
        raise BrokenPipeError(errno.EPIPE, "stdout was closed")
