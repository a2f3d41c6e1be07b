"""Alerts from the trust's Alertmanager as failure observations (``POST /v1/alerts/alertmanager``).

A *firing* alert whose labels name an asset that a running rollout has updated (``applied``) becomes a
failed ``health_check`` observation of that rollout for that asset (``detail.source = "alertmanager"``),
stored in one transaction with an audit entry per rollout. The controller's next step reads it in the
rollout's view (``service.rollout_view``), where it holds the asset failed for the rest of the rollout
whatever the health source reads afterwards: an alert that fired on an updated asset is a failure the gate
has seen, and a bake judges a failure at once, so the ring halts (and rolls back, as its update says).

What names the asset: the labels ``asset``, ``instance``, ``host``, ``hostname``, ``nodename`` and ``node``,
in that order; a value names an asset when it is its id, or is its id followed by ``:port``, or is a host
name whose first part (before the first ``.``) is its id. Resolved alerts, and alerts naming no updated
asset of a running rollout, are counted and left: a resolved alert does not take back the failure (a person
resumes or aborts the halted rollout).

Who may send them: a token of the operator role or higher (Alertmanager's ``http_config.authorization``
sends it as a bearer token); an agent token speaks for one asset and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from ringfence.core.gates import AssetStatus, FailureSignal
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.service.rollout_view import ALERT_SOURCE
from ringfence.service.tokens import Caller, Role
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope
from ringfence.store.observations import add_observations
from ringfence.store.records import JSONValue, Observation, ObservationKind
from ringfence.store.rollouts import list_rollout_assets, list_rollouts

SOURCE = ALERT_SOURCE
"""``detail.source`` of an observation made from an alert: the rollout's view holds such a failure."""

ASSET_LABELS = ("asset", "instance", "host", "hostname", "nodename", "node")
"""The labels that may name an asset, in the order they are read."""

RUNNING_PHASES = frozenset(p for p in RolloutPhase if p.is_running)


@dataclass(frozen=True)
class Alert:
    """One alert of an Alertmanager webhook."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    fingerprint: str | None = None

    @property
    def name(self) -> str:
        return self.labels.get("alertname") or "unnamed alert"

    def candidates(self) -> list[str]:
        """The asset ids the labels may name, in the order of :data:`ASSET_LABELS`."""
        found: list[str] = []
        for label in ASSET_LABELS:
            value = (self.labels.get(label) or "").strip()
            if not value:
                continue
            head, _, tail = value.rpartition(":")
            host = head if head and tail.isdigit() else value
            for candidate in (value, host, host.split(".", 1)[0]):
                if candidate and candidate not in found:
                    found.append(candidate)
        return found


@dataclass(frozen=True)
class AlertFailure:
    """A failure stored: which rollout, which asset, which alert."""

    rollout_id: str
    asset_id: str
    alert: str


@dataclass(frozen=True)
class AlertReceipt:
    """What a webhook did: the failures stored, and how many alerts were left (resolved, or naming nothing)."""

    failures: tuple[AlertFailure, ...]
    resolved: int
    unmatched: int


def record_alerts(engine: Engine, caller: Caller, alerts: Sequence[Alert], now: datetime) -> AlertReceipt:
    """Store each firing alert on an updated asset of a running rollout as a failure (see the module docstring)."""
    caller.require(Role.OPERATOR)  # PermissionDeniedError (403) for viewers and agent tokens
    firing = [a for a in alerts if a.status == "firing"]
    resolved = len(alerts) - len(firing)
    failures: list[AlertFailure] = []
    unmatched = 0
    if not firing:
        return AlertReceipt((), resolved, 0)
    with session_scope(engine) as session:
        running = list_rollouts(session, phases=RUNNING_PHASES)
        updated: dict[str, list[str]] = {}  # asset → the running rollouts that have updated it
        for rollout in running:
            for target in list_rollout_assets(session, rollout.id, states=[AssetState.APPLIED]):
                updated.setdefault(target.asset_id, []).append(rollout.id)
        rows: list[Observation] = []
        for alert in firing:
            asset = next((c for c in alert.candidates() if c in updated), None)
            if asset is None:
                unmatched += 1
                continue
            summary = alert.annotations.get("summary") or alert.annotations.get("description") or ""
            words = f"alert {alert.name} firing in Alertmanager" + (f": {summary}" if summary else "")
            detail: dict[str, JSONValue] = {
                "signal": FailureSignal.service_check_failed.value,
                "seconds_after_install": None,
                "detail": words[:1000],
                "source": SOURCE,
                "alert": alert.name,
                "fingerprint": alert.fingerprint,
                "reported_by": caller.name,
            }
            for rollout_id in updated[asset]:
                rows.append(
                    Observation(asset, now, ObservationKind.HEALTH_CHECK, AssetStatus.failed.value, detail, rollout_id)
                )
                failures.append(AlertFailure(rollout_id, asset, alert.name))
        if rows:
            add_observations(session, rows)
        by_rollout: dict[str, list[AlertFailure]] = {}
        for failure in failures:
            by_rollout.setdefault(failure.rollout_id, []).append(failure)
        for rollout_id, found in sorted(by_rollout.items()):
            append_audit(
                session,
                actor=caller.name,
                action="alert.failure",
                subject=f"rollout:{rollout_id}",
                detail={
                    "assets": sorted({f.asset_id for f in found}),
                    "alerts": sorted({f.alert for f in found}),
                },
                at=now,
            )
    return AlertReceipt(tuple(failures), resolved, unmatched)


__all__ = [
    "ASSET_LABELS",
    "RUNNING_PHASES",
    "SOURCE",
    "Alert",
    "AlertFailure",
    "AlertReceipt",
    "record_alerts",
]
