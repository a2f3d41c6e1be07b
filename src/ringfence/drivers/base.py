"""The driver protocol: the small, idempotent surface the rollout controller drives machines through.

A driver starts a *batch* (one kind of operation — take a restore point, apply the update, roll back — on
some assets of one rollout), polls it, cancels it, and reports each asset's latest health. Starting an
operation an asset has already had in this rollout does nothing and its result is reported as before:
that is what lets a controller killed between "decided" and "recorded" repeat its step safely.

Abilities a driver lacks raise :class:`~ringfence.errors.DriverError` with a sentence, e.g. "the
ansible driver has no snapshot playbook configured, so it cannot take restore points".

Drivers register under the entry point group ``ringfence.drivers``; :func:`load_driver` finds them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from ringfence.errors import InputError, Problem
from ringfence.gates import AssetHealth

ENTRY_POINT_GROUP = "ringfence.drivers"


class OperationKind(StrEnum):
    restore_point = "restore_point"
    apply = "apply"
    rollback = "rollback"


OperationStatus = Literal["running", "succeeded", "failed"]


@dataclass(frozen=True)
class Batch:
    """One kind of operation on some assets of one rollout, for one release."""

    rollout_id: str
    kind: OperationKind
    product: str
    version: str
    assets: tuple[str, ...]


@dataclass(frozen=True)
class OperationResult:
    """Where one asset's operation is. ``ref`` names a restore point once it is taken and verified."""

    asset_id: str
    status: OperationStatus
    detail: str = ""
    ref: str | None = None

    @property
    def is_final(self) -> bool:
        return self.status != "running"


@runtime_checkable
class Driver(Protocol):
    """What the controller needs from an execution backend. Every method is idempotent."""

    name: str

    def start(self, batch: Batch) -> None:
        """Start ``batch``'s operation on each asset that has not had it in this rollout yet."""

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        """A result for each asset of ``batch`` whose operation was started; never-started assets are left out."""

    def cancel(self, batch: Batch) -> None:
        """Stop what has not finished yet; finished operations keep their result."""

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        """The latest health of each asset that reported; silent assets are left out (unknown)."""

    def next_event_at(self) -> datetime | None:
        """When something will next change by itself (simulated drivers, for drills); real drivers: None."""


def available_drivers() -> tuple[str, ...]:
    """Names of the installed drivers, sorted."""
    from importlib.metadata import entry_points

    return tuple(sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))


def load_driver(name: str, **options: str) -> Driver:
    """The driver registered as ``name``, built with ``options`` (``--driver-option key=value``)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        installed = ", ".join(available_drivers()) or "none"
        raise InputError(
            [Problem(f"there is no driver '{name}'; the installed drivers are: {installed}", path=("--driver",))]
        )
    factory = found[0].load()
    try:
        driver = factory(**options)
    except TypeError as exc:
        raise InputError(
            [Problem(f"driver '{name}' does not take these options ({exc})", path=("--driver-option",))]
        ) from None
    if not isinstance(driver, Driver):
        raise InputError(f"the entry point for driver '{name}' does not build a driver (got {type(driver).__name__})")
    return driver


__all__ = [
    "ENTRY_POINT_GROUP",
    "Batch",
    "Driver",
    "OperationKind",
    "OperationResult",
    "OperationStatus",
    "available_drivers",
    "load_driver",
]
