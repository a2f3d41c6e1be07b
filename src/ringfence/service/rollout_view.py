"""Reading a stored rollout as the core sees it: its plan, its assets' progress and their latest health.

The controller's SQL session (:class:`ringfence.service.rollouts.SqlRolloutSession`) reads through here, and
so do the after-transition policies that look at a halted or ended rollout (the incident service): reading
needs no policy, so the incident service imports this module and never the rollout service that runs the
policies (no cycle: rollouts → policies → incidents → rollout_view).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import cast

from sqlalchemy.orm import Session

from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal, GateOutcome
from ringfence.core.rollout.reconcile import SINCE_INSTALL, AssetProgress, RolloutView
from ringfence.core.rollout.record import StoredPlan
from ringfence.core.rollout.strategy import GateMode
from ringfence.core.update import Update
from ringfence.store.observations import list_observations
from ringfence.store.records import Observation, ObservationKind, Rollout, RolloutAsset
from ringfence.store.rollouts import get_rollout, list_rollout_assets
from ringfence.store.verdicts import list_gate_verdicts


def stored_plan(rollout: Rollout) -> StoredPlan:
    """The plan ``rollout`` follows, read through the one codec."""
    return StoredPlan.from_document(rollout.plan, rollout_id=rollout.id)


def latest_health(session: Session, rollout_id: str, since: datetime) -> dict[str, tuple[datetime, AssetHealth]]:
    """Each asset's newest health reading for ``rollout_id`` since ``since``, with when it was read."""
    latest: dict[str, tuple[datetime, AssetHealth]] = {}
    for obs in list_observations(session, since=since, rollout_id=rollout_id, kinds=[ObservationKind.HEALTH_CHECK]):
        latest[obs.asset_id] = (obs.at, _health_of(obs))
    return latest


def read_rollout_view(session: Session, rollout_id: str) -> RolloutView:
    """The rollout as reconcile sees it, in the caller's transaction."""
    rollout = get_rollout(session, rollout_id)
    plan = stored_plan(rollout)
    assets = tuple(_progress(a) for a in list_rollout_assets(session, rollout_id))
    by_id = {a.asset_id: a for a in assets}
    health: dict[str, AssetHealth] = {}
    for asset_id, (at, reading) in latest_health(session, rollout_id, rollout.created_at).items():
        progress = by_id.get(asset_id)
        # What an asset said before its install says nothing about the update.
        if progress is not None and progress.state in SINCE_INSTALL and at < progress.updated_at:
            continue
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
        ring_passed_at=max(
            (
                v.at
                for v in list_gate_verdicts(session, rollout_id, ring=rollout.state.ring)
                if v.verdict.outcome is GateOutcome.passed
            ),
            default=None,
        ),
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


__all__ = ["latest_health", "read_rollout_view", "stored_plan"]
