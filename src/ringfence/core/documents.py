"""The JSON documents of the CLI contract, built in one place so the CLI and the API print the same thing.

``ringfence impact --json`` and ``GET /v1/estates/{name}/impact`` hand back the very same document, and so on
for ``check``, ``spof``, ``concentration``, ``plan`` and ``recover`` (the drill document is
:func:`ringfence.core.drills.drill_document`). Keys and order follow docs/cli.md; lists are sorted by id unless the
contract says otherwise.

Pure: the builders only read domain results. The domain modules are imported lazily, so a CLI command that
prints none of these documents does not pay for importing them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ringfence.core.errors import Problem
    from ringfence.core.estate import Estate
    from ringfence.core.impact import BlastRadius, SinglePointOfFailure, SupplierConcentration
    from ringfence.core.planner import Plan
    from ringfence.core.recovery import RecoveryPlan


def by_tier_json(counts: Mapping[int, int] | Mapping[int, float]) -> dict[str, Any]:
    """``{1: 2, 3: 0}`` → ``{"1": 2, "3": 0}``: JSON object keys are strings, in tier order."""
    return {str(tier): value for tier, value in sorted(counts.items())}


def check_document(estate: Estate, warnings: Sequence[Problem], *, ok: bool = True) -> dict[str, Any]:
    """``ringfence check --json``: the counts, plus the estate's name and its warnings as sentences."""
    return {
        "ok": ok,
        "assets": len(estate.assets),
        "services": len(estate.services),
        "suppliers": estate.declared_suppliers,
        "estate": estate.name,
        "warnings": [str(w) for w in warnings],
    }


def impact_document(radius: BlastRadius) -> dict[str, Any]:
    """``ringfence impact --json``."""
    return {
        "failed": list(radius.failed),
        "services_down": [{"id": s.id, "tier": s.tier} for s in radius.services_down],
        "assets_down": list(radius.assets_down),
        "by_tier": by_tier_json(radius.by_tier),
    }


def spof_document(spofs: Sequence[SinglePointOfFailure]) -> dict[str, Any]:
    """``ringfence spof --json``, in the order found (worst tier, most services, then ref)."""
    return {
        "spofs": [{"ref": s.ref, "services": [x.id for x in s.services], "worst_tier": s.worst_tier} for s in spofs]
    }


def concentration_document(rows: Sequence[SupplierConcentration]) -> dict[str, Any]:
    """``ringfence concentration --json``: the effect of each ``supplier:ID`` failing."""
    return {
        "suppliers": [
            {
                "id": r.id,
                "services_down": [s.id for s in r.services_down],
                "share_by_tier": by_tier_json(r.share_by_tier),
            }
            for r in rows
        ]
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    """``ringfence plan --json`` (plus the extra keys people and dashboards use)."""
    from ringfence.core.planner import format_stratum

    return {
        "update": plan.update.id,
        "release": plan.update.release,
        "targets": plan.targets,
        "strata_keys": list(plan.strata_keys),
        "rings": [
            {
                "index": ring.index,
                "name": ring.name,
                "assets": list(ring.assets),
                "bake": ring.bake,
                "size": ring.size,
                "strata": sorted({format_stratum(plan.strata[s]) for s in ring.strata}),
                "tiers": {str(t): n for t, n in ring.tier_counts().items()},
                "canary": ring.canary,
                "why": ring.why,
            }
            for ring in plan.rings
        ],
        "canary_rings": plan.canary_rings,
        "warnings": [
            {
                "kind": w.kind,
                "owners": list(w.owners),
                "members": list(w.members),
                "k": w.k,
                "message": w.message,
            }
            for w in plan.warnings
        ],
        "notes": list(plan.notes),
        "minimum_duration": plan.minimum_duration,
        "worst_case_rollback": plan.worst_case_rollback,
        "hold_override": (
            {
                "release": plan.hold_override.release,
                "reason": plan.hold_override.reason,
                "justification": plan.hold_override.justification,
            }
            if plan.hold_override
            else None
        ),
    }


def recovery_document(plan: RecoveryPlan) -> dict[str, Any]:
    """``ringfence recover --json``: restore steps, continuity plans (most critical first), RTOs at risk."""
    from ringfence.core.recovery import EVIDENCE_LABEL

    return {
        "failed": list(plan.failed),
        "steps": [{"step": s.step, "restore": list(s.restore)} for s in plan.steps],
        "continuity": [
            {"service": c.service, "tier": c.tier, "rto": c.rto, "plan": c.plan, "contacts": list(c.contacts)}
            for c in plan.continuity
        ],
        "rto_at_risk": [
            {"service": r.service, "tier": r.tier, "rto": r.rto, "restored_by": r.restored_by} for r in plan.rto_at_risk
        ],
        "notes": list(plan.notes),
        "parallel": plan.parallel,
        "step_seconds": plan.step_seconds,
        "evidence": EVIDENCE_LABEL,
    }


__all__ = [
    "by_tier_json",
    "check_document",
    "concentration_document",
    "impact_document",
    "plan_document",
    "recovery_document",
    "spof_document",
]
