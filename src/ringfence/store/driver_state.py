"""Repository functions for what a driver keeps between processes: one JSON document per (rollout, driver).

The simulated driver keeps its world here (``ringfence.service.driver_state``), so that a ``rollout start`` or
a server killed mid-install finds, when it starts again, the operations it had begun. Like
:mod:`ringfence.store.repo`, these take a Session, flush and never commit; the caller's transaction writes the
document whole or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ringfence.core.errors import NotFoundError
from ringfence.store.records import JSONValue
from ringfence.store.tables import DriverStateRow, RolloutRow


def get_driver_state(session: Session, rollout_id: str, driver: str) -> JSONValue | None:
    """The document ``driver`` last kept for ``rollout_id``, or None when it has kept none."""
    found = session.execute(
        sa.select(DriverStateRow.document).where(
            DriverStateRow.rollout_id == rollout_id, DriverStateRow.driver == driver
        )
    ).first()
    return None if found is None else cast(JSONValue, found.document)


def put_driver_state(session: Session, rollout_id: str, driver: str, document: JSONValue, *, at: datetime) -> None:
    """Keep ``document`` as what ``driver`` knows of ``rollout_id``, in place of the one before."""
    if session.scalar(sa.select(RolloutRow.id).where(RolloutRow.id == rollout_id)) is None:
        raise NotFoundError(f"rollout {rollout_id} does not exist")
    table = cast(sa.Table, DriverStateRow.__table__)
    row = {"rollout_id": rollout_id, "driver": driver, "document": document, "updated_at": at}
    keys = ["rollout_id", "driver"]
    if session.get_bind().dialect.name == "postgresql":
        pg = postgresql.insert(table).values(row)
        stmt: sa.Executable = pg.on_conflict_do_update(
            index_elements=keys, set_={"document": pg.excluded.document, "updated_at": pg.excluded.updated_at}
        )
    else:
        lite = sqlite.insert(table).values(row)
        stmt = lite.on_conflict_do_update(
            index_elements=keys, set_={"document": lite.excluded.document, "updated_at": lite.excluded.updated_at}
        )
    session.execute(stmt)


__all__ = ["get_driver_state", "put_driver_state"]
