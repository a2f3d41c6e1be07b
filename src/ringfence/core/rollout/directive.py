"""The directive rule, pure: what an asset's agent should do now — install, roll back or wait — given where
one rollout driven by agents is and where the asset is in it.

Agents pull: the controller moves a ring's assets to ``applying`` (or a bad release's assets to
``rolling_back``) and each asset's agent, asking for its directive, reads that as *install* (or *roll back*).
:func:`decide_directive` is the whole rule for one rollout, with a sentence saying why and a hint of when to
ask again; :func:`choose_directive` picks the most urgent over every agent rollout that includes the asset: a
rollback before an install, an install before a wait, the oldest rollout first.

An asset is told to *install* only once the controller has recorded its install as started (``applying``;
the controller does that before it calls the driver), never while it is merely pending in the open ring: so
every install an agent is ordered to do is one the controller waits for, records and can roll back, even
when the rollout halts in the meantime.

No I/O and no clock of its own: the time is a parameter (``now``). Where the answer is served from, and how
fresh it is kept, is the service's business (``ringfence.service.agents``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from ringfence.core.durations import humanize_duration
from ringfence.core.rollout.state import AssetState, RolloutPhase

POLL_SOON = 5
"""Seconds an agent should wait before asking again when something may change for it soon."""
POLL_LATER = 15
"""… when its ring is two or more rings away, or the rollout waits for a person to approve or start it."""
POLL_IDLE = 30
"""… when no agent rollout includes the asset."""


class DirectiveAction(StrEnum):
    install = "install"
    rollback = "rollback"
    wait = "wait"


_URGENCY = {DirectiveAction.rollback: 0, DirectiveAction.install: 1, DirectiveAction.wait: 2}


@dataclass(frozen=True)
class AgentRollout:
    """What a directive needs to know of one rollout driven by agents."""

    id: str
    phase: RolloutPhase
    ring: int
    ring_count: int
    product: str
    version: str
    bake: int
    by_snapshot: bool
    """The update rolls back by snapshot: an asset installs only once its restore point is taken."""
    phase_since: datetime
    halt_reason: str | None
    state_version: int


@dataclass(frozen=True)
class AssetTarget:
    """One asset's place in one rollout: its ring and how far it got."""

    ring: int
    state: AssetState
    of_record: bool = True
    """The rollout's estate version is the estate of record holding the asset. When it is not (a version
    planned before the estate changed, or an asset now held by another estate), the asset is never told to
    install for this rollout; it is still told to roll back, so that undoing an install never waits."""


@dataclass(frozen=True)
class Directive:
    """What an asset should do now, why, and when to ask again."""

    asset_id: str
    action: DirectiveAction
    reason: str
    retry_after: int
    rollout: str | None = None
    product: str | None = None
    version: str | None = None
    ring: int | None = None

    @property
    def is_actionable(self) -> bool:
        return self.action is not DirectiveAction.wait


