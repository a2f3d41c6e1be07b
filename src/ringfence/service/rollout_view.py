"""Reading a stored rollout as the core sees it: its plan, its assets' progress and their latest health.

The controller's SQL session (:class:`ringfence.service.rollouts.SqlRolloutSession`) reads through here, and
so do the after-transition policies that look at a halted or ended rollout (the incident service): reading
needs no policy, so the incident service imports this module and never the rollout service that runs the
policies (no cycle: rollouts → policies → incidents → rollout_view).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy.orm import Session

from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal, GateOutcome
from ringfence.core.rollout.reconcile import SINCE_INSTALL, AssetProgress, RolloutView, rollout_calendar, window_wait
from ringfence.core.rollout.record import StoredPlan
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.update import Update
from ringfence.core.windows import IncidentFreeze, RingSlot
from ringfence.store.incidents import open_change_freezes
from ringfence.store.observations import list_observations
from ringfence.store.records import Observation, ObservationKind, Rollout, RolloutAsset
from ringfence.store.rollouts import get_rollout, list_rollout_assets
from ringfence.store.verdicts import list_gate_verdicts


def stored_plan(rollout: Rollout) -> StoredPlan:
    """The plan ``rollout`` follows, read through the one codec."""
    return StoredPlan.from_document(rollout.plan, rollout_id=rollout.id)


ALERT_SOURCE = "alertmanager"
"""``detail.source`` of a failure made from a firing alert (``service.alerts``): the view holds it."""


def latest_health(session: Session, rollout_id: str, since: datetime) -> dict[str, tuple[datetime, AssetHealth]]:
    """Each asset's newest health reading for ``rollout_id`` since ``since``, with when it was read."""
    return _health_readings(session, rollout_id, since)[0]


def _health_readings(
    session: Session, rollout_id: str, since: datetime
) -> tuple[dict[str, tuple[datetime, AssetHealth]], dict[str, tuple[datetime, AssetHealth]]]:
    """In one pass: each asset's newest reading, and its first failure from a firing alert (if any)."""
    latest: dict[str, tuple[datetime, AssetHealth]] = {}
    alerted: dict[str, tuple[datetime, AssetHealth]] = {}
    for obs in list_observations(session, since=since, rollout_id=rollout_id, kinds=[ObservationKind.HEALTH_CHECK]):
        reading = (obs.at, _health_of(obs))
        latest[obs.asset_id] = reading
        if obs.detail.get("source") == ALERT_SOURCE and obs.status == AssetStatus.failed.value:
            alerted.setdefault(obs.asset_id, reading)
    return latest, alerted


def read_rollout_view(session: Session, rollout_id: str) -> RolloutView:
    """The rollout as reconcile sees it, in the caller's transaction."""
    rollout = get_rollout(session, rollout_id)
    plan = stored_plan(rollout)
    assets = tuple(_progress(a) for a in list_rollout_assets(session, rollout_id))
    by_id = {a.asset_id: a for a in assets}
    health: dict[str, AssetHealth] = {}
    latest, alerted = _health_readings(session, rollout_id, rollout.created_at)
    for asset_id, (at, reading) in latest.items():
        progress = by_id.get(asset_id)
        # What an asset said before its install says nothing about the update.
        if progress is not None and progress.state in SINCE_INSTALL and at < progress.updated_at:
            continue
        health[asset_id] = reading
    for asset_id, (at, reading) in alerted.items():
        progress = by_id.get(asset_id)
        # An alert that fired on an updated asset is a failure the gate has seen: a later reading of the health
        # source (which may not watch what the alert watches) does not take it back.
        if progress is not None and progress.state in SINCE_INSTALL and at >= progress.updated_at:
            health[asset_id] = reading
    return RolloutView(
        state=rollout.state,
        update=Update.model_validate(rollout.update_doc),
        gate_mode=GateMode(plan.gate_mode),
        rolls_back_on_halt=plan.rolls_back_on_halt,
        bake=plan.bake,
        ring_count=plan.ring_count,
        assets=assets,
        health=health,
        canary_rings=plan.canary_rings,
        groups=plan.groups,
        tiers=plan.tiers,
        planned_rings=plan.rings,
        ring_windows=plan.ring_windows,
        # An open incident's change freeze holds every rollout's next ring (core.windows); closing it lifts it.
        incident_freezes=tuple(IncidentFreeze(i, title) for i, title in open_change_freezes(session)),
        ring_passed_at=max(
            (
                v.at
                for v in list_gate_verdicts(session, rollout_id, ring=rollout.state.ring)
                if v.verdict.outcome is GateOutcome.passed
            ),
            default=None,
        ),
    )


@dataclass(frozen=True)
class WindowStatus:
    """What a rollout's change windows say now: the controller's waiting sentence, when the window it waits for
    opens, and when each ring still ahead can start and be done at the earliest."""

    waiting: str | None = None
    opens_at: datetime | None = None
    calendar: tuple[RingSlot, ...] = ()


NO_WINDOWS = WindowStatus()


def window_status(session: Session, rollout: Rollout, now: datetime) -> WindowStatus:
    """:class:`WindowStatus` of ``rollout`` at ``now``, in the caller's transaction. A rollout held to no window
    nor freeze (nor, while it runs, an open incident's freeze) costs one query at most: only the others are read
    whole, as the controller reads them."""
    phase = rollout.state.phase
    if phase.is_terminal:
        return NO_WINDOWS
    doc = rollout.update_doc if isinstance(rollout.update_doc, dict) else {}
    if not (doc.get("windows") or doc.get("freezes")) and not (phase.is_running and open_change_freezes(session)):
        return NO_WINDOWS
    view = read_rollout_view(session, rollout.id)
    wait = window_wait(view, now)
    return WindowStatus(
        waiting=wait.waiting if wait is not None else None,
        opens_at=wait.wake_at if wait is not None else None,
        calendar=rollout_calendar(view, now),
    )


def _health_of(obs: Observation) -> AssetHealth:
    detail = obs.detail
    signal = detail.get("signal")
    seconds = detail.get("seconds_after_install")
    note = detail.get("detail")
    return AssetHealth(
        obs.asset_id,
        AssetStatus(obs.status),
        FailureSignal(str(signal)) if signal else None,
        float(cast(float, seconds)) if seconds is not None else None,
        str(note) if note is not None else None,
    )


def _progress(asset: RolloutAsset) -> AssetProgress:
    return AssetProgress(
        asset_id=asset.asset_id,
        ring=asset.ring,
        stratum=tuple(json.loads(asset.stratum)),
        state=asset.state,
        updated_at=asset.updated_at,
        detail=asset.detail,
        restore_point_ref=asset.restore_point_ref,
    )


__all__ = ["NO_WINDOWS", "WindowStatus", "latest_health", "read_rollout_view", "stored_plan", "window_status"]
