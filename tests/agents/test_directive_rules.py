"""The directive rule, pure: from a rollout's phase and ring and an asset's place, install, roll back or wait."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from ringfence.core.rollout.directive import (
    POLL_IDLE,
    POLL_LATER,
    POLL_SOON,
    AgentRollout,
    AssetTarget,
    DirectiveAction,
    choose_directive,
    decide_directive,
)
from ringfence.core.rollout.state import AssetState, RolloutPhase

NOW = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)
ROLLOUT = AgentRollout(
    id="r-000001",
    phase=RolloutPhase.APPLYING,
    ring=1,
    ring_count=4,
    product="acme/agent",
    version="2.0",
    bake=600,
    by_snapshot=False,
    phase_since=NOW - timedelta(minutes=1),
    halt_reason=None,
    state_version=7,
)

P, A = RolloutPhase, AssetState


@pytest.mark.parametrize(
    ("phase", "asset_ring", "state", "action"),
    [
        # The open ring installs once the controller has recorded the install as started, not before.
        (P.APPLYING, 1, A.PENDING, DirectiveAction.wait),
        (P.APPLYING, 1, A.APPLYING, DirectiveAction.install),
        (P.APPLYING, 1, A.APPLIED, DirectiveAction.wait),
        (P.APPLYING, 2, A.PENDING, DirectiveAction.wait),
        (P.APPLYING, 0, A.APPLIED, DirectiveAction.wait),
        (P.BAKING, 1, A.APPLIED, DirectiveAction.wait),
        (P.BAKING, 2, A.PENDING, DirectiveAction.wait),
        (P.JUDGING, 2, A.PENDING, DirectiveAction.wait),
        (P.PAUSED, 1, A.PENDING, DirectiveAction.wait),
        (P.PENDING, 0, A.PENDING, DirectiveAction.wait),
        (P.AWAITING_APPROVAL, 0, A.PENDING, DirectiveAction.wait),
        (P.HALTED, 1, A.APPLIED, DirectiveAction.wait),
        (P.HALTED, 2, A.SKIPPED, DirectiveAction.wait),
        # A bad release comes off every asset it reached, in every ring.
        (P.ROLLING_BACK, 0, A.APPLIED, DirectiveAction.wait),
        (P.ROLLING_BACK, 0, A.ROLLING_BACK, DirectiveAction.rollback),
        (P.ROLLING_BACK, 1, A.ROLLING_BACK, DirectiveAction.rollback),
        (P.ROLLING_BACK, 1, A.FAILED, DirectiveAction.wait),
        (P.ROLLING_BACK, 1, A.APPLYING, DirectiveAction.wait),
        (P.ROLLING_BACK, 1, A.ROLLED_BACK, DirectiveAction.wait),
        (P.ROLLING_BACK, 1, A.ROLLBACK_FAILED, DirectiveAction.wait),
        (P.ROLLING_BACK, 1, A.RESTORE_POINT_REQUESTED, DirectiveAction.wait),
        (P.ROLLING_BACK, 2, A.SKIPPED, DirectiveAction.wait),
        (P.ROLLING_BACK, 2, A.PENDING, DirectiveAction.wait),
    ],
)
def test_what_an_asset_is_told(phase: RolloutPhase, asset_ring: int, state: AssetState, action: str) -> None:
    rollout = replace(ROLLOUT, phase=phase, halt_reason="ring 1 failed its gate" if phase in (P.HALTED,) else None)
    found = decide_directive("ws-1", rollout, AssetTarget(asset_ring, state), NOW)
    assert found.action == action
    assert found.rollout == "r-000001"
    assert found.reason


def test_an_install_names_the_release_and_the_ring() -> None:
    found = decide_directive("ws-1", ROLLOUT, AssetTarget(1, A.APPLYING), NOW)
    assert (found.action, found.product, found.version, found.ring) == ("install", "acme/agent", "2.0", 1)
    assert found.reason == "ring 1 of rollout r-000001 is open: install acme/agent 2.0"
    assert found.retry_after == 0


def test_the_next_ring_is_told_what_it_waits_for() -> None:
    baking = replace(ROLLOUT, phase=P.BAKING, phase_since=NOW - timedelta(minutes=4))
    found = decide_directive("ws-1", baking, AssetTarget(2, A.PENDING), NOW)
    assert found.action == "wait"
    assert found.reason == "ring 2 opens after ring 1 passes its gate; ring 1 is baking until 12:06:00Z (6 min left)"
    assert found.retry_after == POLL_SOON
    later = decide_directive("ws-1", baking, AssetTarget(3, A.PENDING), NOW)
    assert later.reason.startswith("ring 3 opens after ring 2")
    assert later.retry_after == POLL_LATER


def test_a_halted_rollout_says_why_and_never_installs() -> None:
    halted = replace(ROLLOUT, phase=P.HALTED, halt_reason="ring 1 failed: srv-01 failed a service check")
    found = decide_directive("ws-1", halted, AssetTarget(1, A.PENDING), NOW)
    assert found.action == "wait"
    assert "srv-01 failed a service check" in found.reason
    assert "do not install acme/agent 2.0" in found.reason


def test_an_asset_of_the_open_ring_waits_until_the_controller_starts_its_install() -> None:
    pending = decide_directive("ws-1", ROLLOUT, AssetTarget(1, A.PENDING), NOW)
    assert (pending.action, pending.retry_after) == ("wait", POLL_SOON)
    assert pending.reason == "ring 1 of rollout r-000001 is open; the controller is about to start this asset"
    snapshot = replace(ROLLOUT, by_snapshot=True)
    assert decide_directive("ws-1", snapshot, AssetTarget(1, A.RESTORE_POINT_TAKEN), NOW).action == "wait"
    assert decide_directive("ws-1", snapshot, AssetTarget(1, A.APPLYING), NOW).action == "install"
    failed = decide_directive("ws-1", snapshot, AssetTarget(1, A.RESTORE_POINT_FAILED), NOW)
    assert failed.reason == "no verified restore point here, so rollout r-000001 will not install acme/agent 2.0"
    asked = decide_directive("ws-1", snapshot, AssetTarget(1, A.RESTORE_POINT_REQUESTED), NOW)
    assert asked.action == "wait"
    assert asked.reason.endswith("this asset is not ready to install acme/agent 2.0 yet")


def test_a_failed_rollback_is_not_retried_by_the_agent() -> None:
    rolling = replace(ROLLOUT, phase=P.ROLLING_BACK)
    found = decide_directive("ws-1", rolling, AssetTarget(1, A.ROLLBACK_FAILED), NOW)
    assert (found.action, found.retry_after) == ("wait", POLL_LATER)
    assert found.reason == "rolling back acme/agent 2.0 failed here; a person must look at this asset"


@pytest.mark.parametrize("phase", list(RolloutPhase))
@pytest.mark.parametrize("state", list(AssetState))
@pytest.mark.parametrize("asset_ring", [0, 1, 2])
def test_only_a_started_install_or_a_rollback_is_ever_ordered(
    phase: RolloutPhase, state: AssetState, asset_ring: int
) -> None:
    # The whole matrix of rollout phase x asset state: an agent acts only on what the controller recorded
    # as started (an install) or decided (a rollback of what was installed); every other pair waits.
    for by_snapshot in (False, True):
        rollout = replace(ROLLOUT, phase=phase, by_snapshot=by_snapshot)
        found = decide_directive("ws-1", rollout, AssetTarget(asset_ring, state), NOW)
        if phase is P.APPLYING and asset_ring == ROLLOUT.ring and state is A.APPLYING:
            assert found.action == "install"
        elif phase is P.ROLLING_BACK and state is A.ROLLING_BACK:
            assert found.action == "rollback"
        else:
            assert found.action == "wait"
            assert found.retry_after > 0
        assert found.reason


def test_the_most_urgent_rollout_wins() -> None:
    other = replace(ROLLOUT, id="r-000002", product="acme/av", phase=P.ROLLING_BACK)
    entries = [(ROLLOUT, AssetTarget(2, A.PENDING)), (other, AssetTarget(0, A.ROLLING_BACK))]
    assert choose_directive("ws-1", entries, NOW).rollout == "r-000002"
    assert choose_directive("ws-1", entries, NOW).action == "rollback"
    # Two waits: the oldest rollout (listed first) speaks.
    waits = [(ROLLOUT, AssetTarget(2, A.PENDING)), (replace(other, phase=P.BAKING), AssetTarget(2, A.PENDING))]
    assert choose_directive("ws-1", waits, NOW).rollout == "r-000001"


def test_an_asset_in_no_rollout_waits_long() -> None:
    found = choose_directive("printer-9", [], NOW)
    assert (found.action, found.rollout, found.retry_after) == ("wait", None, POLL_IDLE)
    assert found.reason == "no rollout driven by agents includes asset 'printer-9'"


@pytest.mark.parametrize("phase", list(RolloutPhase))
@pytest.mark.parametrize("state", list(AssetState))
def test_an_asset_not_held_of_record_is_never_told_to_install_but_always_to_roll_back(
    phase: RolloutPhase, state: AssetState
) -> None:
    """The estate of record changed under the rollout (issue 12): installs stop, and undoing one never waits on
    the record — a rollback the controller started is answered exactly as it would be for a held asset."""
    rollout = replace(ROLLOUT, phase=phase)
    held = decide_directive("ws-1", rollout, AssetTarget(1, state), NOW)
    not_held = decide_directive("ws-1", rollout, AssetTarget(1, state, of_record=False), NOW)
    assert not_held.action is not DirectiveAction.install
    if held.action is DirectiveAction.install:
        assert "no longer holds this asset of record" in not_held.reason
    else:
        assert not_held == held
