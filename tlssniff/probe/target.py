"""Targets: ``HOST``, ``HOST:PORT``, ``[V6]:PORT``; resolved once to one address.

Every connection of a probe goes to the address resolved here, so the capture filter of the
self-check and the matrix rows name exactly the machines that answered.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tlssniff.errors import UsageError
from tlssniff.starttls import PROBE_PROTOCOLS, PROTOCOLS

DEFAULT_PORTS: dict[str | None, int] = {None: 443}
DEFAULT_PORTS.update((name, PROTOCOLS[name].default_port) for name in PROBE_PROTOCOLS)


@dataclass(slots=True, frozen=True)
class Target:
    spec: str  # as given on the command line
    host: str  # name or address, without brackets
    port: int
    ip: str  # resolved address
    family: int

    @property
    def endpoint(self) -> str:
        """``ip:port`` exactly as the passive analyzer prints servers."""
        return endpoint(self.ip, self.port)

    @property
    def label(self) -> str:
        """What the user typed, with the port made explicit."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def is_address(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def endpoint(ip: str, port: int) -> str:
    ip = ipaddress.ip_address(ip.split("%", 1)[0]).compressed
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_host_port(spec: str, default_port: int) -> tuple[str, int]:
    spec = spec.strip()
    if not spec:
        raise UsageError("empty target")
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        if not sep:
            raise UsageError(f"{spec}: missing ']' after an IPv6 address")
        if rest and not rest.startswith(":"):
            raise UsageError(f"{spec}: expected [ADDRESS]:PORT")
        port_text = rest[1:] if rest else ""
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    elif spec.count(":") > 1:  # a bare IPv6 address
        host, port_text = spec, ""
    else:
        host, port_text = spec, ""
    if not host:
        raise UsageError(f"{spec}: no host")
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UsageError(f"{spec}: port must be a number from 1 to 65535")
        return host, int(port_text)
    return host, default_port


def resolve(spec: str, starttls: str | None = None) -> Target:
    """Parse and resolve one target; a name that does not resolve is the user's error."""
    from tlssniff.probe.client import ProbeFailure  # one error family for target problems

    host, port = split_host_port(spec, DEFAULT_PORTS[starttls])
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ProbeFailure("resolve", f"{spec}: cannot resolve {host!r}: {err.strerror}") from None
    # Prefer IPv4 when a name has both: one address per target, the first IPv4 one.
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return Target(spec=spec, host=host, port=port, ip=sockaddr[0], family=family)
