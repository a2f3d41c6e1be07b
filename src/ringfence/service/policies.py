"""What else happens when a rollout changes phase: the after-transition policies, named, in one table.

The state machine (``ringfence.core.rollout.state``) decides whether a rollout may move; once a move is written,
:data:`AFTER_TRANSITION` says what follows from it. Each :class:`TransitionPolicy` names the phases it
fires on (from and to) and why it exists, so reading this table answers "what does a halt do?" without
reading a repository. The SQL rollout session (``ringfence.service.rollouts``) runs the policies that fire
on a transition in the transaction that writes it: the transition and its side effects land together or
not at all. The in-memory repository of drills runs none: a drill has no incidents.

The idea is Prefect's orchestration policies (rules that name the states they govern, kept in an ordered
list), cut down to what ringfence needs: only after-transition effects, since whether a move is allowed
is the state machine's alone.

Policies, in the order they run:

- ``declare_incident_on_halt``: a halt that left assets failed declares an incident;
- ``settle_incident_on_end``: a rollout that ends rolled back or failed settles the incident its halt declared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ringfence.core.rollout.state import RolloutPhase, Transition
from ringfence.service.incidents import declare_for_halted_rollout, settle_for_ended_rollout

PolicyAction = Callable[[Session, Transition, str], None]
"""What a policy does: ``(session, transition, actor)``, in the caller's transaction. The transition names the
rollout (``transition.rollout_id``), its phases, its reason and its time; ``actor`` is who made the move."""

ANY_PHASE = frozenset(RolloutPhase)
"""For a policy that does not care where the rollout came from: the state machine already limits which phases
can precede the ones it fires on."""


@dataclass(frozen=True)
class TransitionPolicy:
    """One side effect of a phase change: fires on every written transition from one of ``from_phases`` to one
    of ``to_phases``, and runs ``action`` in the transition's transaction."""

    name: str
    why: str
    from_phases: frozenset[RolloutPhase]
    to_phases: frozenset[RolloutPhase]
    action: PolicyAction

    def fires_on(self, from_phase: RolloutPhase, to_phase: RolloutPhase) -> bool:
        return from_phase in self.from_phases and to_phase in self.to_phases


def _declare_incident(session: Session, transition: Transition, actor: str) -> None:
    # No actor passed: the incident is declared by "controller" whoever made the halt (who halted is in the
    # halt's own audit entry).
    declare_for_halted_rollout(session, transition.rollout_id, at=transition.at)


def _settle_incident(session: Session, transition: Transition, actor: str) -> None:
    settle_for_ended_rollout(session, transition, actor=actor)


AFTER_TRANSITION: tuple[TransitionPolicy, ...] = (
    TransitionPolicy(
        name="declare_incident_on_halt",
        why=(
            "A halt that left assets failed (install failed, rollback failed, or failed health since the install) "
            "is an incident: declared in the transaction of the halt, linked to the rollout and quoting its halt "
            "reason, so the recovery order and RTO clocks start at once. At most one per rollout; a halt that "
            "left nothing failed (a person aborted a healthy rollout) declares none."
        ),
        from_phases=ANY_PHASE,
        to_phases=frozenset({RolloutPhase.HALTED}),
        action=_declare_incident,
    ),
    TransitionPolicy(
        name="settle_incident_on_end",
        why=(
            "The halt's incident follows the rollback: a rollout that ends rolled back brought every updated "
            "asset back, so the incident's items are marked restored and it is closed; one that ends failed "
            "leaves it open with a note naming each asset that needs a person. No incident, or one already "
            "closed by a person: nothing happens."
        ),
        from_phases=ANY_PHASE,
        to_phases=frozenset({RolloutPhase.ROLLED_BACK, RolloutPhase.FAILED}),
        action=_settle_incident,
    ),
)
"""The after-transition policies, in the order they run. Add a side effect of a phase change here, never in a
repository method."""


def policies_for(from_phase: RolloutPhase, to_phase: RolloutPhase) -> tuple[TransitionPolicy, ...]:
    """The policies that fire on a move from ``from_phase`` to ``to_phase``, in the order they run."""
    return tuple(p for p in AFTER_TRANSITION if p.fires_on(from_phase, to_phase))


def run_after_transition(session: Session, transition: Transition, *, actor: str) -> tuple[str, ...]:
    """Run, in ``session``'s transaction, every policy that fires on ``transition`` (already written), in order.

    Returns the names of the policies run. A policy that raises aborts the transaction, transition included:
    a side effect never goes missing behind a move that was kept.
    """
    fired = policies_for(transition.from_phase, transition.to_phase)
    for policy in fired:
        policy.action(session, transition, actor)
    return tuple(p.name for p in fired)


__all__ = [
    "AFTER_TRANSITION",
    "ANY_PHASE",
    "PolicyAction",
    "TransitionPolicy",
    "policies_for",
    "run_after_transition",
]
