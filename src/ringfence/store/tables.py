"""The tables ringfence keeps its state in, declared once for SQLite and PostgreSQL alike.

Portable types only: text ids, integers, JSON (``sqlalchemy.JSON``: TEXT on SQLite, json on PostgreSQL)
and timestamps that are always timezone-aware UTC in Python (see :class:`UTCDateTime`). Closed sets of
values (phases, asset states) are plain strings held by CHECK constraints, so adding a value is a
migration that both databases understand.

The migration in ``migrations/versions`` creates exactly this; a test compares the two.
Constraint names follow :data:`NAMING` so migrations can name what they alter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from ringfence.core.gates import GateOutcome
from ringfence.core.rollout.state import AssetState, RolloutPhase

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ESTATE_FORMATS = ("yaml", "json")
DECISION_STATUSES = ("pending", "done")
OBSERVATION_KINDS = ("heartbeat", "install_result", "health_check", "rollback_result", "restore_point")
TOKEN_ROLES = ("viewer", "operator", "approver", "admin", "agent")


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored as UTC and always read back timezone-aware.

    SQLite has no time zones: it stores the UTC wall time and this type puts UTC back on when reading.
    PostgreSQL stores ``timestamp with time zone``. A naive datetime is refused rather than guessed at.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"refusing to store the naive time {value.isoformat()}: give it in UTC")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...] | list[str]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


PHASES = tuple(p.value for p in RolloutPhase)
ASSET_STATES = tuple(s.value for s in AssetState)
GATE_OUTCOMES = tuple(o.value for o in GateOutcome)

# 64-bit ids where rows pile up (heartbeats); SQLite only auto-increments a column typed INTEGER.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class EstateVersionRow(Base):
    """An estate file as uploaded. Versions are kept forever, so a bad upload never replaces a good one."""

    __tablename__ = "estate_versions"
    __table_args__ = (
        sa.UniqueConstraint("name", "sha256"),
        sa.CheckConstraint(_one_of("format", ESTATE_FORMATS), name="format"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    content: Mapped[str] = mapped_column(sa.Text)
    format: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(200))
    asset_count: Mapped[int] = mapped_column(sa.Integer)
    service_count: Mapped[int] = mapped_column(sa.Integer)
    # The estate of record (0006): ``accepted`` versions may be current (the one accepted last is), a
    # ``proposed`` one waits for a second person, a ``rejected`` one never becomes current.
    status: Mapped[str] = mapped_column(sa.String(16), server_default="accepted")
    accepted_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(sa.String(200))
    decided_at: Mapped[datetime | None]
    created_by_token: Mapped[int | None] = mapped_column(sa.Integer)
    """The API token that uploaded it (None from the CLI): whose person may not approve it."""


class EstateAssetRow(Base):
    """Which estate of record holds each asset (0006): one row per asset id, pointing at the current version
    of the one estate that holds it. Agent directives answer an asset only for rollouts on that version."""

    __tablename__ = "estate_assets"
    __table_args__ = (sa.Index(None, "version_id"),)

    asset_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    estate_name: Mapped[str] = mapped_column(sa.String(200))
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("estate_versions.id"))


class RolloutRow(Base):
    """A rollout and its state-machine fields; ``version`` guards against concurrent writers."""

    __tablename__ = "rollouts"
    __table_args__ = (
        sa.CheckConstraint(_one_of("phase", PHASES), name="phase"),
        sa.CheckConstraint(f"paused_from IS NULL OR {_one_of('paused_from', PHASES)}", name="paused_from"),
        sa.Index(None, "phase"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    estate_version_id: Mapped[int] = mapped_column(sa.ForeignKey("estate_versions.id"))
    update_id: Mapped[str] = mapped_column(sa.String(200))
    update_doc: Mapped[Any] = mapped_column(sa.JSON)
    plan: Mapped[Any] = mapped_column(sa.JSON)
    phase: Mapped[str] = mapped_column(sa.String(32))
    ring: Mapped[int] = mapped_column(sa.Integer)
    paused_from: Mapped[str | None] = mapped_column(sa.String(32))
    halt_reason: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    approved_by: Mapped[str | None] = mapped_column(sa.String(200))
    needs_approval: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    created_by_token: Mapped[int | None] = mapped_column(sa.Integer)
    """The API token that created it (0006; None from the CLI): whose person may not approve it."""


class RolloutAssetRow(Base):
    """One target asset of a rollout: its ring, stratum and how far it got."""

    __tablename__ = "rollout_assets"
    __table_args__ = (sa.CheckConstraint(_one_of("state", ASSET_STATES), name="state"),)

    rollout_id: Mapped[str] = mapped_column(sa.ForeignKey("rollouts.id"), primary_key=True)
    asset_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    ring: Mapped[int] = mapped_column(sa.Integer)
    stratum: Mapped[str] = mapped_column(sa.Text)
    state: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    restore_point_ref: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime]


class DecisionRow(Base):
    """A controller decision, written before it is acted on and marked done after."""

    __tablename__ = "decisions"
    __table_args__ = (sa.CheckConstraint(_one_of("status", DECISION_STATUSES), name="status"),)

    rollout_id: Mapped[str] = mapped_column(sa.ForeignKey("rollouts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[Any] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(8))
    done_at: Mapped[datetime | None]


class ObservationRow(Base):
    """What an asset reported or a check saw: heartbeats, install and rollback results, health checks."""

    __tablename__ = "observations"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", OBSERVATION_KINDS), name="kind"),
        sa.Index(None, "asset_id", "at"),
        sa.Index(None, "rollout_id", "at"),
        # /metrics: the newest heartbeat of any asset, read from the end of the index, not the whole table.
        sa.Index(None, "kind", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rollout_id: Mapped[str | None] = mapped_column(sa.ForeignKey("rollouts.id"))
    asset_id: Mapped[str] = mapped_column(sa.String(200))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(32))
    detail: Mapped[Any] = mapped_column(sa.JSON)


class AuditRow(Base):
    """One hash-chained audit entry (see ``ringfence.core.audit``); rows are only ever appended."""

    __tablename__ = "audit_log"
    __table_args__ = (sa.Index(None, "subject", "seq"),)

    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(200))
    detail: Mapped[Any] = mapped_column(sa.JSON)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64), unique=True)


class ApiTokenRow(Base):
    """An API token, stored only as its hash. An agent token (``asset_id`` set) speaks for that asset only."""

    __tablename__ = "api_tokens"
    __table_args__ = (sa.CheckConstraint(_one_of("role", TOKEN_ROLES), name="role"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    asset_id: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Who a token is (0006): its person (the name, NFKC-casefolded) and the token that issued it (None when
    # made on the CLI, whose access to the database is the root of trust).
    person: Mapped[str] = mapped_column(sa.String(200), server_default="")
    issued_by: Mapped[int | None] = mapped_column(sa.Integer)
    expires_at: Mapped[datetime | None]
    """When a signed-in session ends (migration 0007); NULL for an API token, which lasts until revoked."""


metadata = Base.metadata

__all__ = [
    "ApiTokenRow",
    "AuditRow",
    "Base",
    "DecisionRow",
    "EstateAssetRow",
    "EstateVersionRow",
    "ObservationRow",
    "RolloutAssetRow",
    "RolloutRow",
    "UTCDateTime",
    "metadata",
]


class IncidentRow(Base):
    """An incident and the snapshot it was declared with (``ringfence.core.incident``); its events say the rest.

    ``snapshot`` holds the down items in restore order with what each waits for, and the continuity plans:
    an incident never changes because the estate file did. One rollout causes at most one incident.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", ("open", "closed")), name="status"),
        sa.UniqueConstraint("rollout_id"),
        sa.Index(None, "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    title: Mapped[str] = mapped_column(sa.Text)
    estate_version_id: Mapped[int] = mapped_column(sa.ForeignKey("estate_versions.id"))
    rollout_id: Mapped[str | None] = mapped_column(sa.ForeignKey("rollouts.id"))
    failed: Mapped[Any] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(8))
    step_seconds: Mapped[int] = mapped_column(sa.Integer)
    snapshot: Mapped[Any] = mapped_column(sa.JSON)
    declared_at: Mapped[datetime]
    declared_by: Mapped[str] = mapped_column(sa.String(200))
    closed_at: Mapped[datetime | None]
    change_freeze: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())
    """The incident declared a change freeze: while it is open, no ring of any rollout opens (0011)."""


