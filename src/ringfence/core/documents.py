"""The wire documents: each JSON document the CLI prints and the API answers, defined once as a pydantic model.

``ringfence impact --json`` and ``GET /v1/estates/{name}/impact`` hand back the very same document because both
render the one model built here (:func:`impact_document` → :class:`ImpactDocument`): the API names it as its
``response_model`` (so /openapi.json describes it), the CLI prints ``model_dump(mode="json")``. And so on for
``check``, ``spof``, ``concentration``, ``recover``, ``plan``, ``drill``, ``rollout status`` and
``audit verify``. Keys and order follow docs/cli.md (the order of the fields below); lists are sorted by id
unless the contract says otherwise. The class names are the schema names of /openapi.json.

Documents forbid extra keys, so a builder that grows a key without its field fails loudly in tests instead of
losing the key quietly.

Pure: the builders only read domain results (pydantic is a model library, not I/O). The domain modules are
imported lazily, so a CLI command that prints none of these documents does not pay for importing them. The
rollout status is built by the service (:func:`ringfence.service.rollouts.status_document`), which holds the
stored rollout it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from datetime import datetime

    from ringfence.core.audit import ChainReport
    from ringfence.core.drills import DrillReport
    from ringfence.core.errors import Problem
    from ringfence.core.estate import Estate
    from ringfence.core.impact import BlastRadius, SinglePointOfFailure, SupplierConcentration
    from ringfence.core.planner import Plan
    from ringfence.core.recovery import RecoveryPlan
    from ringfence.core.windows import RingSlot


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


V = TypeVar("V", int, float)


def by_tier_json(counts: Mapping[int, V]) -> dict[str, V]:
    """``{1: 2, 3: 0}`` → ``{"1": 2, "3": 0}``: JSON object keys are strings, in tier order."""
    return {str(tier): value for tier, value in sorted(counts.items())}


# ------------------------------------------------------------------------------------------------- check


class CheckDocument(_Document):
    """``ringfence check --json``."""

    ok: bool
    assets: int
    services: int
    suppliers: int
    estate: str
    warnings: list[str]


def check_document(estate: Estate, warnings: Sequence[Problem], *, ok: bool = True) -> CheckDocument:
    """The counts, plus the estate's name and its warnings as sentences."""
    return CheckDocument(
        ok=ok,
        assets=len(estate.assets),
        services=len(estate.services),
        suppliers=estate.declared_suppliers,
        estate=estate.name,
        warnings=[str(w) for w in warnings],
    )


# ---------------------------------------------------------------------------------------------- analysis


class ServiceTier(_Document):
    id: str
    tier: int


class ImpactDocument(_Document):
    """``ringfence impact --json``."""

    failed: list[str]
    services_down: list[ServiceTier]
    assets_down: list[str]
    by_tier: dict[str, int]
    already_down: list[str]
    """Ids of the services and assets above that were down before anything failed, sorted: not the failure's doing."""


def impact_document(radius: BlastRadius) -> ImpactDocument:
    return ImpactDocument(
        failed=list(radius.failed),
        services_down=[ServiceTier(id=s.id, tier=s.tier) for s in radius.services_down],
        assets_down=list(radius.assets_down),
        by_tier=by_tier_json(radius.by_tier),
        already_down=sorted(radius.already_down),
    )


class SinglePointOfFailureOut(_Document):
    ref: str
    services: list[str]
    worst_tier: int


class SpofDocument(_Document):
    """``ringfence spof --json``."""

    spofs: list[SinglePointOfFailureOut]


def spof_document(spofs: Sequence[SinglePointOfFailure]) -> SpofDocument:
    """In the order found (worst tier, most services, then ref)."""
    return SpofDocument(
        spofs=[
            SinglePointOfFailureOut(ref=s.ref, services=[x.id for x in s.services], worst_tier=s.worst_tier)
            for s in spofs
        ]
    )


class SupplierShare(_Document):
    id: str
    services_down: list[str]
    share_by_tier: dict[str, float]


class ConcentrationDocument(_Document):
    """``ringfence concentration --json``."""

    suppliers: list[SupplierShare]


def concentration_document(rows: Sequence[SupplierConcentration]) -> ConcentrationDocument:
    """The effect of each ``supplier:ID`` failing."""
    return ConcentrationDocument(
        suppliers=[
            SupplierShare(
                id=r.id,
                services_down=[s.id for s in r.services_down],
                share_by_tier=by_tier_json(r.share_by_tier),
            )
            for r in rows
        ]
    )


# ---------------------------------------------------------------------------------------------- recovery


class RestoreStepOut(_Document):
    step: int
    restore: list[str]
    seconds: int
    """How long the step takes: its slowest item."""
    basis: str
    """``measured YYYY-MM-DD`` (every item measured; the oldest test) or ``estimate``."""
    measured: list[str]
    """Items with a measured time to restore; the others are estimates."""


