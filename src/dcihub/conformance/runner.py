"""Runs the server checks against a target and turns their findings into a `Report`: one
verdict per requirement (pass / fail / skip), with the exchanges that show it."""

from __future__ import annotations

import datetime
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dcihub.client.core import ClientCore
from dcihub.standard.profiles import PROFILES

from .checks import CHECKS, Check
from .contract import Contract, ContractLoadError, load_contract
from .judge import Ctx, Finding, Skip
from .requirements import TIERS, Requirement, load_requirements
from .session import Exchange, Receiver, Session, Target, TargetError

__all__ = ["CheckOutcome", "Report", "RequirementOutcome", "run_server", "requirements_for"]

Progress = Callable[[str, int, int], None]


@dataclass
class CheckOutcome:
    name: str
    title: str
    tier: str
    verifies: tuple[str, ...]
    status: str  # "ran" | "skipped" | "error"
    reason: str
    findings: list[Finding]
    exchanges: list[Exchange]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "tier": self.tier,
            "verifies": list(self.verifies),
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "findings": [
                {
                    "requirement": f.requirement,
                    "passed": f.passed,
                    "detail": f.detail,
                    "exchange": f.exchange,
                }
                for f in self.findings
            ],
            "exchanges": [e.as_dict() for e in self.exchanges],
        }


@dataclass
class RequirementOutcome:
    requirement: Requirement
    status: str  # "pass" | "fail" | "skip"
    reasons: list[str] = field(default_factory=list)  # why it failed / was skipped
    checks: list[str] = field(default_factory=list)  # the checks that judged it
    evidence: list[tuple[str, int]] = field(default_factory=list)  # (check, exchange index)

    def as_dict(self) -> dict[str, Any]:
        r = self.requirement
        return {
            "id": r.id,
            "tier": r.tier,
            "statement": r.statement,
            "spec": r.spec,
            "status": self.status,
            "reasons": self.reasons,
            "checks": self.checks,
            "evidence": [{"check": c, "exchange": i} for c, i in self.evidence],
        }


@dataclass
class Report:
    actor: str  # "server" | "client"
    registry: str
    target: str
    tiers: tuple[str, ...]
    started: str
    seconds: float
    requirements: list[RequirementOutcome]
    checks: list[CheckOutcome]
    spec: str | None = None

    def outcome(self, rid: str) -> RequirementOutcome:
        return next(o for o in self.requirements if o.requirement.id == rid)

    def with_status(self, status: str) -> list[str]:
        return [o.requirement.id for o in self.requirements if o.status == status]

    @property
    def failed(self) -> list[str]:
        return self.with_status("fail")

    @property
    def core_failed(self) -> bool:
        return any(o.status == "fail" and o.requirement.tier == "core" for o in self.requirements)

    @property
    def core_unjudged(self) -> bool:
        """The core tier was asked for, yet not one of its requirements could be shown to hold
        (the target did not answer, say): no ground for calling it conformant."""
        core = [o for o in self.requirements if o.requirement.tier == "core"]
        return bool(core) and not any(o.status == "pass" for o in core)

    @property
    def conformant(self) -> bool:
        return not self.core_failed and not self.core_unjudged

    @property
    def exit_code(self) -> int:
        """0: no core requirement failed and at least one held (security / robustness failures
        are reported but do not fail the run); 1: a core requirement failed, or none could be
        judged."""
        return 0 if self.conformant else 1

    def counts(self) -> dict[str, int]:
        return {s: len(self.with_status(s)) for s in ("pass", "fail", "skip")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "registry": self.registry,
            "target": self.target,
            "tiers": list(self.tiers),
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "spec": self.spec,
            "counts": self.counts(),
            "conformant": self.conformant,
            "exit_code": self.exit_code,
            "requirements": [o.as_dict() for o in self.requirements],
            "checks": [c.as_dict() for c in self.checks],
        }


def requirements_for(actor: str, registry: str, tiers: Iterable[str]) -> list[Requirement]:
    wanted = set(tiers)
    return [
        r
        for r in load_requirements()
        if r.actor == actor and r.tier in wanted and r.applies_to(registry)
    ]


def check_tiers(tiers: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(tiers)) or TIERS
    unknown = [t for t in chosen if t not in TIERS]
    if unknown:
        raise TargetError(f"unknown tier(s) {', '.join(unknown)}; choose from {', '.join(TIERS)}")
    return chosen