class IncidentEventRow(Base):
    """One event of an incident's timeline, numbered in the order written; rows are only ever appended."""

    __tablename__ = "incident_events"
    __table_args__ = (sa.CheckConstraint(_one_of("kind", ("declared", "restored", "note", "closed")), name="kind"),)

    incident_id: Mapped[str] = mapped_column(sa.ForeignKey("incidents.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(sa.String(16))
    actor: Mapped[str] = mapped_column(sa.String(200))
    text: Mapped[str] = mapped_column(sa.Text)
    items: Mapped[Any] = mapped_column(sa.JSON)


class DriverStateRow(Base):
    """What a driver keeps between processes for one rollout: the simulated driver's world.

    One row per (rollout, driver), replaced whole in a transaction of its own after every change, so a process
    killed at any moment leaves the previous document whole and the next process carries on from it.
    """

    __tablename__ = "driver_state"

    rollout_id: Mapped[str] = mapped_column(sa.ForeignKey("rollouts.id"), primary_key=True)
    driver: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    document: Mapped[Any] = mapped_column(sa.JSON)
    updated_at: Mapped[datetime]


class GateVerdictRow(Base):
    """A gate's verdict on a ring of a rollout, numbered per rollout in the order the rings were judged.

    The outcome is a column of its own (what ``/metrics`` counts), never read back out of the sentence;
    ``strata`` holds each judged stratum's outcome, sentence and numbers as JSON (written and read only by
    ``ringfence.store.verdicts``). Written in the transaction that acts on the verdict; only ever appended.
    """

    __tablename__ = "gate_verdicts"
    __table_args__ = (sa.CheckConstraint(_one_of("outcome", GATE_OUTCOMES), name="outcome"),)

    rollout_id: Mapped[str] = mapped_column(sa.ForeignKey("rollouts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    ring: Mapped[int] = mapped_column(sa.Integer)
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(sa.String(16))
    sentence: Mapped[str] = mapped_column(sa.Text)
    strata: Mapped[Any] = mapped_column(sa.JSON)


NOTIFICATION_STATUSES = ("pending", "sending", "sent", "failed", "gave_up")


class NotificationDeliveryRow(Base):
    """One message to one channel (0008): the notifier's outbox, and the record of every attempt to send it.

    ``(event_key, channel)`` is unique, so an event is enqueued once per channel whoever enqueues it, and a
    restart neither loses nor repeats one. ``next_attempt_at`` is when it is due (again); a row ``sending``
    past it was claimed by a notifier that died mid-send, and is due again.
    """

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_key", "channel"),
        sa.CheckConstraint(_one_of("status", NOTIFICATION_STATUSES), name="status"),
        sa.Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_key: Mapped[str] = mapped_column(sa.String(300))
    event: Mapped[str] = mapped_column(sa.String(32))
    channel: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str] = mapped_column(sa.String(200))
    title: Mapped[str] = mapped_column(sa.Text)
    body: Mapped[str] = mapped_column(sa.Text)
    urgent: Mapped[bool] = mapped_column(sa.Boolean)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class NotificationCursorRow(Base):
    """How far the notifier has read the audit log (0008): the entries after ``seq`` are not yet enqueued."""

    __tablename__ = "notification_cursor"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime]


class NotificationClockRow(Base):
    """The last status the notifier saw of each RTO clock of an open incident (0008), and how often it changed:
    a person is told once per change into at risk or breached, not at every look."""

    __tablename__ = "notification_clocks"

    incident_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    service: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    changes: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime]


WORKER_ROLES = ("serve", "worker")


class WorkerRow(Base):
    """A running controller loop (``ringfence serve`` or ``ringfence worker``) and its heartbeat (0010): the
    drivers it can run, the rollouts it drives, and when it last said so."""

    __tablename__ = "workers"
    __table_args__ = (sa.CheckConstraint(_one_of("role", WORKER_ROLES), name="role"),)

    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(200))
    pid: Mapped[int] = mapped_column(sa.Integer)
    role: Mapped[str] = mapped_column(sa.String(16))
    drivers: Mapped[Any] = mapped_column(sa.JSON)
    driving: Mapped[Any] = mapped_column(sa.JSON)
    interval: Mapped[float] = mapped_column(sa.Float)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]


class RolloutDriverOptionsRow(Base):
    """The ``--driver-option`` values a rollout is driven with (0010), so that any worker can build its driver."""

    __tablename__ = "rollout_driver_options"

    rollout_id: Mapped[str] = mapped_column(sa.ForeignKey("rollouts.id"), primary_key=True)
    driver: Mapped[str] = mapped_column(sa.String(64))
    options: Mapped[Any] = mapped_column(sa.JSON)
    health_options: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    """The options of the health source the rollout's plan names (``--health-option``); None: none given."""
    updated_at: Mapped[datetime]


ASSURANCE_KINDS = ("assurance", "policy")


class AssuranceDocumentRow(Base):
    """An assurance file or a policy file stored for an estate (0009), never changed: the newest of each kind is
    the one the estate is assessed with."""

    __tablename__ = "assurance_documents"
    __table_args__ = (
        sa.CheckConstraint(_one_of("kind", ASSURANCE_KINDS), name="kind"),
        sa.Index(None, "estate", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    estate: Mapped[str] = mapped_column(sa.String(200))
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    content: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(200))