class RecoveryContinuityOut(_Document):
    # Not ContinuityOut: that name is the incident's continuity entry (service.incidents), whose keys differ.
    service: str
    tier: int
    rto: int | None
    plan: str | None
    contacts: list[str]


class RtoRiskOut(_Document):
    service: str
    tier: int
    rto: int
    restored_by: int
    basis: str
    """``measured YYYY-MM-DD`` or ``estimate``: how ``restored_by`` is known."""


class RecoveryDocument(_Document):
    """``ringfence recover --json``."""

    failed: list[str]
    steps: list[RestoreStepOut]
    continuity: list[RecoveryContinuityOut]
    rto_at_risk: list[RtoRiskOut]
    notes: list[str]
    parallel: int | None
    step_seconds: int
    evidence: str


def recovery_document(plan: RecoveryPlan) -> RecoveryDocument:
    """Restore steps, continuity plans (most critical first), RTOs at risk."""
    from ringfence.core.recovery import EVIDENCE_LABEL

    return RecoveryDocument(
        failed=list(plan.failed),
        steps=[
            RestoreStepOut(
                step=s.step, restore=list(s.restore), seconds=s.seconds, basis=s.basis, measured=list(s.measured)
            )
            for s in plan.steps
        ],
        continuity=[
            RecoveryContinuityOut(service=c.service, tier=c.tier, rto=c.rto, plan=c.plan, contacts=list(c.contacts))
            for c in plan.continuity
        ],
        rto_at_risk=[
            RtoRiskOut(service=r.service, tier=r.tier, rto=r.rto, restored_by=r.restored_by, basis=r.basis)
            for r in plan.rto_at_risk
        ],
        notes=list(plan.notes),
        parallel=plan.parallel,
        step_seconds=plan.step_seconds,
        evidence=EVIDENCE_LABEL,
    )


# ------------------------------------------------------------------------------------------------- plans


class PlanRing(_Document):
    index: int
    name: str
    assets: list[str]
    bake: int
    size: int
    strata: list[str]
    tiers: dict[str, int]
    canary: bool
    why: str | None


class PlanWarningOut(_Document):
    kind: str
    owners: list[str]
    members: list[str]
    k: int
    message: str


class HoldOverrideOut(_Document):
    release: str
    reason: str
    justification: str


class CalendarRingOut(_Document):
    """When one ring can start at the earliest, and be done (installed and baked) if every gate passes at once."""

    ring: int
    name: str
    ready_at: str
    """When the ring before it is done (the calendar's start for its first ring)."""
    starts_at: str | None
    """The first opening of its change windows from ``ready_at``; None: none within the horizon (it would pause)."""
    done_at: str | None
    waits_seconds: int


class CalendarOut(_Document):
    """The rings' calendar under the update's change windows and freezes (core.windows), times in UTC."""

    zone: str
    start: str
    earliest_completion: str | None
    rings: list[CalendarRingOut]


def calendar_document(names: Sequence[str], slots: Sequence[RingSlot], start: datetime) -> CalendarOut:
    """``slots`` (core.windows.ring_calendar) as a document; ``names`` holds the name of every ring, by index."""
    from datetime import UTC

    from ringfence.core.windows import ZONE

    def iso(at: datetime | None) -> str | None:
        return at.astimezone(UTC).isoformat() if at is not None else None

    last = slots[-1].done_at if slots else start
    return CalendarOut(
        zone=ZONE,
        start=start.astimezone(UTC).isoformat(),
        earliest_completion=iso(last),
        rings=[
            CalendarRingOut(
                ring=slot.ring,
                name=names[slot.ring] if slot.ring < len(names) else f"ring {slot.ring}",
                ready_at=slot.ready_at.astimezone(UTC).isoformat(),
                starts_at=iso(slot.starts_at),
                done_at=iso(slot.done_at),
                waits_seconds=int(slot.waits.total_seconds()),
            )
            for slot in slots
        ],
    )


class PlanDocument(_Document):
    """``ringfence plan --json``."""

    update: str
    release: str
    targets: int
    strata_keys: list[str]
    rings: list[PlanRing]
    canary_rings: int
    warnings: list[PlanWarningOut]
    notes: list[str]
    minimum_duration: int
    worst_case_rollback: int | None
    hold_override: HoldOverrideOut | None
    calendar: CalendarOut | None = None
    """When each ring can start and be done at the earliest, when the update has change windows or freezes."""


def plan_document(plan: Plan, calendar: CalendarOut | None = None) -> PlanDocument:
    """The plan, plus the extra keys people and dashboards use."""
    from ringfence.core.planner import format_stratum

    override = plan.hold_override
    return PlanDocument(
        update=plan.update.id,
        release=plan.update.release,
        targets=plan.targets,
        strata_keys=list(plan.strata_keys),
        rings=[
            PlanRing(
                index=ring.index,
                name=ring.name,
                assets=list(ring.assets),
                bake=ring.bake,
                size=ring.size,
                strata=sorted({format_stratum(plan.strata[s]) for s in ring.strata}),
                tiers={str(t): n for t, n in ring.tier_counts().items()},
                canary=ring.canary,
                why=ring.why,
            )
            for ring in plan.rings
        ],
        canary_rings=plan.canary_rings,
        warnings=[
            PlanWarningOut(kind=w.kind, owners=list(w.owners), members=list(w.members), k=w.k, message=w.message)
            for w in plan.warnings
        ],
        notes=list(plan.notes),
        minimum_duration=plan.minimum_duration,
        worst_case_rollback=plan.worst_case_rollback,
        hold_override=(
            HoldOverrideOut(release=override.release, reason=override.reason, justification=override.justification)
            if override
            else None
        ),
        calendar=calendar,
    )


