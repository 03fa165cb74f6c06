"""The probe's plan and its results.

Per mechanism (``id``: TLS 1.2 session id with tickets disabled; ``ticket``: TLS 1.2 session
ticket; ``psk``: TLS 1.3 PSK) and per target:

1. **issue**: one full handshake; the session it yields must present something for the mechanism
   (a session id, a ticket), else the mechanism is reported *not issued* and not attempted;
2. **sequential**: N resumptions of that session, one after another;
3. **concurrent**: N resumptions in bursts of C connections that present the same session at the
   same moment (TCP connected first, then all ClientHellos released by a barrier). Every burst
   gets a freshly issued session, so bursts do not depend on each other or on step 2;
4. **matrix** (several targets): for every pair (issuer, acceptor), sessions issued by one node
   are presented to the other, each session once;
5. **ages**: one fresh session per age, presented once when it is that old.

TLS 1.3 tickets and "the same session": RFC 8446 §8.1 lets a server accept each ticket once
(anti-replay; OpenSSL's stateful tickets, e.g. nginx with ``ssl_session_tickets off``, work that
way), and §C.4 tells clients to use a ticket once. Presenting one ticket N times, or C times at
once, then measures the server's replay policy, not its cache: a single-use server accepts the
first use only. The probe reports exactly what happened and names the pattern
(``single_use_tickets``) instead of calling it a failure.

Sessions only resume within the SSLContext that created them: one context per mechanism, shared
by all targets, which is also what the node matrix needs.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from tlssniff.probe.client import (
    FATAL_KINDS,
    MECHANISMS,
    OFFERS,
    Outcome,
    ProbeFailure,
    connect,
    make_context,
)
from tlssniff.probe.target import Target, resolve


@dataclass
class ProbeConfig:
    targets: list[str]
    sni: str | None = None
    mechanisms: tuple[str, ...] = MECHANISMS
    attempts: int = 10
    concurrency: int = 5
    ages: tuple[float, ...] = ()
    starttls: str | None = None
    timeout: float = 5.0
    verify: bool = True
    cafile: str | None = None
    matrix_attempts: int = 2  # independent sessions per (issuer, acceptor) cell
    self_check: str = "auto"  # auto (when root), on, off
    capture_iface: str | None = None
    write: str | None = None  # keep the self-check capture here

    def to_dict(self) -> dict:
        return {
            "targets": self.targets,
            "sni": self.sni,
            "mechanisms": list(self.mechanisms),
            "attempts": self.attempts,
            "concurrency": self.concurrency,
            "ages": list(self.ages),
            "starttls": self.starttls,
            "timeout": self.timeout,
            "verify": self.verify,
            "matrix_attempts": self.matrix_attempts,
        }


@dataclass(slots=True)
class Attempt:
    """One connection of the probe: what was presented, and the client's view of the answer."""

    mechanism: str
    phase: str  # issue, sequential, concurrent, matrix, age
    target: str  # label of the target connected to
    server: str  # its ip:port
    issuer: str | None  # label of the target that issued the presented session
    offered: str  # what the client presented: none, session_id, ticket, psk
    outcome: Outcome
    burst: int | None = None
    age: float | None = None  # seconds since the issuing handshake completed
    planned_age: float | None = None  # ages phase: the age this attempt was scheduled for
    note: str | None = None
    wire: dict | None = None  # the passive analyzer's verdict of this connection (self-check)

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def accepted(self) -> bool:
        return self.outcome.ok and self.outcome.reused

    @property
    def handshake(self) -> str:
        """The client's view in the passive verdict's words: the mechanism, full, or failed."""
        if not self.outcome.ok:
            return "failed"
        return OFFERS[self.mechanism] if self.outcome.reused else "full"

    def to_dict(self) -> dict:
        o = self.outcome
        return {
            "mechanism": self.mechanism,
            "phase": self.phase,
            "target": self.target,
            "server": self.server,
            "client": o.client,
            "issuer": self.issuer,
            "offered": self.offered,
            "handshake": self.handshake,
            "resumed": self.accepted,
            "version": o.version,
            "ts": round(o.started, 6),
            "handshake_seconds": None if o.seconds is None else round(o.seconds, 6),
            "burst": self.burst,
            "age": None if self.age is None else round(self.age, 3),
            "planned_age": self.planned_age,
            "note": self.note,
            "error": None if o.error is None else {"kind": o.error.kind, "message": str(o.error)},
            "wire": self.wire,
        }


