"""The rollout state machine: one table of allowed transitions, one function that changes a phase.

Every phase change of a rollout goes through :func:`transition`, which checks the move against
:data:`ALLOWED`, explains a refusal in a sentence and returns the new state together with the
:class:`Transition` record that the store writes to the audit log. Nothing assigns a phase directly.

Every change of a target asset's state goes through the same kind of door, :func:`move_asset`, which
checks it against :data:`ASSET_MOVES`: both repositories call it for each asset they are about to write,
so a bug that decides an impossible move (an applied asset back to applying) fails loudly, with a
sentence, before anything is written.

Invariants of a :class:`RolloutState`:

- ``paused_from`` is set exactly when the phase is ``paused`` (it names the phase to resume into);
- ``halt_reason`` is set from the moment a rollout is halted and kept while it is rolled back or closed;
- ``ring`` only moves forward, by one, when a verdict on the current ring starts the next one — or stays, when
  a verdict on a canary ring starts a further canary wave of it (a replacement for a skipped canary);
- ``version`` grows by one on every transition, so a writer holding a stale state is refused.

Pure: standard library only, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType

from ringfence.core.errors import ConflictError, InputError


class RolloutPhase(StrEnum):
    """Where a rollout is in its life. The running phases repeat once per ring."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    TAKING_RESTORE_POINTS = "taking_restore_points"
    APPLYING = "applying"
    BAKING = "baking"
    JUDGING = "judging"
    PAUSED = "paused"
    HALTED = "halted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """A terminal rollout never changes again."""
        return self in _TERMINAL

    @property
    def is_running(self) -> bool:
        """The rollout is working through a ring (the controller has something to drive)."""
        return self in _RUNNING


_TERMINAL = frozenset({RolloutPhase.COMPLETED, RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED})
_RUNNING = frozenset(
    {
        RolloutPhase.TAKING_RESTORE_POINTS,
        RolloutPhase.APPLYING,
        RolloutPhase.BAKING,
        RolloutPhase.JUDGING,
    }
)

_P = RolloutPhase
ALLOWED: Mapping[RolloutPhase, frozenset[RolloutPhase]] = MappingProxyType(
    {
        # Restore points come first when the update rolls back by snapshot; otherwise ring 0 is applied.
        _P.PENDING: frozenset({_P.TAKING_RESTORE_POINTS, _P.APPLYING, _P.FAILED}),
        _P.AWAITING_APPROVAL: frozenset({_P.PENDING, _P.FAILED}),
        _P.TAKING_RESTORE_POINTS: frozenset({_P.APPLYING, _P.PAUSED, _P.HALTED}),
        _P.APPLYING: frozenset({_P.BAKING, _P.PAUSED, _P.HALTED}),
        _P.BAKING: frozenset({_P.JUDGING, _P.PAUSED, _P.HALTED}),
        # Passed: next ring or done. Inconclusive or error: a human decides. Failed: halt.
        _P.JUDGING: frozenset({_P.TAKING_RESTORE_POINTS, _P.APPLYING, _P.COMPLETED, _P.PAUSED, _P.HALTED}),
        _P.PAUSED: frozenset({_P.TAKING_RESTORE_POINTS, _P.APPLYING, _P.BAKING, _P.JUDGING, _P.HALTED}),
        _P.HALTED: frozenset({_P.ROLLING_BACK, _P.FAILED}),
        _P.ROLLING_BACK: frozenset({_P.ROLLED_BACK, _P.FAILED}),
        _P.ROLLED_BACK: frozenset(),
        _P.COMPLETED: frozenset(),
        _P.FAILED: frozenset(),
    }
)
"""Every allowed move, by phase. A pair not listed here is refused by :func:`transition`."""

# Why a phase cannot go where it was asked to: the second half of a refusal's sentence.
_WHAT_COMES_NEXT: Mapping[RolloutPhase, str] = MappingProxyType(
    {
        _P.PENDING: "a rollout starts by taking restore points or applying ring 0",
        _P.AWAITING_APPROVAL: "a rollout awaiting approval is approved (pending) or rejected (failed) first",
        _P.TAKING_RESTORE_POINTS: "restore points are followed by applying the ring, or a pause or halt",
        _P.APPLYING: "an applied ring bakes next, or the rollout pauses or halts",
        _P.BAKING: "a ring is judged after its bake, or the rollout pauses or halts",
        _P.JUDGING: ("a verdict starts the next ring, completes the rollout, pauses it for a human or halts it"),
        _P.PAUSED: "a paused rollout resumes where it paused or is halted",
        _P.HALTED: "a halted rollout is rolled back or closed as failed",
        _P.ROLLING_BACK: "a rollback ends rolled back or failed",
    }
)

# Moves that begin a new ring: leaving judging for the next ring's first step.
_NEXT_RING_TARGETS = frozenset({_P.TAKING_RESTORE_POINTS, _P.APPLYING})


class AssetState(StrEnum):
    """Where one target asset is within a rollout.

    ``pending`` → (``restore_point_requested`` → ``restore_point_taken`` | ``restore_point_failed``) →
    ``applying`` → ``applied`` | ``failed`` → ``rolling_back`` → ``rolled_back`` | ``rollback_failed``;
    an asset the rollout never reached ends ``skipped``. Reconcile (``ringfence.core.rollout.reconcile``)
    decides each move; ``detail`` only says more, it never carries a state.
    """

    PENDING = "pending"
    # A restore point was asked for and is being taken: the driver owes its result.
    RESTORE_POINT_REQUESTED = "restore_point_requested"
    RESTORE_POINT_TAKEN = "restore_point_taken"
    # Never updated afterwards: an asset whose restore point failed is skipped and reported.
    RESTORE_POINT_FAILED = "restore_point_failed"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    # Never rolled back again by the controller: a person must look at the asset.
    ROLLBACK_FAILED = "rollback_failed"
    SKIPPED = "skipped"


_A = AssetState
ASSET_MOVES: Mapping[AssetState, frozenset[AssetState]] = MappingProxyType(
    {
        # Asked for a restore point (rollback by snapshot), installed at once, or never reached.
        _A.PENDING: frozenset({_A.RESTORE_POINT_REQUESTED, _A.APPLYING, _A.SKIPPED}),
        _A.RESTORE_POINT_REQUESTED: frozenset({_A.RESTORE_POINT_TAKEN, _A.RESTORE_POINT_FAILED, _A.SKIPPED}),
        # Skipped with its restore point taken: its stratum had no judged canary when its ring opened (rule 6).
        _A.RESTORE_POINT_TAKEN: frozenset({_A.APPLYING, _A.SKIPPED}),
        _A.RESTORE_POINT_FAILED: frozenset(),
        # Skipped when the driver refused to start the install: never touched, so nothing to roll back.
        _A.APPLYING: frozenset({_A.APPLIED, _A.FAILED, _A.SKIPPED}),
        # A failed install is rolled back with the rest: it may have left half the update behind.
        _A.APPLIED: frozenset({_A.ROLLING_BACK}),
        _A.FAILED: frozenset({_A.ROLLING_BACK}),
        _A.ROLLING_BACK: frozenset({_A.ROLLED_BACK, _A.ROLLBACK_FAILED}),
        _A.ROLLED_BACK: frozenset(),
        _A.ROLLBACK_FAILED: frozenset(),
        _A.SKIPPED: frozenset(),
    }
)
"""Every move of an asset's state that reconcile and the controller make; :func:`move_asset` refuses any
other. An asset with no move left is done with this rollout."""

# Why an asset cannot go where it was asked to: the second half of a refusal's sentence.
_ASSET_WHAT_COMES_NEXT: Mapping[AssetState, str] = MappingProxyType(
    {
        _A.PENDING: "an asset not reached yet asks for a restore point, starts its install or is skipped",
        _A.RESTORE_POINT_REQUESTED: "a restore point asked for is taken or fails, or the asset is skipped",
        _A.RESTORE_POINT_TAKEN: "an asset with its restore point taken starts its install or is skipped",
        _A.APPLYING: "an install ends applied or failed, or is skipped when the driver refused to start it",
        _A.APPLIED: "an applied asset can only be rolled back",
        _A.FAILED: "a failed install can only be rolled back",
        _A.ROLLING_BACK: "a rollback ends rolled_back or rollback_failed",
    }
)


class TransitionRejected(ConflictError):  # noqa: N818 - the name the rest of ringfence knows it by
    """A phase change the state machine does not allow; the message says why in a sentence."""


class AssetMoveRejected(ConflictError):  # noqa: N818 - named like TransitionRejected, its twin for assets
    """A change of an asset's state that :data:`ASSET_MOVES` does not allow; the message says why in a sentence.

    Only a bug decides such a move (reconcile and the controller make none): it is refused before it is written.
    """


@dataclass(frozen=True)
class RolloutState:
    """The part of a rollout the state machine owns. Change it only through :func:`transition`."""

    id: str
    phase: RolloutPhase
    ring: int
    paused_from: RolloutPhase | None
    halt_reason: str | None
    version: int
    updated_at: datetime


@dataclass(frozen=True)
class Transition:
    """One accepted phase change, as it is written to the audit log."""

    rollout_id: str
    from_phase: RolloutPhase
    to_phase: RolloutPhase
    ring: int
    reason: str
    at: datetime

    def __str__(self) -> str:
        return (
            f"rollout {self.rollout_id} went from {self.from_phase} to {self.to_phase} "
            f"at ring {self.ring}: {self.reason}"
        )


def new_rollout_state(rollout_id: str, *, at: datetime, needs_approval: bool) -> RolloutState:
    """The state of a rollout just created: pending, or awaiting approval when someone must approve it."""
    if not rollout_id.strip():
        raise InputError("a rollout needs a non-empty id")
    phase = RolloutPhase.AWAITING_APPROVAL if needs_approval else RolloutPhase.PENDING
    return RolloutState(
        id=rollout_id,
        phase=phase,
        ring=0,
        paused_from=None,
        halt_reason=None,
        version=1,
        updated_at=_utc(at, rollout_id),
    )


def transition(
    state: RolloutState,
    to: RolloutPhase,
    reason: str,
    *,
    at: datetime,
    ring: int | None = None,
) -> tuple[RolloutState, Transition]:
    """Move ``state`` to phase ``to`` for ``reason``: the only way a rollout's phase changes.

    ``ring`` is the ring the rollout is at after the move. Leaving ``judging`` for restore points or
    applying starts the next ring, so there ``ring`` defaults to (and must equal) the current ring + 1;
    on every other move the ring stays and ``ring``, when given, must equal the current one.

    Raises :class:`TransitionRejected` with a sentence naming both phases when the move is not allowed,
    when a paused rollout is resumed into a phase other than the one it paused from, when the ring
    does not follow, or when ``reason`` is empty.
    """
    to = RolloutPhase(to)
    prefix = f"rollout {state.id} cannot go from {state.phase} to {to}"
    if not reason.strip():
        raise TransitionRejected(
            f"{prefix} without a reason: every transition is recorded in the audit log with why it happened"
        )
    when = _utc(at, state.id)

    if to not in ALLOWED[state.phase]:
        raise TransitionRejected(f"{prefix}: {_why_not(state.phase, to)}")

    if state.phase is RolloutPhase.PAUSED and to is not RolloutPhase.HALTED and to is not state.paused_from:
        # Resuming anywhere else would skip or repeat work (e.g. apply a ring that was never judged).
        raise TransitionRejected(f"{prefix}: it paused while {state.paused_from} and resumes there (or is halted)")

    new_ring = _ring_after(state, to, ring, prefix)

    new_state = replace(
        state,
        phase=to,
        ring=new_ring,
        paused_from=state.phase if to is RolloutPhase.PAUSED else None,
        halt_reason=reason if to is RolloutPhase.HALTED else state.halt_reason,
        version=state.version + 1,
        updated_at=when,
    )
    record = Transition(
        rollout_id=state.id,
        from_phase=state.phase,
        to_phase=to,
        ring=new_ring,
        reason=reason,
        at=when,
    )
    return new_state, record


def move_asset(asset_id: str, frm: AssetState, to: AssetState, *, rollout_id: str) -> None:
    """Check that asset ``asset_id`` of rollout ``rollout_id`` may go from ``frm`` to ``to``: the door every
    write of an asset's progress passes, in both repositories, before anything is written.

    ``to`` equal to ``frm`` is no move (a new detail, or a ring move, keeps the state) and always passes.
    Raises :class:`AssetMoveRejected` with a sentence naming the rollout, the asset and both states when
    ``to`` is not in ``ASSET_MOVES[frm]``.
    """
    frm, to = AssetState(frm), AssetState(to)
    if to is frm or to in ASSET_MOVES[frm]:
        return
    why = _ASSET_WHAT_COMES_NEXT.get(frm, f"{frm} is final for this rollout")
    raise AssetMoveRejected(f"rollout {rollout_id}: asset {asset_id} cannot go from {frm} to {to}: {why}")


def check_asset_moves(
    rollout_id: str, current: Mapping[str, AssetState], moves: Iterable[tuple[str, AssetState]]
) -> None:
    """:func:`move_asset` over a batch of ``(asset_id, to)`` moves, in order, from the ``current`` states.

    A later move of an asset in the same batch starts where the earlier one left it, as the writes will.
    The whole batch is checked before the caller writes any of it, so a refused batch changes nothing.
    """
    moved: dict[str, AssetState] = {}
    for asset_id, to in moves:
        move_asset(asset_id, moved.get(asset_id, current[asset_id]), to, rollout_id=rollout_id)
        moved[asset_id] = to


def _why_not(frm: RolloutPhase, to: RolloutPhase) -> str:
    if frm.is_terminal:
        return f"{frm} is terminal"
    if frm is to:
        return f"it is already {frm}"
    return _WHAT_COMES_NEXT[frm]


def _ring_after(state: RolloutState, to: RolloutPhase, ring: int | None, prefix: str) -> int:
    starts_next_ring = state.phase is RolloutPhase.JUDGING and to in _NEXT_RING_TARGETS
    expected = state.ring + 1 if starts_next_ring else state.ring
    if ring is None or ring == expected:
        return expected
    if starts_next_ring and ring == state.ring:
        return ring  # a further canary wave of the same ring: only said explicitly, never by default
    if starts_next_ring:
        why = f"a passed ring {state.ring} is followed by ring {expected}, not ring {ring}"
    else:
        why = f"the rollout stays at ring {state.ring} (asked for ring {ring}); only a verdict starts a ring"
    raise TransitionRejected(f"{prefix}: {why}")


def _utc(at: datetime, rollout_id: str) -> datetime:
    # A naive time is ambiguous between controllers in different zones; refuse it rather than guess.
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError(f"rollout {rollout_id}: the time {at.isoformat()} has no timezone; give it in UTC")
    return at.astimezone(UTC)


__all__ = [
    "ALLOWED",
    "ASSET_MOVES",
    "AssetMoveRejected",
    "AssetState",
    "RolloutPhase",
    "RolloutState",
    "Transition",
    "TransitionRejected",
    "check_asset_moves",
    "move_asset",
    "new_rollout_state",
    "transition",
]
