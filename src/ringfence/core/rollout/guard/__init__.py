"""The safety guard: before a ring opens, re-check the rules of the update format and refuse with a sentence.

The guard is the last line of defence against a planner or controller bug, so it shares no code with them:
it reads its own input types (:class:`GuardPlan`, the plan as persisted when the rollout was created, and
:class:`GuardState`, the rollout now) and works every rule out again from the text of the update format
(``update-and-drill-format.md``, rules 1–7). It imports nothing from the planner, reconcile, the gates, the
graph or impact. Pure: standard library and numpy, no I/O.

:func:`check_opening` is called before a ring opens, before a further canary wave of the current ring
opens, and before any batch of installs starts; ``starting`` are the assets about to be installed. It
returns every :class:`Violation` found (none: go ahead); :func:`refusal_sentence` turns them into the one
sentence a paused rollout shows. What each rule checks, exactly:

1. **Partition** — the persisted plan names each target once; the current assignment holds exactly the
   plan's targets, each in a ring the plan has; the ring being worked exists and is not empty; every
   asset in ``starting`` is a target, and none belongs to a ring after the one being worked. (A planned
   ring emptied at run time by replacements is fine, as long as it is not the one opening.)
2. **Coverage** — the plan has at least one canary ring and no more canary rings than rings; every
   target has a stratum; the canary rings (``0 .. canary_rings - 1``, which by numbering come before
   every other ring) currently hold at least one asset of every stratum among the targets; and nothing
   after the canary phase starts before every canary ring has passed its gate.
3. **Least critical canaries** — every target has an impact tier; in each stratum, the earliest canary
   ring that holds the stratum holds an asset of the stratum's highest (least critical) tier.
4. **Redundancy kept, canaries included** — for each non-exempt group (n distinct members, ``any: K``,
   n − K > 0), no ring of the plan as made holds more than n − K of its members, and no ring of the
   current assignment holds more than n − K of them not counting a target skipped before its install
   (``skipped`` or ``restore_point_failed``, final states: it is never updated in this rollout, so a
   replacement canary of its group may join its ring). A (group, ring) overfilled in the plan is reported
   once, with the plan's members.
5. **Criticality last** (a weak form, checkable without re-planning): among the rings after the canary
   phase, whenever ring i holds a target of tier t and a later ring j holds a target b of a higher tier
   (less critical, yet later), some non-exempt group of b is *full* in ring i — it holds n − K members
   there — so redundancy kept b out of ring i. Ring i's members are counted as planned *and* as now
   (their union), so a spare moved out of ring i into a canary ring as a replacement never removes the
   evidence that held when the plan was made. A plan built "least critical first, deferring an asset
   only when one of its groups is full" always passes; so does any run-time state that only moved spares
   into canary rings. Canary rings are exempt (rule 3 orders them).
6. **No stratum widens unjudged** — every asset in ``starting`` that belongs to a ring after the canary
   phase has a stratum of which at least one asset, in a canary ring that has passed its gate
   (``ring < min(judged_rings, canary_rings)``), is ``applied``.
7. **Redundancy at run time** — for each non-exempt group that holds an asset in ``starting``: its
   members unavailable now (a target being updated, failed, rolling back or whose rollback failed —
   ``applying``, ``failed``, ``rolling_back``, ``rollback_failed`` — and any member in ``down``, target or
   not), plus the members in ``starting`` not already counted, number at most n − K. Taking a restore
   point is not counted: a snapshot does not take the asset out of service. Groups ``starting`` does not
   touch are left alone: this opening cannot make them worse.

A group with n − K ≤ 0 cannot be updated without an outage; the plan warned about it, and it is exempt
from rules 4, 5 and 7 (:attr:`GuardPlan.exempt`).

Cost: the plan is compiled once, on the first check (integer ids, CSR arrays), and kept on the
:class:`GuardPlan`: keep one GuardPlan per rollout (the persisted plan never changes). Each check then reads
the assignment once — one sequential pass over its values when its keys come in the plan's order or in the
order of the last assignment checked, one look-up per target otherwise — and runs rules 1–5 as numpy
passes; the result of rules 2–5 is cached by a fingerprint of the assignment, so an unchanged assignment is
not checked twice. Rules 6 and 7 cost in proportion to ``starting`` and the members of the groups it
touches.
"""

from __future__ import annotations

from ringfence.core.rollout.guard.columns import Columns
from ringfence.core.rollout.guard.compiled import GuardGroup, GuardPlan, GuardState
from ringfence.core.rollout.guard.rules import check_opening, refusal_sentence
from ringfence.core.rollout.guard.violations import (
    ASSETS_PER_VIOLATION,
    RULES,
    SHOWN_PER_RULE,
    UNAVAILABLE_STATES,
    Violation,
)

__all__ = [
    "ASSETS_PER_VIOLATION",
    "RULES",
    "SHOWN_PER_RULE",
    "UNAVAILABLE_STATES",
    "Columns",
    "GuardGroup",
    "GuardPlan",
    "GuardState",
    "Violation",
    "check_opening",
    "refusal_sentence",
]