@dataclass(slots=True)
class Rate:
    attempts: int = 0
    completed: int = 0  # handshakes that finished (the rate's denominator)
    accepted: int = 0
    errors: int = 0

    @classmethod
    def of(cls, attempts: list[Attempt]) -> Rate:
        r = cls(attempts=len(attempts))
        for a in attempts:
            if a.ok:
                r.completed += 1
                r.accepted += a.accepted
            else:
                r.errors += 1
        return r

    @property
    def rate(self) -> float | None:
        return self.accepted / self.completed if self.completed else None

    def to_dict(self) -> dict:
        return {
            "attempts": self.attempts,
            "completed": self.completed,
            "accepted": self.accepted,
            "errors": self.errors,
            "rate": None if self.rate is None else round(self.rate, 4),
        }


@dataclass
class MechanismRun:
    """One mechanism against one target."""

    mechanism: str
    target: Target
    issue: Attempt | None = None
    session: ssl.SSLSession | None = None
    status: str = "pending"  # ok, not_issued, unavailable (no version in common / error)
    reason: str | None = None
    sequential: list[Attempt] = field(default_factory=list)
    concurrent: list[Attempt] = field(default_factory=list)
    ages: list[Attempt] = field(default_factory=list)
    issued_at: float | None = None  # when the issue handshake completed (epoch)
    # Full handshakes that issued the sessions of the bursts and of the ages.
    extra_issues: list[Attempt] = field(default_factory=list)

    @property
    def ticket_lifetime(self) -> int | None:
        s = self.session
        return s.ticket_lifetime_hint if s is not None and s.has_ticket else None

    def attempts(self) -> list[Attempt]:
        head = [self.issue] if self.issue is not None else []
        return head + self.extra_issues + self.sequential + self.concurrent + self.ages

    def to_dict(self) -> dict:
        s = self.session
        return {
            "mechanism": self.mechanism,
            "target": self.target.label,
            "server": self.target.endpoint,
            "status": self.status,
            "reason": self.reason,
            "version": self.issue.outcome.version if self.issue else None,
            "session_id_len": len(s.id) if s is not None else None,
            "ticket": bool(s is not None and s.has_ticket),
            "ticket_lifetime": self.ticket_lifetime,
            "sequential": Rate.of(self.sequential).to_dict(),
            "concurrent": Rate.of(self.concurrent).to_dict(),
            "ages": [
                {"age": a.planned_age, "measured_age": None if a.age is None else round(a.age, 3),
                 "offered": a.offered, "accepted": a.accepted, "note": a.note,
                 "error": None if a.outcome.error is None else str(a.outcome.error)}
                for a in sorted(self.ages, key=lambda a: a.planned_age or 0)
            ],
        }


@dataclass
class ProbeResult:
    config: ProbeConfig
    targets: list[Target]
    runs: list[MechanismRun] = field(default_factory=list)
    matrix: dict[str, dict[tuple[str, str], list[Attempt]]] = field(default_factory=dict)
    self_check: object | None = None  # tlssniff.probe.selfcheck.SelfCheck
    started: float = 0.0
    elapsed: float = 0.0
    matrix_seconds: float | None = None  # from the start until the matrix was known
    matrix_issues: list[Attempt] = field(default_factory=list)
    t0: float = 0.0  # time.monotonic() at the start

    def run(self, mechanism: str, target: Target) -> MechanismRun:
        for r in self.runs:
            if r.mechanism == mechanism and r.target is target:
                return r
        raise KeyError((mechanism, target.label))

    def attempts(self) -> list[Attempt]:
        out = []
        for r in self.runs:
            out += r.attempts()
        out += self.matrix_issues
        for cells in self.matrix.values():
            for attempts in cells.values():
                out += attempts
        return out


# --------------------------------------------------------------------------------------------


