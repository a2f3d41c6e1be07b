"""``POST /v1/alerts/alertmanager``: Alertmanager's webhook, so that a firing alert on an updated asset halts
its rollout (``ringfence.service.alerts``; docs/prometheus.md shows the receiver to configure).

The body is Alertmanager's webhook document (version 4); only ``alerts`` is read, each alert's ``status``,
``labels``, ``annotations`` and ``fingerprint``. It is bounded: at most :data:`MAX_ALERTS` alerts, label and
annotation values of at most 4,000 characters, and the gate caps the body at 64 KiB before anything reads it
(Alertmanager's ``max_alerts`` in the receiver keeps a storm within that). The token must be an operator's
or higher.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ringfence.api.deps import CallerDep
from ringfence.core.clock import utc_now
from ringfence.service.alerts import Alert, record_alerts

router = APIRouter(prefix="/v1", tags=["alerts"])

MAX_ALERTS = 200
"""Alerts in one webhook; Alertmanager's ``max_alerts: 200`` on the receiver sends no more."""

LabelValue = Annotated[str, Field(max_length=4000)]
Labels = Annotated[dict[Annotated[str, Field(max_length=200)], LabelValue], Field(max_length=100)]


class AlertIn(BaseModel):
    """One alert as Alertmanager sends it (fields not listed here, such as ``startsAt``, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: Labels
    annotations: Labels = {}
    fingerprint: Annotated[str, Field(max_length=200)] | None = None


class AlertmanagerWebhookIn(BaseModel):
    """Alertmanager's webhook document; ``alerts`` is what counts."""

    model_config = ConfigDict(extra="ignore")

    version: Annotated[str, Field(max_length=20)] = "4"
    status: Literal["firing", "resolved"] | None = None
    alerts: Annotated[list[AlertIn], Field(max_length=MAX_ALERTS)]


class AlertFailureOut(BaseModel):
    rollout: str
    asset: str
    alert: str


class AlertReceiptOut(BaseModel):
    """What the webhook did: the failures stored (each halts its ring at the controller's next step), and the
    alerts left (resolved, or naming no updated asset of a running rollout)."""

    failures: list[AlertFailureOut]
    resolved: int
    unmatched: int


@router.post("/alerts/alertmanager", response_model=AlertReceiptOut)
def post_alertmanager_webhook(request: Request, caller: CallerDep, body: AlertmanagerWebhookIn) -> AlertReceiptOut:
    """Turn each firing alert whose labels name an updated asset of a running rollout into a failure of that asset.

    The labels ``asset``, ``instance`` (its port dropped), ``host``, ``hostname``, ``nodename`` and ``node``
    may name the asset. Needs an operator token (403 otherwise); 422 naming the field for a malformed body.
    """
    alerts = [
        Alert(status=a.status, labels=a.labels, annotations=a.annotations, fingerprint=a.fingerprint)
        for a in body.alerts
    ]
    receipt = record_alerts(request.app.state.engine, caller, alerts, utc_now())
    return AlertReceiptOut(
        failures=[AlertFailureOut(rollout=f.rollout_id, asset=f.asset_id, alert=f.alert) for f in receipt.failures],
        resolved=receipt.resolved,
        unmatched=receipt.unmatched,
    )
