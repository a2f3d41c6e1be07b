"""What the repository hands back: frozen records instead of ORM rows, so nothing outside the store
holds a live row (or can change one behind the session's back).

The rollout's state-machine part is the domain's own :class:`~ringfence.core.rollout.state.RolloutState`;
audit entries are :class:`~ringfence.core.audit.AuditEntry`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TypeAlias

from ringfence.core.gates import RingVerdict
from ringfence.core.rollout.state import AssetState, RolloutState

JSONValue: TypeAlias = "str | int | float | bool | Sequence[JSONValue] | Mapping[str, JSONValue] | None"
"""A JSON document as stored in a JSON column (update documents, plans, decision payloads)."""


class EstateFormat(StrEnum):
    YAML = "yaml"
    JSON = "json"


class DecisionStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"


class ObservationKind(StrEnum):
    HEARTBEAT = "heartbeat"
    INSTALL_RESULT = "install_result"
    HEALTH_CHECK = "health_check"
    ROLLBACK_RESULT = "rollback_result"
    RESTORE_POINT = "restore_point"


@dataclass(frozen=True)
class EstateVersion:
    """An estate file exactly as uploaded, with the counts it had when it was checked."""

    id: int
    name: str
    sha256: str
    content: str
    format: EstateFormat
    created_at: datetime
    created_by: str
    asset_count: int
    service_count: int
    status: str = "accepted"
    """``accepted`` (current when accepted last of its estate), ``proposed`` (awaiting a second person) or
    ``rejected``."""
    accepted_at: datetime | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    created_by_token: int | None = None


@dataclass(frozen=True)
class Rollout:
    """A rollout as stored: what it rolls out, on which estate version, and where it is (``state``)."""

    id: str
    estate_version_id: int
    update_id: str
    update_doc: JSONValue
    plan: JSONValue
    state: RolloutState
    created_by: str
    approved_by: str | None
    needs_approval: bool
    created_at: datetime


@dataclass(frozen=True)
class RolloutAsset:
    """One target of a rollout and how far it got."""

    asset_id: str
    ring: int
    stratum: str
    state: AssetState
    updated_at: datetime
    detail: str | None = None
    restore_point_ref: str | None = None


@dataclass(frozen=True)
class Decision:
    """A controller decision; ``pending`` until the controller has acted on it."""

    rollout_id: str
    seq: int
    created_at: datetime
    kind: str
    payload: JSONValue
    status: DecisionStatus
    done_at: datetime | None


@dataclass(frozen=True)
class Observation:
    """Something seen about an asset. ``id`` is None until it is stored."""

    asset_id: str
    at: datetime
    kind: ObservationKind
    status: str
    detail: Mapping[str, JSONValue] = field(default_factory=dict)
    rollout_id: str | None = None
    id: int | None = None


__all__ = [
    "Decision",
    "DecisionStatus",
    "EstateFormat",
    "EstateVersion",
    "JSONValue",
    "Observation",
    "ObservationKind",
    "Rollout",
    "RolloutAsset",
]


@dataclass(frozen=True)
class GateVerdict:
    """A gate's verdict on a ring of a rollout, as stored: ``seq`` numbers a rollout's verdicts from 1.

    ``verdict`` is the domain's own :class:`~ringfence.core.gates.RingVerdict`: its outcome and each stratum's
    outcome and numbers as fields, the sentences beside them to explain them, never to be parsed.
    """

    rollout_id: str
    seq: int
    at: datetime
    verdict: RingVerdict


__all__ += ["GateVerdict"]
