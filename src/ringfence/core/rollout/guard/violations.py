"""What the guard finds: violations, as sentences, and the small helpers its modules share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

from ringfence.core.rollout.state import AssetState

Stratum = tuple[str | None, ...]
V = TypeVar("V")
T = TypeVar("T")
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

RULES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "partition",
        2: "coverage",
        3: "least critical canaries",
        4: "redundancy kept, canaries included",
        5: "criticality last",
        6: "no stratum widens unjudged",
        7: "redundancy at run time",
    }
)
"""The rules of the update format, by number, named as the format names them."""

# What each unavailable state does to the asset, for the sentence of rule 7 (singular, plural).
_UNAVAILABLE_WORDS: Final[Mapping[AssetState, tuple[str, str]]] = MappingProxyType(
    {
        AssetState.APPLYING: ("is being updated", "are being updated"),
        AssetState.FAILED: ("has failed", "have failed"),
        AssetState.ROLLING_BACK: ("is rolling back", "are rolling back"),
        AssetState.ROLLBACK_FAILED: ("could not be rolled back", "could not be rolled back"),
    }
)
UNAVAILABLE_STATES: Final[frozenset[AssetState]] = frozenset(_UNAVAILABLE_WORDS)
"""Target states that take an asset out of service because of the rollout (rule 7): being updated and
restarting (``applying``), failed, rolling back, or left broken by a rollback that failed."""

_SKIPPED_STATES: Final[frozenset[AssetState]] = frozenset({AssetState.SKIPPED, AssetState.RESTORE_POINT_FAILED})

SHOWN_PER_RULE: Final = 10
"""Violations of one rule given in full; any more are counted in one further violation of that rule."""
ASSETS_PER_VIOLATION: Final = 100
"""At most this many assets in :attr:`Violation.assets`; the sentence gives the full count."""

_NO_TIER: Final = -(2**62)  # a target the plan gives no tier: lower than any tier, and refused by rule 3
_NO_RING: Final = -1  # a target the assignment puts in no ring (or in a ring the plan does not have)
# Up to this many (group, ring) pairs are counted in a dense array; beyond, by sorting the pairs.
_DENSE_PAIRS: Final = 1 << 22


@dataclass(frozen=True)
class Violation:
    """One rule broken: its number, a sentence naming the group or stratum, and the assets concerned.

    ``assets`` holds at most :data:`ASSETS_PER_VIOLATION` ids; ``ring`` is the ring that was about to open.
    """

    rule: int
    sentence: str
    assets: tuple[str, ...]
    ring: int | None = None

    def __str__(self) -> str:
        return f"rule {self.rule} ({RULES[self.rule]}): {self.sentence}"


class _Findings:
    """Violations as they are found, at most ``ASSETS_PER_VIOLATION`` assets each."""

    def __init__(self) -> None:
        self._found: list[Violation] = []

    def add(self, rule: int, sentence: str, assets: Iterable[str]) -> None:
        self._found.append(Violation(rule, sentence, tuple(assets)[:ASSETS_PER_VIOLATION]))

    def extend(self, violations: Iterable[Violation]) -> None:
        self._found.extend(violations)

    def violations(self) -> tuple[Violation, ...]:
        return tuple(sorted(self._found, key=lambda v: v.rule))


def _distinct(values: IntArray) -> IntArray:
    """The distinct values, sorted: numpy 2's hash-based unique is many times slower on large integer arrays."""
    ordered = np.sort(values)
    if ordered.size == 0:
        return ordered
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]]


def _pointers(sorted_keys: IntArray, size: int) -> IntArray:
    """CSR row pointers for keys already sorted, one row per key ``0 .. size - 1``."""
    return np.concatenate([[0], np.cumsum(np.bincount(sorted_keys, minlength=size))]).astype(np.int64)


def _gather(ptr: IntArray, values: IntArray, rows: IntArray) -> tuple[IntArray, IntArray]:
    """The CSR rows ``rows`` concatenated, and for each value the position in ``rows`` it came from."""
    starts = ptr[rows]
    sizes = ptr[rows + 1] - starts
    total = int(sizes.sum())
    owner = np.repeat(np.arange(rows.size, dtype=np.int64), sizes)
    if total == 0:
        return owner, np.zeros(0, np.int64)
    # Position within its row, added to the row's start: one vectorised pass for any number of rows.
    offsets = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return owner, values[np.repeat(starts, sizes) + offsets]


def _pick(ids: list[str], numbers: IntArray) -> tuple[str, ...]:
    return tuple(ids[i] for i in numbers[:ASSETS_PER_VIOLATION].tolist())


def _pick_all(ids: Sequence[str], numbers: IntArray) -> list[str]:
    getter: Callable[[int], str] = ids.__getitem__
    return list(map(getter, numbers.tolist()))


def _stratum(stratum: Stratum) -> str:
    """``("host", "esxi", None, "north")`` → ``host/esxi/-/north``; the one stratum of no keys → ``(all)``."""
    return "/".join("-" if v is None else v for v in stratum) if stratum else "(all)"


def _plan_rings(n_rings: int) -> str:
    return "the plan has no ring" if n_rings == 0 else f"the plan has rings 0–{n_rings - 1} only"


def _canary_span(canary_rings: int) -> str:
    return "ring 0" if canary_rings <= 1 else f"rings 0–{canary_rings - 1}"


def _tier(tier: int) -> str:
    return "no tier" if tier == _NO_TIER else f"tier {tier}"


def _verb(n: int, singular: str, plural: str) -> str:
    return singular if n == 1 else plural


def _is_are(n: int) -> str:
    return _verb(n, "is", "are")


def _has_have(n: int) -> str:
    return _verb(n, "has", "have")
