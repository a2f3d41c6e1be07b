"""The driver protocol: the small, idempotent surface the rollout controller drives machines through.

A driver starts a *batch* (one kind of operation — take a restore point, apply the update, roll back — on
some assets of one rollout), polls it, cancels it, and reports each asset's latest health. Starting an
operation an asset has already had in this rollout does nothing and its result is reported as before:
that is what lets a controller killed between "decided" and "recorded" repeat its step safely.

Abilities a driver lacks raise :class:`~ringfence.core.errors.DriverError` with a sentence, e.g. "the
ansible driver has no snapshot playbook configured, so it cannot take restore points". A driver also
*declares* them, so that a rollout it cannot finish is refused before anything is stored or started
(:func:`refusal_for`), never found out half-way through a ring. Two optional hooks, each answering "why
not?" with a sentence, or None when it can (or cannot tell):

- ``always_refuses(kind, update)``, a class method: what the driver refuses whatever its options (the
  ``agent`` driver never takes restore points). Asked when a rollout is created, before any driver is built;
- ``refuses(kind, update)``, on a built driver: what it refuses with the options it was given (the
  ``ansible`` driver without a ``snapshot_playbook``). Asked when ``rollout start`` builds the driver, and by
  the server's controller loop before it drives a rollout.

A driver that declares nothing is taken to honour everything (the ``simulated`` driver does); if it then
refuses at run time, the controller halts the rollout with its sentence.

Drivers register under the entry point group ``ringfence.drivers``; :func:`load_driver` finds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ringfence.core.errors import InputError, Problem
from ringfence.core.gates import AssetHealth

if TYPE_CHECKING:
    from ringfence.core.update import Update

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


# ------------------------------------------------------------------------------------------ abilities


def operations_for(update: Update) -> tuple[OperationKind, ...]:
    """The operations a rollout of ``update`` may ask its driver for, in the order it asks.

    ``rollback: snapshot`` takes a restore point before each install and restores from it; ``reinstall``
    rolls back without one; ``none`` never rolls back (a person cannot ask for it either).
    """
    if update.rollback == "snapshot":
        return (OperationKind.restore_point, OperationKind.apply, OperationKind.rollback)
    if update.rollback == "reinstall":
        return (OperationKind.apply, OperationKind.rollback)
    return (OperationKind.apply,)


def refusal_for(
    driver: str | type | Driver, update: Update, *, operations: Iterable[OperationKind] | None = None
) -> str | None:
    """Why ``driver`` cannot carry a rollout of ``update`` through, in a sentence; None when nothing says it cannot.

    ``driver`` is a registered driver's name or class (before its options are known: only what it refuses
    whatever its options counts) or a built driver (what it refuses with its options too). ``operations``:
    only these (default: every operation the update may need, :func:`operations_for`). A name no driver is
    registered under, or a driver that declares nothing, refuses nothing here.
    """
    if isinstance(driver, str):
        found = _registered_class(driver)
        if found is None:
            return None
        driver = found
    asked = tuple(operations) if operations is not None else operations_for(update)
    hooks = [getattr(driver, "always_refuses", None)]
    if not isinstance(driver, type):
        hooks.append(getattr(driver, "refuses", None))
    for kind in asked:
        for hook in hooks:
            if not callable(hook):
                continue
            reason = hook(kind, update)
            if isinstance(reason, str) and reason.strip():
                return reason
    return None


def require_able(
    driver: str | type | Driver,
    update: Update,
    *,
    operations: Iterable[OperationKind] | None = None,
    source: str | None = None,
    text: str | None = None,
) -> None:
    """Raise :class:`~ringfence.core.errors.InputError` when ``driver`` cannot carry ``update`` through (see
    :func:`refusal_for`), naming the update's ``rollback`` field of ``source``, at its line in ``text`` when
    that is given."""
    reason = refusal_for(driver, update, operations=operations)
    if reason is None:
        return
    default = "" if "rollback" in update.model_fields_set else ", the default"
    message = f"{reason} (the update says rollback: {update.rollback}{default})"
    problem = Problem(message, path=("update", "rollback"), source=source)
    if text is not None:
        from ringfence.core.estate import locate_problems

        raise InputError(locate_problems([problem], text))
    raise InputError([problem])


def _registered_class(name: str) -> type | None:
    """The class registered as driver ``name`` (loaded, not built), or None when there is none to ask."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        return None
    try:
        factory = found[0].load()
    except (ImportError, AttributeError):
        # A driver that cannot even be imported is reported when it is built (`rollout start`), where its
        # options are given too; asking it about abilities here would only hide that sentence.
        return None
    return factory if isinstance(factory, type) else None


__all__ = [
    "ENTRY_POINT_GROUP",
    "Batch",
    "Driver",
    "OperationKind",
    "OperationResult",
    "OperationStatus",
    "available_drivers",
    "load_driver",
    "operations_for",
    "refusal_for",
    "require_able",
]
