"""The plan a rollout follows, as it is persisted: a typed record with one codec.

A rollout is planned once, when it is created; from then on the controller, the safety guard, the status
pages and the agents read the plan back from the store. :class:`StoredPlan` is that plan as a value, and
:meth:`StoredPlan.to_document` / :meth:`StoredPlan.from_document` the only way it becomes JSON and back —
nothing else reads the stored dictionary.

Plans stored before canary waves and run-time redundancy (no ``canary_rings``, ``groups`` or ``tiers``)
read back as one canary ring for the ``ringfence`` strategy, no groups and no tiers: the rules that need
those facts then have nothing to hold the rollout to, exactly as when it was created. Plans stored before a
rollout could name its health source (no ``health_source``) read back as judged by their driver, as they were.

Pure: standard library and the core only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ringfence.core.driver import DRIVERS_OWN_HEALTH
from ringfence.core.errors import ConflictError


class MemberNumbers(NamedTuple):
    """A group's members as the plan numbers them: what lets the safety guard read a million-target plan's
    groups without looking each member's id up among the targets (a second of its check at a million).

    ``targets`` are the members that are targets of the rollout, each by its position among the plan's targets
    (its rings read in order, each ring in its own order), ascending, each once; ``outside`` are the members
    outside the rollout, by id."""

    targets: tuple[int, ...]
    outside: tuple[str, ...]


@dataclass(frozen=True)
class RedundancyGroup:
    """An ``any: K`` group with at least one target among its members: its owners need K members up."""

    owners: tuple[str, ...]
    members: tuple[str, ...]
    """Every member, target of the rollout or not, sorted."""
    k: int
    numbers: MemberNumbers | None = field(default=None, compare=False, repr=False)
    """The same members by number, when the plan was made (or persisted) with them; None for a group built by
    hand or read from a plan stored before numbers were kept (its members are then looked up by id)."""

    @property
    def capacity(self) -> int:
        """How many members may be unavailable at once: n − K (≤ 0: the group cannot lose any)."""
        return len(self.members) - self.k

    @property
    def is_exempt(self) -> bool:
        """No slack at all: the plan warned that updating any member is an outage; no rule can keep it up."""
        return self.capacity <= 0

    def describe(self, limit: int = 4) -> str:
        """``epr needs 1 of 2 (epr-db-1, epr-db-2) up``."""
        owners = ", ".join(self.owners[:2]) + (f" and {len(self.owners) - 2} more" if len(self.owners) > 2 else "")
        shown = ", ".join(self.members[:limit]) + (", …" if len(self.members) > limit else "")
        return f"{owners} needs {self.k} of {len(self.members)} ({shown}) up"


@dataclass(frozen=True)
class StoredPlan:
    """A rollout's plan: its strategy, the rings and the facts the run-time rules need."""

    strategy: str
    gate_mode: str
    """``statistical``, ``any-failure`` or ``none`` (``ringfence.core.rollout.strategy.GateMode``)."""
    rolls_back_on_halt: bool
    bake: int
    driver: str
    rings: tuple[tuple[str, ...], ...]
    """The planned membership of each ring; a replacement canary may later move (see ``rollout_assets``)."""
    canary_rings: int
    """Rings ``0 .. canary_rings - 1`` are the canary phase (0 for strategies without canaries)."""
    tiers: Mapping[str, int] = field(default_factory=dict)
    """Each target's impact tier (1 most critical … 5 nothing depends on it)."""
    groups: tuple[RedundancyGroup, ...] = ()
    warnings: tuple[str, ...] = ()
    hold_override: Mapping[str, str] | None = None
    health_source: str = DRIVERS_OWN_HEALTH
    """What judges the rollout's health: ``driver`` (its driver's own reading) or a registered health source
    (``ringfence.health_sources``: ``heartbeats``, ``ansible`` …), so one thing may install and another judge."""
    ring_windows: tuple[tuple[int, ...], ...] = ()
    """For each planned ring, the indexes of the update's window rules that apply to one of its assets
    (``ringfence.core.windows``); empty when the update has no windows."""

    @property
    def ring_count(self) -> int:
        return len(self.rings)

    @property
    def has_canaries(self) -> bool:
        return self.canary_rings > 0

    def is_canary_ring(self, index: int) -> bool:
        return index < self.canary_rings

    def ring_name(self, index: int) -> str:
        """``canary``, ``canary wave 2`` …, then ``ring N`` (the planner's names)."""
        if index == 0 and self.canary_rings > 0:
            return "canary"
        if index < self.canary_rings:
            return f"canary wave {index + 1}"
        return f"ring {index}"

    def outside_members(self, targets: frozenset[str] | set[str]) -> tuple[str, ...]:
        """Members of the groups that are not targets: their health counts against the groups too."""
        outside = {m for g in self.groups for m in g.members if m not in targets}
        return tuple(sorted(outside))

    # ------------------------------------------------------------------------------------- the codec

    def to_document(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "gate_mode": self.gate_mode,
            "rolls_back_on_halt": self.rolls_back_on_halt,
            "bake": self.bake,
            "driver": self.driver,
            "rings": [list(ring) for ring in self.rings],
            "canary_rings": self.canary_rings,
            "tiers": [[self.tiers.get(a, 5) for a in ring] for ring in self.rings] if self.tiers else None,
            "groups": [_group_document(g) for g in self.groups],
            "warnings": list(self.warnings),
            "hold_override": dict(self.hold_override) if self.hold_override else None,
            "health_source": self.health_source,
            # Only when there are windows: a plan without them is stored as it always was.
            **({"ring_windows": [list(r) for r in self.ring_windows]} if any(self.ring_windows) else {}),
        }

    @classmethod
    def from_document(cls, document: object, *, rollout_id: str = "?") -> StoredPlan:
        """The plan stored for ``rollout_id``. Raises ConflictError when the row holds no readable plan."""
        if not isinstance(document, Mapping):
            raise ConflictError(f"rollout {rollout_id} has no stored plan")
        try:
            rings = tuple(tuple(str(a) for a in ring) for ring in _list(document["rings"]))
            strategy = str(document["strategy"])
            canary = document.get("canary_rings")
            # Plans stored before canary waves: the ringfence strategy's ring 0 was its one canary ring.
            canary_rings = int(canary) if canary is not None else (1 if strategy == "ringfence" and rings else 0)
            tiers: dict[str, int] = {}
            stored_tiers = document.get("tiers")
            if stored_tiers:
                for ring, ring_tiers in zip(rings, _list(stored_tiers), strict=True):
                    tiers.update(zip(ring, (int(t) for t in _list(ring_tiers)), strict=True))
            n_targets = sum(map(len, rings))
            groups = tuple(_group_from_document(g, n_targets) for g in _list(document.get("groups") or []))
            override = document.get("hold_override")
            return cls(
                strategy=strategy,
                gate_mode=str(document["gate_mode"]),
                rolls_back_on_halt=bool(document["rolls_back_on_halt"]),
                bake=int(document["bake"]),
                driver=str(document.get("driver") or "simulated"),
                rings=rings,
                canary_rings=min(canary_rings, len(rings)),
                tiers=tiers,
                groups=groups,
                warnings=tuple(str(w) for w in _list(document.get("warnings") or [])),
                hold_override={str(k): str(v) for k, v in override.items()} if isinstance(override, Mapping) else None,
                health_source=str(document.get("health_source") or DRIVERS_OWN_HEALTH),
                ring_windows=tuple(tuple(int(i) for i in _list(r)) for r in _list(document.get("ring_windows") or [])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConflictError(f"rollout {rollout_id} has a stored plan that cannot be read ({exc!r})") from None


def _group_document(group: RedundancyGroup) -> dict[str, Any]:
    document: dict[str, Any] = {"owners": list(group.owners), "members": list(group.members), "k": group.k}
    if group.numbers is not None:
        document["targets"] = list(group.numbers.targets)
        document["outside"] = list(group.numbers.outside)
    return document


def _group_from_document(document: Mapping[str, Any], n_targets: int) -> RedundancyGroup:
    members = tuple(map(str, _list(document["members"])))
    numbers = None
    if "targets" in document:
        targets = tuple(map(int, _list(document["targets"])))
        outside = tuple(map(str, _list(document.get("outside") or [])))
        # Numbers that cannot be the members' are a stored plan that cannot be read, not a plan to guard on the
        # wrong members (the guard checks each number's range and order again).
        if len(targets) + len(outside) != len(members) or (targets and not 0 <= targets[0] <= targets[-1] < n_targets):
            raise ValueError(
                f"a group's numbers ({len(targets)} targets, {len(outside)} outside) do not match its "
                f"{len(members)} members among {n_targets} targets"
            )
        numbers = MemberNumbers(targets, outside)
    return RedundancyGroup(
        owners=tuple(map(str, _list(document["owners"]))),
        members=members,
        k=int(document["k"]),
        numbers=numbers,
    )


def _list(value: object) -> Sequence[Any]:
    if isinstance(value, list | tuple):
        return value
    raise TypeError(f"expected a list, found {type(value).__name__}")


__all__ = ["MemberNumbers", "RedundancyGroup", "StoredPlan"]
