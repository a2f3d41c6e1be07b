"""Rows as the schema before 0006 holds them, written and read with plain SQL, for the migration tests.

The store's functions read and write today's columns (0006 added some to ``estate_versions`` and ``rollouts``),
which a database at an older revision does not have yet. So a migration test that fills a database at 0002 to
0005 writes its estate version and rollouts here, with the audit entries the store wrote with them then.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.store.audit import append_audit

_VERSIONS = sa.table(
    "estate_versions",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("sha256", sa.String()),
    sa.column("content", sa.Text()),
    sa.column("format", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("created_by", sa.String()),
    sa.column("asset_count", sa.Integer()),
    sa.column("service_count", sa.Integer()),
)
_ROLLOUTS = sa.table(
    "rollouts",
    sa.column("id", sa.String()),
    sa.column("estate_version_id", sa.Integer()),
    sa.column("update_id", sa.String()),
    sa.column("update_doc", sa.JSON()),
    sa.column("plan", sa.JSON()),
    sa.column("phase", sa.String()),
    sa.column("ring", sa.Integer()),
    sa.column("version", sa.Integer()),
    sa.column("created_by", sa.String()),
    sa.column("needs_approval", sa.Boolean()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def add_old_rollouts(
    session: Session, rollout_ids: Sequence[str], *, at: datetime, asset_count: int = 1, actor: str = "ana"
) -> int:
    """An estate version ``e`` (text ``x``) and a pending rollout ``u`` on it for each of ``rollout_ids``, with
    their ``estate.upload`` and ``rollout.create`` audit entries; the version's id."""
    digest = hashlib.sha256(b"x").hexdigest()
    version_id = int(
        session.execute(
            _VERSIONS.insert()
            .values(
                name="e",
                sha256=digest,
                content="x",
                format="yaml",
                created_at=at,
                created_by=actor,
                asset_count=asset_count,
                service_count=1,
            )
            .returning(_VERSIONS.c.id)
        ).scalar_one()
    )
    append_audit(
        session,
        actor=actor,
        action="estate.upload",
        subject="estate:e",
        detail={"version": version_id, "sha256": digest, "assets": asset_count, "services": 1},
        at=at,
    )
    for rollout_id in rollout_ids:
        session.execute(
            _ROLLOUTS.insert().values(
                id=rollout_id,
                estate_version_id=version_id,
                update_id="u",
                update_doc={},
                plan={},
                phase="pending",
                ring=0,
                version=1,
                created_by=actor,
                needs_approval=False,
                created_at=at,
                updated_at=at,
            )
        )
        append_audit(
            session,
            actor=actor,
            action="rollout.create",
            subject=f"rollout:{rollout_id}",
            detail={"update": "u", "estate_version": version_id, "phase": "pending", "needs_approval": False},
            at=at,
        )
    return version_id


def old_update_id(session: Session, rollout_id: str) -> str | None:
    """The update id of a rollout, read with the columns every revision has."""
    found = session.scalar(sa.select(_ROLLOUTS.c.update_id).where(_ROLLOUTS.c.id == rollout_id))
    return None if found is None else str(found)