class Prober:
    def __init__(self, config: ProbeConfig, progress: Callable[[str], None] | None = None):
        self.c = config
        self.progress = progress or (lambda message: None)
        self.contexts = {
            m: make_context(m, verify=config.verify, cafile=config.cafile)
            for m in config.mechanisms
        }

    def sni_for(self, target: Target) -> str | None:
        if self.c.sni:
            return self.c.sni
        return None if target.is_address else target.host

    def connect(self, mechanism: str, target: Target, session=None, *, want_ticket=False,
                barrier=None) -> Outcome:
        return connect(
            target, self.contexts[mechanism], sni=self.sni_for(target), timeout=self.c.timeout,
            session=session, starttls=self.c.starttls, want_ticket=want_ticket, barrier=barrier,
        )

    def issue(self, mechanism: str, target: Target,
              phase: str = "issue") -> tuple[Attempt, ssl.SSLSession | None, str | None]:
        """A full handshake; returns the attempt, a usable session or None, and why not."""
        out = self.connect(mechanism, target, want_ticket=(mechanism == "psk"))
        attempt = Attempt(mechanism, phase, target.label, target.endpoint, None, "none", out)
        if not out.ok:
            return attempt, None, str(out.error)
        if out.reused:  # cannot happen without a session; say so if it does
            attempt.note = "the server claims resumption of nothing"
        s = out.session
        if mechanism == "id":
            if s is None or not s.id:
                return attempt, None, "the server issued no session id (no session cache)"
        elif mechanism == "ticket":
            if s is None or not s.has_ticket:
                return attempt, None, "the server issued no session ticket"
        elif s is None or not s.has_ticket:
            return attempt, None, "the server sent no TLS 1.3 NewSessionTicket"
        return attempt, s, None

    def resume(self, mechanism: str, target: Target, session: ssl.SSLSession, phase: str,
               issuer: Target, issued_at: float, *, barrier=None, burst=None) -> Attempt:
        offered = OFFERS[mechanism]
        note = None
        if mechanism == "psk" and not _client_offers_tls13(session):
            # OpenSSL's client drops a TLS 1.3 ticket older than its lifetime hint (RFC 8446
            # §4.6.1) instead of offering it: the connection is a plain full handshake.
            offered, note = "none", "ticket past its lifetime hint: the client did not offer it"
        out = self.connect(mechanism, target, session, barrier=barrier)
        age = out.started - issued_at if issued_at else None
        return Attempt(mechanism, phase, target.label, target.endpoint, issuer.label, offered,
                       out, burst=burst, age=age, note=note)

    # -- phases --------------------------------------------------------------------------------

    def run(self, result: ProbeResult) -> None:
        targets = result.targets
        for m in self.c.mechanisms:
            for t in targets:
                result.runs.append(MechanismRun(m, t))
        self.progress("full handshakes")
        self._per_target(targets, lambda t: self._issue_all(result, t))
        self._check_targets(result)
        self.progress("sequential resumptions")
        self._per_target(targets, lambda t: self._sequential(result, t))
        self.progress("concurrent resumptions")
        for r in result.runs:
            if r.status == "ok":
                self._concurrent(r)
        if len(targets) > 1:
            self.progress("node matrix")
            for m in self.c.mechanisms:
                result.matrix[m] = self._matrix(result, m)
            result.matrix_seconds = time.monotonic() - result.t0
        if self.c.ages:
            self.progress("session ages")
            self._ages(result)

    def _per_target(self, targets: list[Target], fn) -> None:
        if len(targets) == 1:
            fn(targets[0])
            return
        with ThreadPoolExecutor(max_workers=min(len(targets), 16)) as pool:
            for f in [pool.submit(fn, t) for t in targets]:
                f.result()

    def _issue_all(self, result: ProbeResult, target: Target) -> None:
        for m in self.c.mechanisms:
            run = result.run(m, target)
            run.issue, run.session, why = self.issue(m, target)
            if run.session is not None:
                run.status = "ok"
                run.issued_at = run.issue.outcome.handshake_done
            elif run.issue.ok:
                run.status, run.reason = "not_issued", why
            else:
                run.status, run.reason = "unavailable", why

    def _check_targets(self, result: ProbeResult) -> None:
        """A target none of whose handshakes completed cannot be probed: say why and stop."""
        for t in result.targets:
            runs = [result.run(m, t) for m in self.c.mechanisms]
            if any(r.issue is not None and r.issue.ok for r in runs):
                continue
            errors = [r.issue.outcome.error for r in runs if r.issue and r.issue.outcome.error]
            fatal = [e for e in errors if e.kind in FATAL_KINDS]
            if fatal:
                raise fatal[0]
            if errors and all(e.kind == "version" for e in errors):
                raise ProbeFailure(
                    "version", f"{t.label}: no TLS version in common for the mechanisms probed "
                    f"({', '.join(self.c.mechanisms)})")
            if errors:
                raise errors[0]

    def _sequential(self, result: ProbeResult, target: Target) -> None:
        for m in self.c.mechanisms:
            run = result.run(m, target)
            if run.status != "ok":
                continue
            for _ in range(self.c.attempts):
                run.sequential.append(
                    self.resume(m, target, run.session, "sequential", target, run.issued_at))

    def _concurrent(self, run: MechanismRun) -> None:
        n, c = self.c.attempts, max(1, self.c.concurrency)
        for burst in range(math.ceil(n / c)):
            size = min(c, n - burst * c)
            issue, session, _ = self.issue(run.mechanism, run.target, phase="concurrent")
            issue.burst = burst
            issue.note = "issues the session of this burst"
            run.extra_issues.append(issue)
            if session is None:  # the server stopped issuing: count the burst as failed
                for _ in range(size):
                    run.concurrent.append(Attempt(
                        run.mechanism, "concurrent", run.target.label, run.target.endpoint,
                        run.target.label, OFFERS[run.mechanism],
                        Outcome(started=time.time(), error=ProbeFailure(
                            "tls",
                            f"no session to present: {issue.outcome.error or 'not issued'}")),
                        burst=burst))
                continue
            barrier = threading.Barrier(size)
            issued_at = issue.outcome.handshake_done
            with ThreadPoolExecutor(max_workers=size) as pool:
                futures = [
                    pool.submit(self.resume, run.mechanism, run.target, session, "concurrent",
                                run.target, issued_at, barrier=barrier, burst=burst)
                    for _ in range(size)
                ]
                run.concurrent += [f.result() for f in futures]

    def _matrix(self, result: ProbeResult, mechanism: str) -> dict[tuple[str, str], list[Attempt]]:
        """Sessions issued by each node, each presented once to each node."""
        targets = result.targets
        k = max(1, self.c.matrix_attempts)
        issuers = [t for t in targets if result.run(mechanism, t).status == "ok"]
        cells: dict[tuple[str, str], list[Attempt]] = {}
        if not issuers:
            return cells
        jobs = [(i, j) for i in issuers for j in targets for _ in range(k)]
        with ThreadPoolExecutor(max_workers=min(len(jobs), 8)) as pool:
            issued = list(pool.map(lambda job: self.issue(mechanism, job[0], "matrix"), jobs))
            pairs = [(job, iss) for job, iss in zip(jobs, issued)]
            for (i, j), _ in pairs:
                cells.setdefault((i.label, j.label), [])

            def attempt(pair):
                (i, j), (issue, session, why) = pair
                if session is None:
                    return (i, j), None
                return (i, j), self.resume(mechanism, j, session, "matrix", i,
                                           issue.outcome.handshake_done)

            for (i, j), a in pool.map(attempt, pairs):
                if a is not None:
                    cells[(i.label, j.label)].append(a)
        result.matrix_issues += [iss[0] for iss in issued]
        return cells

    def _ages(self, result: ProbeResult) -> None:
        runs = [r for r in result.runs if r.status == "ok"]
        jobs = [(r, age) for r in runs for age in sorted(self.c.ages)]
        if not jobs:
            return
        with ThreadPoolExecutor(max_workers=min(len(jobs), 16)) as pool:
            issued = list(pool.map(lambda job: self.issue(job[0].mechanism, job[0].target, "age"),
                                   jobs))
            plan = []
            for (run, age), (issue, session, _why) in zip(jobs, issued):
                issue.note = f"issues the session presented at age {age:g} s"
                run.extra_issues.append(issue)
                if session is not None:
                    plan.append((issue.outcome.handshake_done + age, run, age, session, issue))

            def at(item):
                when, run, age, session, issue = item
                delay = when - time.time()
                if delay > 0:
                    time.sleep(delay)
                a = self.resume(run.mechanism, run.target, session, "age", run.target,
                                issue.outcome.handshake_done)
                a.planned_age = age
                return run, a

            plan.sort(key=lambda p: p[0])
            with ThreadPoolExecutor(max_workers=max(1, min(len(plan), 32))) as timed:
                for run, a in timed.map(at, plan):
                    run.ages.append(a)


