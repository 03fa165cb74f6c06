"""``tlssniff verify CAPTURE...``: cross-check tlssniff's verdicts with Wireshark's dissector.

Exit status: 0 tshark agrees with every verdict; 4 contradictions found (listed); 2 tshark
missing, or unusable input. tshark runs as nobody when tlssniff runs as root.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tlssniff import options
from tlssniff.errors import CaptureError, ExitCode, UsageError

CONTRADICTION_EXIT = ExitCode.CONTRADICTION


def verify(
    captures: Annotated[list[Path], typer.Argument(
        help="pcap or pcapng files; each is checked on its own.", show_default=False)],
    verdicts: Annotated[Optional[Path], typer.Option(
        "--verdicts", metavar="FILE.jsonl", help="Check these verdicts (tlssniff analyze -f "
        "jsonl output) instead of analyzing the captures again.")] = None,
    fmt: Annotated[str, typer.Option(
        "--format", "-f", parser=options.choice("table", "json"), metavar="FORMAT",
        help="table (default) or json.")] = "table",
) -> None:
    """Re-dissect the hellos with tshark, independently of tlssniff (as nobody when run as
    root), and list every connection where tshark's fields contradict tlssniff's verdict: SNI, version, what the
    client offered, whether the server resumed, or a ClientHello tlssniff did not report.

    Exit status: 0 when they agree, 4 when contradictions are found, 2 when tshark is missing.

    Examples:

      tlssniff verify capture.pcapng

      tlssniff analyze cap.pcap -f jsonl -o v.jsonl

      tlssniff verify cap.pcap --verdicts v.jsonl
    """
    from rich.table import Table

    from tlssniff.output import display
    from tlssniff.output.display import for_terminal, terminal_text
    from tlssniff.verify import verify_captures

    for path in captures:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise CaptureError(f"{path}: no such readable file")
    given = None
    if verdicts is not None:
        try:
            given = [json.loads(line) for line in verdicts.read_text().splitlines() if line.strip()]
        except (OSError, ValueError) as err:
            raise UsageError(f"--verdicts {verdicts}: not a JSONL file of verdicts: {err}") from None
    result = verify_captures([str(p) for p in captures], given)
    if fmt == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        console = display.console()
        if result.contradictions and not sys.stdout.isatty():  # plain lines for scripts
            for c in result.contradictions:
                print(for_terminal(
                    f"{c.client} -> {c.server}: {c.field}: tlssniff {c.tlssniff}, tshark "
                    f"{c.tshark} (tshark frames {','.join(map(str, c.frames))}, {c.capture})", 0))
        elif result.contradictions:
            table = Table(title="Contradictions between tlssniff and tshark", title_justify="left")
            for col in ("client", "server", "field", "tlssniff", "tshark", "tshark frames"):
                table.add_column(col, overflow="fold")
            for c in result.contradictions:
                table.add_row(terminal_text(c.client), terminal_text(c.server),
                              terminal_text(c.field), terminal_text(str(c.tlssniff)),
                              terminal_text(str(c.tshark)), ",".join(map(str, c.frames)))
            console.print(table)
        console.print(for_terminal(result.summary(), 0), markup=False)
    if result.contradictions:
        raise typer.Exit(CONTRADICTION_EXIT)
