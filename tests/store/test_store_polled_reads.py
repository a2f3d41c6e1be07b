"""The store's reads for hot pollers (the directive board, /metrics) and the COPY path of heartbeats, on real
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.store.db import session_scope
from ringfence.store.decisions import add_decision
from ringfence.store.estates import add_estate_version
from ringfence.store.observations import (
    add_observations_by_copy,
    list_observations,
    newest_heartbeat_at,
    oldest_latest_heartbeat_at,
)
from ringfence.store.records import Observation, ObservationKind, RolloutAsset
from ringfence.store.rollouts import (
    count_rollouts_by_phase,
    create_rollout,
    get_rollout,
    known_rollout_ids,
    list_rollout_targets,
    rollout_versions,
    upsert_rollout_assets,
)

T0 = datetime(2024, 7, 19, 4, 9, tzinfo=UTC)


def add_rollout(session: Session, *, needs_approval: bool = False) -> str:
    version = add_estate_version(
        session,
        name="city-general",
        content="apiVersion: ringfence/v1\nestate: city-general\n",
        format="yaml",
        created_by="ana",
        asset_count=3,
        service_count=2,
        at=T0,
    )
    return create_rollout(
        session,
        estate_version_id=version.id,
        update_id="esxi-7u3",
        update_doc={},
        plan={},
        created_by="ana",
        needs_approval=needs_approval,
        at=T0,
    ).id


def test_rollouts_are_counted_by_phase_and_versioned_with_their_last_decision(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        first = add_rollout(session)
        second = add_rollout(session)
        waiting = add_rollout(session, needs_approval=True)
        add_decision(session, second, kind="start", payload={}, at=T0)
        add_decision(session, second, kind="start", payload={}, at=T0)
    with session_scope(db_engine, readonly=True) as session:
        counts = count_rollouts_by_phase(session)
        pending = rollout_versions(session, [RolloutPhase.PENDING])
        both = rollout_versions(session, [RolloutPhase.PENDING, RolloutPhase.AWAITING_APPROVAL])
        none = rollout_versions(session, [RolloutPhase.APPLYING])
        version = get_rollout(session, first).state.version
        known = known_rollout_ids(session, [first, "r-999999"])
        nothing = known_rollout_ids(session, [])
    assert counts == dict.fromkeys(RolloutPhase, 0) | {
        RolloutPhase.PENDING: 2,
        RolloutPhase.AWAITING_APPROVAL: 1,
    }
    assert pending == ((first, version, 0), (second, version, 2))
    assert [rollout_id for rollout_id, _, _ in both] == [first, second, waiting]
    assert none == ()
    assert known == {first}
    assert nothing == set()


def test_a_rollouts_targets_are_read_as_asset_ring_and_state(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        upsert_rollout_assets(
            session,
            rollout_id,
            [
                RolloutAsset("esx-a1", 0, "host", AssetState.APPLYING, T0),
                RolloutAsset("esx-b1", 1, "host", AssetState.PENDING, T0),
            ],
        )
    with session_scope(db_engine, readonly=True) as session:
        targets = list_rollout_targets(session, rollout_id)
    assert sorted(targets) == [("esx-a1", 0, AssetState.APPLYING), ("esx-b1", 1, AssetState.PENDING)]


def test_heartbeat_lag_reads_the_newest_and_the_oldest_latest_of_a_rollouts_targets(db_engine: Engine) -> None:
    with session_scope(db_engine) as session:
        assert newest_heartbeat_at(session) is None
        rollout_id = add_rollout(session)
        upsert_rollout_assets(
            session,
            rollout_id,
            [RolloutAsset(a, 0, "host", AssetState.PENDING, T0) for a in ("esx-a1", "esx-b1", "esx-silent")],
        )
        beats = [("esx-a1", 1), ("esx-a1", 3), ("esx-b1", 2), ("not-a-target", 9)]
        add_observations_by_copy(
            session,
            [Observation(a, T0 + timedelta(minutes=m), ObservationKind.HEARTBEAT, "ok") for a, m in beats],
        )
    with session_scope(db_engine, readonly=True) as session:
        newest = newest_heartbeat_at(session)
        oldest_latest = oldest_latest_heartbeat_at(session, [RolloutPhase.PENDING])
        of_no_rollout = oldest_latest_heartbeat_at(session, [RolloutPhase.APPLYING])
    assert newest == T0 + timedelta(minutes=9)
    # esx-b1's latest (minute 2) is older than esx-a1's (minute 3); an asset that never beat is not counted.
    assert oldest_latest == T0 + timedelta(minutes=2)
    assert of_no_rollout is None


def test_a_copied_batch_reads_back_as_written(db_engine: Engine) -> None:
    awkward = "tab\there, new\nline, return\r, back\\slash and ünïcode"
    with session_scope(db_engine) as session:
        rollout_id = add_rollout(session)
        add_observations_by_copy(
            session,
            [
                Observation("esx-a1", T0, ObservationKind.HEARTBEAT, "failed", {"detail": awkward}),
                Observation(
                    "esx-a1",
                    T0,
                    ObservationKind.INSTALL_RESULT,
                    "succeeded",
                    {"detail": "", "source": "agent"},
                    rollout_id=rollout_id,
                ),
                Observation(awkward, T0 + timedelta(seconds=1), ObservationKind.HEARTBEAT, "ok"),
            ],
        )
    with session_scope(db_engine, readonly=True) as session:
        found = list_observations(session, since=T0)
    assert [(o.asset_id, o.kind, o.status, o.rollout_id, dict(o.detail)) for o in found] == [
        ("esx-a1", ObservationKind.HEARTBEAT, "failed", None, {"detail": awkward}),
        ("esx-a1", ObservationKind.INSTALL_RESULT, "succeeded", rollout_id, {"detail": "", "source": "agent"}),
        (awkward, ObservationKind.HEARTBEAT, "ok", None, {}),
    ]
    assert [o.at for o in found] == [T0, T0, T0 + timedelta(seconds=1)]
