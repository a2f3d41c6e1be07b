"""The post-incident review: timeline, impact by tier, time to restore against each RTO, and the cause.

Computed from the incident alone (:mod:`ringfence.core.incident`), as of a moment (or as of its closing, once
closed); rendered as HTML or Markdown by :mod:`ringfence.files.incident_review`.

Pure: standard library and the core; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ringfence.core.clinical import TIERS
from ringfence.core.durations import humanize_duration
from ringfence.core.incident import (
    ClockStatus,
    DownItem,
    Incident,
    IncidentEvent,
    IncidentStatus,
    RtoClock,
    rto_clocks,
    timeline,
    whole_seconds,
)
from ringfence.core.words import count, names


@dataclass(frozen=True)
class RolloutCause:
    """The rollout an incident came from, as the review tells it."""

    rollout_id: str
    update: str | None = None
    release: str | None = None
    halt_reason: str | None = None


@dataclass(frozen=True)
class TierImpact:
    tier: int
    services: tuple[DownItem, ...]
    met: int
    """Restored within their RTO."""
    breached: int
    """Past their RTO, restored late or not at all."""
    not_restored: int = 0
    """Still down when the incident closed (past their RTO or not)."""


@dataclass(frozen=True)
class IncidentReview:
    """The post-incident review: timeline, impact by tier, time to restore against RTO, the cause."""

    incident: Incident
    as_of: datetime
    duration: int
    """Seconds from declaration to closing (or to ``as_of`` while open)."""
    timeline: tuple[IncidentEvent, ...]
    impact: tuple[TierImpact, ...]
    clocks: tuple[RtoClock, ...]
    cause: RolloutCause | None
    still_down: tuple[DownItem, ...]

    @property
    def is_draft(self) -> bool:
        """A review of an incident still open is a draft: its numbers change until the incident closes."""
        return self.incident.status is IncidentStatus.OPEN

    @property
    def guessed_clocks(self) -> tuple[RtoClock, ...]:
        """The clocks whose expected time to restore is a guess: some step up to the service's has an item no
        restore test measured (only a service still down has an expected time)."""
        return tuple(c for c in self.clocks if c.estimated is not None and c.measured_on is None)

    @property
    def restore_times(self) -> str:
        """Which times to restore were measured and which are guesses (:attr:`Incident.restore_times`), and which
        expected times of services still down rest on a guess."""
        said = self.incident.restore_times
        guessed = self.guessed_clocks
        if guessed:
            one = len(guessed) == 1
            said += (
                f" The expected time to restore of {names(c.service for c in guessed)} "
                f"{'is an estimate' if one else 'are estimates'}: a step before {'it' if one else 'them'} was "
                "never measured."
            )
        return said

    @property
    def summary(self) -> str:
        """The review in one sentence with its numbers."""
        services = self.incident.services
        tiers = ", ".join(f"{len(t.services)} of tier {t.tier}" for t in self.impact if t.services)
        with_rto = [c for c in self.clocks if c.rto is not None]
        met = sum(1 for c in with_rto if c.status is ClockStatus.MET)
        late = [c.service for c in with_rto if c.is_past_rto]
        left_down = [c.service for c in self.clocks if c.status is ClockStatus.NOT_RESTORED_AT_CLOSE]
        sentence = (
            f"{', '.join(self.incident.failed)} took down {count(len(services), 'service')}"
            + (f" ({tiers})" if tiers else "")
            + f" and {len(self.incident.items) - len(services)} assets for {humanize_duration(self.duration)}; "
            f"{met} of {len(with_rto)} services with an RTO were restored within it"
        )
        if late:
            sentence += f"; RTO breached: {', '.join(late)}"
        if left_down:
            sentence += f"; not restored at close: {', '.join(left_down)}"
        if self.still_down:
            sentence += f"; {count(len(self.still_down), 'item')} still down"
        return sentence


def review_incident(incident: Incident, now: datetime, *, cause: RolloutCause | None = None) -> IncidentReview:
    """The post-incident review as of ``now`` (or as of the closing, once closed)."""
    clocks = rto_clocks(incident, now)
    as_of = clocks[0].as_of if clocks else (min(now, incident.closed_at) if incident.closed_at else now)
    by_service = {c.service: c for c in clocks}
    impact = []
    for tier in TIERS:
        services = tuple(sorted((s for s in incident.services if s.tier == tier), key=lambda s: s.id))
        tier_clocks = [by_service[s.id] for s in services]
        impact.append(
            TierImpact(
                tier,
                services,
                sum(1 for c in tier_clocks if c.status is ClockStatus.MET),
                sum(1 for c in tier_clocks if c.is_past_rto),
                sum(1 for c in tier_clocks if c.status is ClockStatus.NOT_RESTORED_AT_CLOSE),
            )
        )
    if cause is None and incident.rollout_id is not None:
        cause = RolloutCause(incident.rollout_id)
    return IncidentReview(
        incident=incident,
        as_of=as_of,
        duration=whole_seconds(as_of - incident.declared_at),
        timeline=timeline(incident, as_of),
        impact=tuple(impact),
        clocks=clocks,
        cause=cause,
        still_down=tuple(i for i in incident.still_down if i.id not in _restored_by(incident, as_of)),
    )


def _restored_by(incident: Incident, as_of: datetime) -> set[str]:
    return {item for item, at in incident.restored.items() if at <= as_of}


__all__ = ["IncidentReview", "RolloutCause", "TierImpact", "review_incident"]