# ---------------------------------------------------------------------------------------------- rollouts


class RingStatusOut(_Document):
    index: int
    name: str
    canary: bool
    assets: int
    states: dict[str, int]
    strata: list[str]


class RolloutAssetOut(_Document):
    id: str
    ring: int
    state: str
    detail: str | None


class RolloutStatusDocument(_Document):
    """``ringfence rollout status --json``."""

    # Built by ringfence.service.rollouts.status_document, which reads the stored rollout.

    id: str
    update: str
    strategy: str
    phase: str
    ring: int
    paused_from: str | None
    halt_reason: str | None
    version: int
    created_by: str
    approved_by: str | None
    needs_approval: bool
    updated_at: str
    rings: list[RingStatusOut]
    assets: list[RolloutAssetOut]
    pending_decisions: int
    health_source: str = "driver"
    """What judges its health: ``driver`` (its driver's own reading) or the health source it names."""
    driven_by: str | None = None
    """The live worker (``ringfence serve`` or ``ringfence worker``) driving it, when one does (API only)."""
    waiting_for_worker: str | None = None
    """Why nothing drives it while it runs: no live worker runs its driver (API only)."""
    waiting: str | None = None
    """Why it waits though it runs: a ring outside its change window or under a freeze, until when (the
    controller's own sentence, core.windows)."""
    opens_at: str | None = None
    """When the change window it waits for opens (UTC); None when it waits for none, or for an incident's freeze."""
    calendar: CalendarOut | None = None
    """When each ring still ahead can start and be done at the earliest, from now, under its change windows."""


# ------------------------------------------------------------------------------------------------ drills


class DrillStrategyResult(_Document):
    strategy: str
    exposed: int
    failed: int
    services_down: list[ServiceTier]
    halted_at_ring: int | None
    detected_after: float | None
    data_lost: int
    rings: int
    duration: float
    outcome: str
    halt_reason: str | None
    exposed_assets: list[str]
    failed_assets: list[str]
    data_lost_assets: list[str]


class DrillDocument(_Document):
    """``ringfence drill --json``."""

    scenario: str
    targets: int
    affected: int
    results: list[DrillStrategyResult]


def drill_document(report: DrillReport) -> DrillDocument:
    """The drill as the CLI contract's JSON: counts under the contract's keys, id lists under extra keys."""
    return DrillDocument(
        scenario=report.scenario.scenario,
        targets=report.targets,
        affected=report.affected,
        results=[
            DrillStrategyResult(
                strategy=r.strategy,
                exposed=len(r.exposed),
                failed=len(r.failed),
                services_down=[ServiceTier(id=s.id, tier=s.tier) for s in r.services_down],
                halted_at_ring=r.halted_at_ring,
                detected_after=r.detected_after,
                data_lost=len(r.data_lost),
                rings=r.rings,
                duration=r.duration,
                outcome=r.outcome,
                halt_reason=r.halt_reason,
                exposed_assets=list(r.exposed),
                failed_assets=list(r.failed),
                data_lost_assets=list(r.data_lost),
            )
            for r in report.results
        ],
    )


# ------------------------------------------------------------------------------------------------- audit


class AuditVerification(_Document):
    """``ringfence audit verify --json`` and ``GET /v1/audit/verify``, key for key."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str | None


def audit_verification(report: ChainReport) -> AuditVerification:
    return AuditVerification(
        ok=report.ok,
        entries=report.count,
        first_bad_seq=report.first_bad_seq,
        reason=report.reason,
        last_hash=report.last_hash,
    )


__all__ = [
    "AuditVerification",
    "CheckDocument",
    "ConcentrationDocument",
    "DrillDocument",
    "DrillStrategyResult",
    "HoldOverrideOut",
    "ImpactDocument",
    "PlanDocument",
    "PlanRing",
    "PlanWarningOut",
    "RecoveryContinuityOut",
    "RecoveryDocument",
    "RestoreStepOut",
    "RingStatusOut",
    "RolloutAssetOut",
    "RolloutStatusDocument",
    "RtoRiskOut",
    "ServiceTier",
    "SinglePointOfFailureOut",
    "SpofDocument",
    "SupplierShare",
    "audit_verification",
    "by_tier_json",
    "check_document",
    "concentration_document",
    "drill_document",
    "impact_document",
    "plan_document",
    "recovery_document",
    "spof_document",
]
