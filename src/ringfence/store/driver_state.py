"""Repository functions for what a driver keeps between processes: one JSON document per (rollout, driver).

The simulated driver keeps its world here (``ringfence.service.driver_state``), so that a ``rollout start`` or
a server killed mid-install finds, when it starts again, the operations it had begun. Like every resource
module of the store, these take a Session, flush and never commit; the caller's transaction writes the document
whole or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringfence.store.records import JSONValue
from ringfence.store.rollouts import require_rollout
from ringfence.store.rows import upsert
from ringfence.store.tables import DriverStateRow


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
    require_rollout(session, rollout_id)
    row = {"rollout_id": rollout_id, "driver": driver, "document": document, "updated_at": at}
    session.execute(
        upsert(session, DriverStateRow.__table__, ["rollout_id", "driver"], ["document", "updated_at"]), row
    )


__all__ = ["get_driver_state", "put_driver_state"]
