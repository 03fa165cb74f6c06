"""Findings: ranked, plain-language diagnostics that explain a resumption rate, with evidence.

A finding names the server(s) it concerns, says what an admin can do about it, and cites the
connections that prove it (client, server, timestamp, frames), so every claim can be checked
in the JSONL output and in Wireshark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(slots=True, frozen=True)
class Evidence:
    """A reference to one connection of the JSONL output (client+server+ts identify it)."""

    client: str
    server: str
    ts: float
    frames: tuple[int, ...] = ()
    capture: str | None = None
    why: str | None = None  # what this connection shows, e.g. "offered at age 312 s, refused"

    def to_dict(self) -> dict:
        return {
            "client": self.client,
            "server": self.server,
            "ts": round(self.ts, 6),
            "frames": list(self.frames),
            "capture": self.capture,
            "why": self.why,
        }


@dataclass(slots=True)
class Finding:
    code: str  # stable identifier, e.g. "cache_timeout"; users filter on it
    severity: Severity
    servers: list[str]  # "ip:port" (with " sni" where the finding is per name)
    message: str  # what is wrong and which directive to look at
    details: dict = field(default_factory=dict)  # code-specific figures, e.g. accepted_max_age
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "servers": self.servers,
            "message": self.message,
            **self.details,
            "evidence": [e.to_dict() for e in self.evidence],
        }
