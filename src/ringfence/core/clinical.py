"""What an outage means for care, as plain records: the clinical tiers, a service's continuity action, and
the one rule for an RTO at risk.

Standard library only, so the incident model (:mod:`ringfence.core.incident`) and the store that reads it back
can use them without loading numpy and scipy; the recovery planner (:mod:`ringfence.core.recovery`) and the
impact questions (:mod:`ringfence.core.impact`) compute them and re-export them under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

TIERS = (1, 2, 3, 4)
"""The clinical tiers, most critical first (1 = life-critical)."""


@dataclass(frozen=True)
class ContinuityAction:
    """What staff of a down service do until it is back: its continuity plan and whom to call."""

    service: str
    name: str
    tier: int
    rto: int | None
    plan: str | None
    contacts: tuple[str, ...]


def is_rto_at_risk(remaining: int, estimated: int) -> bool:
    """Whether a service still down is at risk of missing its RTO: ``remaining`` seconds left until the
    deadline, ``estimated`` seconds until it is restored.

    At risk only when the time left is *less* than the time needed: with exactly enough time it would be
    restored at its deadline, and restored at the deadline meets an RTO. The one rule for ``ringfence
    recover``, ``ringfence incident declare``/``list``/``show``, the API and the dashboard.
    """
    return remaining < estimated


def time_basis(measured_on: date | None) -> str:
    """How a time to restore is known, as every output (recover, packs, incidents) says it: ``measured
    2026-03-04`` (the oldest restore test behind it) or ``estimate``."""
    return "estimate" if measured_on is None else f"measured {measured_on.isoformat()}"


__all__ = ["TIERS", "ContinuityAction", "is_rto_at_risk", "time_basis"]
