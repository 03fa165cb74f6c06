"""``tlssniff probe``: make resumption happen against live servers and measure it.

Heavy imports (the probe engine, ssl, rich tables) happen inside the command function.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tlssniff import options
from tlssniff.starttls import PROBE_PROTOCOLS
from tlssniff.units import parse_rate

_STARTTLS_NAMES = ", ".join(PROBE_PROTOCOLS[:-1]) + " or " + PROBE_PROTOCOLS[-1]

_FORMATS = ("table", "json")


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


Targets = Annotated[list[str], typer.Argument(
    help="HOST[:PORT] of each server (several: nodes serving one name; "
    "[V6]:PORT for IPv6). The probe connects to these only.", show_default=False)]
Sni = Annotated[Optional[str], typer.Option(
    help="Server name to send (and verify); default: the host when it is a name.",
    metavar="NAME")]
Mechanism = Annotated[Optional[list[str]], typer.Option(
    "--mechanism", "-m",
    help="Mechanisms to probe, comma separated: id (TLS 1.2 session id, tickets off), "
    "ticket (TLS 1.2 session ticket), psk (TLS 1.3). Default: all three.", metavar="MECH")]
Attempts = Annotated[int, typer.Option(
    "--attempts", "-n",
    help="Resumptions per mechanism: N sequential, and N concurrent.", metavar="N")]
Concurrency = Annotated[int, typer.Option(
    "--concurrency", "-c", help="Connections per concurrent burst (same session).",
    metavar="N")]
Ages = Annotated[Optional[str], typer.Option(
    help="Session ages in seconds to bracket the effective timeout, e.g. 1,10,60,300 "
    "(the probe then lasts as long as the largest).", metavar="SECONDS")]
Starttls = Annotated[Optional[str], typer.Option(
    help=f"Upgrade a plain-text protocol first: {_STARTTLS_NAMES}.", metavar="PROTOCOL")]
Timeout = Annotated[float, typer.Option(
    help="Seconds for each connection and handshake.", metavar="SECONDS")]
Insecure = Annotated[bool, typer.Option(
    "--insecure", "-k", help="Do not verify certificates (verification is on by default).")]
Cafile = Annotated[Optional[str], typer.Option(
    help="Trust the CA certificates in this PEM file instead of the system's.",
    metavar="FILE.pem")]
MatrixAttempts = Annotated[int, typer.Option(
    help="Several targets: sessions per (issuer, acceptor) pair of the node matrix.",
    metavar="N")]
Format = Annotated[str, typer.Option(
    "--format", "-f", parser=options.choice(*_FORMATS), metavar="FORMAT",
    help="table or json.")]
FailUnder = Annotated[Optional[float], typer.Option(
    "--fail-under", parser=options.for_option(parse_rate), metavar="RATE",
    help="Exit with status 3 when the lowest accept rate measured is below RATE "
    "(90% or 0.9; a bare number is a fraction, 1 = 100%).")]
Capture = Annotated[Optional[str], typer.Option(
    help="Self-check on this interface (default when root: the route to the targets).",
    metavar="IFACE")]
Write = Annotated[Optional[str], typer.Option(
    help="Keep the self-check capture in FILE (.pcapng or .pcap).", metavar="FILE")]
SelfCheck = Annotated[bool, typer.Option(
    help="Capture the probe's own traffic (when root or with --capture) and classify it "
    "with the passive analyzer, beside the client's view.")]


def probe(
    targets: Targets,
    sni: Sni = None,
    mechanism: Mechanism = None,
    attempts: Attempts = 10,
    concurrency: Concurrency = 5,
    ages: Ages = None,
    starttls: Starttls = None,
    timeout: Timeout = 5.0,
    insecure: Insecure = False,
    cafile: Cafile = None,
    matrix_attempts: MatrixAttempts = 2,
    fmt: Format = "table",
    fail_under: FailUnder = None,
    capture: Capture = None,
    write: Write = None,
    self_check: SelfCheck = True,
) -> None:
    """Prove a server's (or a cluster's) resumption behaviour now: session id, TLS 1.2 ticket
    and TLS 1.3 PSK, sequential and concurrent, by session age, and across nodes.

    Exit status: 0 done; 2 bad options; 3 a rate below --fail-under; 5 a target cannot be
    probed (unresolvable, unreachable, refused, certificate, not TLS).

    Examples:

      tlssniff probe example.com

      tlssniff probe 10.0.0.2:443 10.0.0.3:443 --sni www.example.com

      tlssniff probe mail.example.com --starttls smtp -m id,psk -f json
    """
    config = _config(targets, sni, mechanism, attempts, concurrency, ages, starttls, timeout,
                     insecure, cafile, matrix_attempts, capture, write, self_check)
    _run(config, fmt, fail_under)


def _config(targets, sni, mechanism, attempts, concurrency, ages, starttls, timeout, insecure,
            cafile, matrix_attempts, capture, write, self_check):
    """The probe's options, checked, as its :class:`~tlssniff.probe.engine.ProbeConfig`."""
    from tlssniff.errors import UsageError
    from tlssniff.probe.client import MECHANISMS
    from tlssniff.probe.engine import ProbeConfig

    mechs = _split(mechanism) or list(MECHANISMS)
    bad = [m for m in mechs if m not in MECHANISMS]
    if bad:
        raise UsageError(f"--mechanism: unknown {', '.join(bad)} (use id, ticket, psk)")
    mechs = [m for m in MECHANISMS if m in mechs]
    if attempts < 1 or concurrency < 1 or matrix_attempts < 1:
        raise UsageError("--attempts, --concurrency and --matrix-attempts must be at least 1")
    if timeout <= 0:
        raise UsageError("--timeout must be positive")
    if starttls is not None and starttls not in PROBE_PROTOCOLS:
        raise UsageError(f"--starttls must be {_STARTTLS_NAMES}, not {starttls!r}")
    age_list: list[float] = []
    for part in _split([ages] if ages else []):
        try:
            age = float(part.rstrip("s"))
        except ValueError:
            raise UsageError(f"--ages takes seconds like 1,10,60, not {part!r}") from None
        if age < 0:
            raise UsageError("--ages must not be negative")
        age_list.append(age)
    if insecure and cafile:
        raise UsageError("--insecure and --cafile contradict each other")
    return ProbeConfig(
        targets=list(targets), sni=sni, mechanisms=tuple(mechs), attempts=attempts,
        concurrency=concurrency, ages=tuple(sorted(set(age_list))), starttls=starttls,
        timeout=timeout, verify=not insecure, cafile=cafile, matrix_attempts=matrix_attempts,
        self_check="auto" if self_check else "off", capture_iface=capture, write=write,
    )


def _run(config, fmt: str, threshold: float | None) -> None:
    """Probe, print the result, hold it to --fail-under."""
    import json
    import sys

    from tlssniff.output import display
    from tlssniff.probe.engine import run_probe
    from tlssniff.probe.report import BelowThreshold, document, findings, print_report, score

    err = display.console(stderr=True)
    progress = None
    if sys.stderr.isatty() and fmt == "table":
        def progress(step: str) -> None:
            err.print(f"[dim]probe: {step}...[/dim]")

    result = run_probe(config, progress)
    found = findings(result)
    if fmt == "json":
        sys.stdout.write(json.dumps(document(result, found), indent=2) + "\n")
    else:
        print_report(display.console(), result, found)
    if threshold is not None:
        lowest = score(result)
        if lowest is None or lowest < threshold:
            shown = "no rate measured" if lowest is None else f"lowest rate {100 * lowest:.0f}%"
            raise BelowThreshold(f"{shown} is under --fail-under {100 * threshold:.0f}%")