def run_server(
    target: Target,
    tiers: Iterable[str] = TIERS,
    progress: Progress | None = None,
    checks: Iterable[Check] | None = None,
) -> Report:
    """Run the server checks of `tiers` against `target`; the report of every requirement."""
    chosen = check_tiers(tiers)
    if target.registry not in PROFILES:
        raise TargetError(
            f"unknown registry {target.registry!r}; choose from {', '.join(PROFILES)}"
        )
    profile = PROFILES[target.registry]
    contract: Contract | None = None
    if target.spec_dir is not None:
        try:
            contract = load_contract(target.spec_dir, target.registry)
        except (OSError, ContractLoadError, ValueError) as exc:
            raise TargetError(f"--spec {target.spec_dir}: {exc}") from None
    requirements = requirements_for("server", target.registry, chosen)
    selected = {r.id for r in requirements}
    to_run = [c for c in (checks if checks is not None else CHECKS) if c.tier in chosen]
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    session = Session(target)
    receiver = Receiver(target.callback_host, target.callback_port, target.callback_url)
    outcomes: list[CheckOutcome] = []
    skips: dict[str, str] = {}
    try:
        session.token()  # the tester must be able to log in: else nothing can be judged
        session.load_registry_keys()
        receiver.start()
        core = ClientCore(session.settings.merged(sign=False, encrypt=False), session.keys)
        state: dict[str, Any] = {}
        for index, chk in enumerate(to_run):
            if progress is not None:
                progress(chk.name, index, len(to_run))
            ctx = Ctx(session, receiver, profile, core, contract, state, selected)
            outcomes.append(_run_one(chk, ctx, profile))
            skips.update(ctx.skips)
        if progress is not None:
            progress("done", len(to_run), len(to_run))
    finally:
        receiver.stop()
        session.close()
    return Report(
        "server",
        target.registry,
        target.base_url,
        chosen,
        started_at,
        time.monotonic() - started,
        judge(requirements, outcomes, skips),
        outcomes,
        str(target.spec_dir) if target.spec_dir else None,
    )


def _run_one(chk: Check, ctx: Ctx, profile: Any) -> CheckOutcome:
    started = time.monotonic()
    status, reason = "ran", ""
    needs = {
        "txn_status": (profile.has_txn_status, "has no transaction status endpoints"),
        "subscriptions": (profile.has_subscriptions, "has no subscriptions"),
        "special": (bool(profile.special_endpoints), "has no registry-specific calls"),
    }
    try:
        if chk.needs is not None and not needs[chk.needs][0]:
            raise Skip(f"the {profile.title} contract {needs[chk.needs][1]}")
        chk.run(ctx)
    except Skip as exc:
        status, reason = "skipped", str(exc)
    except TargetError as exc:
        status, reason = "error", str(exc)
        ctx.expect(chk.verifies[0], False, f"{chk.name} could not run: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported against the check, the run goes on
        status = "error"
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reason = (
            f"{type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        )
        ctx.expect(chk.verifies[0], False, f"{chk.name} could not complete: {reason}")
    undeclared = {f.requirement for f in ctx.findings} - set(chk.verifies)
    if undeclared:  # a defect of the kit: findings must be declared for coverage
        raise AssertionError(f"check {chk.name} judged undeclared requirements {undeclared}")
    return CheckOutcome(
        chk.name,
        chk.title,
        chk.tier,
        chk.verifies,
        status,
        reason,
        ctx.findings,
        ctx.exchanges,
        time.monotonic() - started,
    )


def judge(
    requirements: list[Requirement], outcomes: list[CheckOutcome], skips: dict[str, str]
) -> list[RequirementOutcome]:
    results = []
    for req in requirements:
        outcome = RequirementOutcome(req, "skip")
        failed: list[str] = []
        passed = False
        for chk in outcomes:
            mine = [f for f in chk.findings if f.requirement == req.id]
            if mine and chk.name not in outcome.checks:
                outcome.checks.append(chk.name)
            for finding in mine:
                if finding.passed:
                    passed = True
                else:
                    failed.append(f"{chk.name}: {finding.detail}")
                    if finding.exchange is not None:
                        outcome.evidence.append((chk.name, finding.exchange))
        if failed:
            outcome.status = "fail"
            outcome.reasons = list(dict.fromkeys(failed))
        elif passed:
            outcome.status = "pass"
            for chk in outcomes:
                if chk.name in outcome.checks and chk.exchanges:
                    outcome.evidence.append((chk.name, 0))
                    break
        else:
            why = [skips[req.id]] if req.id in skips else []
            why += [
                f"{c.name}: {c.reason}"
                for c in outcomes
                if req.id in c.verifies and c.status != "ran" and c.reason
            ]
            outcome.reasons = why or ["no check judged it in this run"]
        results.append(outcome)
    return results