def decide_directive(asset_id: str, rollout: AgentRollout, target: AssetTarget, now: datetime) -> Directive:
    """What ``asset_id`` should do now for ``rollout``, given where it is in it. Pure."""
    r, a, phase, state = rollout.ring, target.ring, rollout.phase, target.state
    release = f"{rollout.product} {rollout.version}"

    def act(action: DirectiveAction, reason: str) -> Directive:
        return Directive(asset_id, action, reason, 0, rollout.id, rollout.product, rollout.version, target.ring)

    def wait(reason: str, retry_after: int = POLL_SOON) -> Directive:
        return Directive(asset_id, DirectiveAction.wait, reason, retry_after, rollout.id, ring=target.ring)

    if state is AssetState.ROLLBACK_FAILED:
        # Whatever the rollout does next, the controller never rolls this asset back again.
        return wait(f"rolling back {release} failed here; a person must look at this asset", POLL_LATER)
    if phase is RolloutPhase.ROLLING_BACK:
        if state is AssetState.ROLLED_BACK:
            return wait(f"{release} was rolled back here; rollout {rollout.id} is rolling back the rest")
        if state is AssetState.ROLLING_BACK:
            why = f"rollout {rollout.id} is rolling back {release}"
            if rollout.halt_reason:
                why += f" ({rollout.halt_reason})"
            return act(DirectiveAction.rollback, why)
        if state in (AssetState.APPLIED, AssetState.FAILED):
            # Only once the controller has started this asset's rollback: it brings down members back first
            # and the rest as their groups' redundancy allows (rule 7), so not every asset goes at once.
            return wait(
                f"rollout {rollout.id} is rolling back {release}; the controller says when this asset's turn is"
            )
        if state is AssetState.APPLYING:
            # Rolled back once its install has finished, never in the middle (as reconcile does).
            return wait(f"rollout {rollout.id} is rolling back; report how the install of {release} ended")
        return wait(f"rollout {rollout.id} stopped before ring {a}; do not install {release}", POLL_LATER)

    if state is AssetState.SKIPPED:
        return wait(f"rollout {rollout.id} stopped before ring {a}; do not install {release}", POLL_LATER)
    if state is AssetState.RESTORE_POINT_FAILED:
        return wait(f"no verified restore point here, so rollout {rollout.id} will not install {release}", POLL_LATER)

    if phase is RolloutPhase.APPLYING and a == r:
        # Only once the controller has recorded this asset's install as started (``applying``, which also
        # means its restore point is verified when the update rolls back by snapshot): an install ordered
        # then is one the controller waits for and can roll back, even if the rollout halts meanwhile.
        if state is AssetState.APPLYING:
            if not target.of_record:
                return wait(
                    f"rollout {rollout.id} was planned on an estate version that no longer holds this asset of "
                    f"record; do not install {release} (re-plan the rollout on the current estate)",
                    POLL_LATER,
                )
            return act(DirectiveAction.install, f"ring {r} of rollout {rollout.id} is open: install {release}")
        if state in (AssetState.PENDING, AssetState.RESTORE_POINT_TAKEN):
            return wait(f"ring {r} of rollout {rollout.id} is open; the controller is about to start this asset")

    if state in (AssetState.APPLIED, AssetState.FAILED, AssetState.APPLYING):
        done = "installed" if state is not AssetState.APPLYING else "installing"
        if phase is RolloutPhase.HALTED:
            return wait(f"{release} {done}; rollout {rollout.id} halted: {rollout.halt_reason or 'no reason given'}")
        if phase is RolloutPhase.PAUSED:
            return wait(f"{release} {done}; rollout {rollout.id} is paused until a person resumes it")
        return wait(f"{release} {done}; {_ring_progress(rollout, now)}")

    # Not updated yet.
    if phase is RolloutPhase.PENDING:
        return wait(f"rollout {rollout.id} of {release} has not been started", POLL_LATER)
    if phase is RolloutPhase.AWAITING_APPROVAL:
        return wait(f"rollout {rollout.id} of {release} is awaiting approval", POLL_LATER)
    if phase is RolloutPhase.HALTED:
        reason = rollout.halt_reason or "no reason given"
        return wait(f"rollout {rollout.id} halted before ring {a}: {reason}; do not install {release}", POLL_LATER)
    if phase is RolloutPhase.PAUSED:
        return wait(f"rollout {rollout.id} is paused; ring {a} waits until a person resumes it", POLL_LATER)
    if a <= r:
        # In the open ring but not ready (a restore point still being taken), or a straggler of an earlier one.
        return wait(f"{_ring_progress(rollout, now)}; this asset is not ready to install {release} yet")
    gate = f"ring {a} opens after ring {r} passes its gate" if a == r + 1 else f"ring {a} opens after ring {a - 1}"
    return wait(f"{gate}; {_ring_progress(rollout, now)}", POLL_SOON if a == r + 1 else POLL_LATER)


def _ring_progress(rollout: AgentRollout, now: datetime) -> str:
    r = rollout.ring
    phase = rollout.phase
    if phase is RolloutPhase.BAKING:
        until = rollout.phase_since + timedelta(seconds=rollout.bake)
        left = max(0.0, (until - now).total_seconds())
        return f"ring {r} is baking until {until.strftime('%H:%M:%S')}Z ({humanize_duration(left)} left)"
    if phase is RolloutPhase.JUDGING:
        return f"ring {r} is being judged"
    if phase is RolloutPhase.TAKING_RESTORE_POINTS:
        return f"ring {r} is taking restore points"
    if phase is RolloutPhase.APPLYING:
        return f"ring {r} is installing"
    return f"rollout {rollout.id} is {phase.value}"


def choose_directive(asset_id: str, entries: Sequence[tuple[AgentRollout, AssetTarget]], now: datetime) -> Directive:
    """The most urgent directive over every agent rollout that includes ``asset_id`` (oldest first)."""
    if not entries:
        return Directive(
            asset_id,
            DirectiveAction.wait,
            f"no rollout driven by agents includes asset '{asset_id}'",
            POLL_IDLE,
        )
    found = [decide_directive(asset_id, rollout, target, now) for rollout, target in entries]
    # min() keeps the first of equals: the oldest rollout wins a tie.
    return min(found, key=lambda d: _URGENCY[d.action])


__all__ = [
    "POLL_IDLE",
    "POLL_LATER",
    "POLL_SOON",
    "AgentRollout",
    "AssetTarget",
    "Directive",
    "DirectiveAction",
    "choose_directive",
    "decide_directive",
]