def _client_offers_tls13(session: ssl.SSLSession) -> bool:
    """Whether OpenSSL's client will put this TLS 1.3 ticket in its ClientHello now
    (``tls_construct_ctos_psk``: age in whole seconds, minus one, against the lifetime hint)."""
    age = int(time.time()) - session.time
    if age > 0:
        age -= 1
    return session.ticket_lifetime_hint >= age


def run_probe(config: ProbeConfig, progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Resolve the targets, probe them (capturing the probe's own traffic when it can), and
    return everything measured; raises :class:`ProbeFailure` when a target cannot be probed."""
    from tlssniff.probe import selfcheck

    targets = [resolve(spec, config.starttls) for spec in config.targets]
    seen = {}
    for t in targets:
        if t.endpoint in seen:
            raise ProbeFailure("resolve", f"{t.spec} and {seen[t.endpoint]} are the same "
                               f"server ({t.endpoint})")
        seen[t.endpoint] = t.spec
    result = ProbeResult(config, targets)
    result.started = time.time()
    result.t0 = time.monotonic()
    prober = Prober(config, progress)
    capture = selfcheck.start_capture(config, targets)
    try:
        prober.run(result)
    finally:
        pcap = capture.stop() if capture is not None else None
    result.elapsed = time.monotonic() - result.t0
    result.self_check = selfcheck.check(result, capture, pcap)
    return result
