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

One more optional hook, for drivers whose restore points cost something while they are kept (a vSphere snapshot
grows with every write): ``release_restore_points(rollout_id)``, on a built driver, lets go of the restore points
rollout ``rollout_id`` still holds and returns a sentence for each (removed, already gone, or not removed and
why). It must be idempotent. The controller calls it (:func:`release_restore_points`) once the rollout has
completed or rolled back, never when it failed (a person may still need a restore point), and records the
sentences in the rollout's audit log.

Options: a driver declares the options (``--driver-option``) it takes once, as :class:`DriverOptions` (name, kind,
default, bounds, help), which reads and checks them (a bad one is an InputError naming it) and lists them.

Health: what judges a rollout is a :class:`HealthSource`, by default the driver's own ``observe``.

Drivers register under the entry point group ``ringfence.drivers`` and health sources under
``ringfence.health_sources``; ``ringfence.drivers.registry`` finds and builds them (this module is pure).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from ringfence.core.durations import format_duration, parse_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.gates import AssetHealth

if TYPE_CHECKING:
    from ringfence.core.update import Update

ENTRY_POINT_GROUP = "ringfence.drivers"
HEALTH_SOURCE_GROUP = "ringfence.health_sources"


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


# ------------------------------------------------------------------------------------------ options

OptionKind = Literal["text", "path", "duration", "number", "whole", "flag", "choice", "ids"]
"""How an option's value is read: free text, a file path (its existence is the driver's to check), a
duration (``30s``, ``5m``: :func:`~ringfence.core.durations.parse_duration`), a number, a whole number,
``true``/``false``, one of ``choices``, or comma-separated asset ids."""

_KIND_WORDS: Mapping[str, str] = {
    "text": "TEXT",
    "path": "PATH",
    "duration": "DURATION",
    "number": "NUMBER",
    "whole": "N",
    "flag": "true|false",
    "choice": "CHOICE",
    "ids": "ID,ID,…",
}

OptionValue = str | int | float | bool | frozenset[str] | None


@dataclass(frozen=True)
class DriverOption:
    """One ``--driver-option key=value`` a driver takes: read, bounded, defaulted and explained from here.

    ``default`` is written as a person would give it (``"2m"``); None: no default (the option is unset unless
    ``required``). ``minimum``/``maximum`` bound numbers, whole numbers and durations (in seconds).
    ``expected`` replaces the generated complaint about a bad value ("expected …") when the driver words it
    its own way.
    """

    name: str
    help: str
    kind: OptionKind = "text"
    default: str | None = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    expected: str | None = None

    @property
    def metavar(self) -> str:
        return "|".join(self.choices) if self.kind == "choice" and self.choices else _KIND_WORDS[self.kind]

    def describe(self) -> str:
        """One line of help: the option, what it is, its default and bounds."""
        extra: list[str] = []
        if self.required:
            extra.append("required")
        if self.default is not None:
            extra.append(f"default {self.default}")
        if self.minimum is not None and self.kind != "duration":
            extra.append(f"at least {self.minimum:g}")
        if self.maximum is not None:
            shown = format_duration(self.maximum) if self.kind == "duration" else f"{self.maximum:g}"
            extra.append(f"at most {shown}")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{self.name}={self.metavar}: {self.help}{tail}"


@dataclass(frozen=True)
class DriverOptions:
    """The options one driver takes, declared once: :meth:`read` checks and types them, :meth:`describe`
    lists them for ``ringfence drivers`` and the docs."""

    driver: str
    options: tuple[DriverOption, ...]
    role: str = "driver"
    """What takes them, in sentences: a ``driver``, or a ``health source``."""
    flag: str = "--driver-option"
    """Where a person gives them: ``--driver-option``, or ``--health-option`` for a health source."""

    def __iter__(self) -> Iterator[DriverOption]:
        return iter(self.options)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def describe(self) -> tuple[str, ...]:
        return tuple(o.describe() for o in self.options)

    def read(self, given: Mapping[str, str | None]) -> ReadOptions:
        """The options ``given`` (unset: None), checked, with defaults filled in.

        Raises :class:`~ringfence.core.errors.InputError` naming the option: an option this driver does not
        take (listing those it does), a missing required one, or a value it cannot read.
        """
        unknown = sorted(set(given) - set(self.names))
        if unknown:
            takes = ", ".join(self.names) or "none"
            raise InputError(
                [
                    Problem(
                        f"{self.role} '{self.driver}' does not take these options ({', '.join(unknown)}); it "
                        f"takes: {takes}",
                        path=(self.flag,),
                    )
                ]
            )
        values: dict[str, OptionValue] = {}
        for option in self.options:
            raw = given.get(option.name)
            if raw is None or (not raw.strip() and option.default is None):
                # Blank is unset only for an option with no default: a blank timeout is a mistake, not "default".
                raw = option.default
            if raw is None:
                if option.required:
                    raise InputError(
                        [
                            Problem(
                                f"the {self.driver} {self.role} needs {self.flag} {option.name}={option.metavar} "
                                f"({option.help})",
                                path=(self.flag,),
                            )
                        ]
                    )
                values[option.name] = None
                continue
            values[option.name] = self._value(option, raw)
        return ReadOptions(self.driver, values)

    def _value(self, option: DriverOption, raw: str) -> OptionValue:
        complaint = _complaint(option, raw)
        if complaint is not None:
            said = option.expected or complaint
            raise InputError(
                [Problem(f"{self.driver} {self.role} option {option.name}={raw!r}: {said}", path=(self.flag,))]
            )
        match option.kind:
            case "duration":
                return parse_duration(raw)
            case "number":
                return float(raw)
            case "whole":
                return int(raw.strip())
            case "flag":
                return raw.strip().lower() == "true"
            case "ids":
                return frozenset(part.strip() for part in raw.split(",") if part.strip())
            case "choice":
                return raw.strip()
            case _:
                return raw


def _complaint(option: DriverOption, raw: str) -> str | None:
    """What is wrong with ``raw`` as a value of ``option``, as "expected …"; None when nothing is."""
    low, high = option.minimum, option.maximum
    if option.kind == "duration":
        try:
            seconds = parse_duration(raw)
        except ValueError:
            return "expected a duration such as 30s, 5m or 1h"
        if low is not None and seconds < low:
            return f"expected at least {format_duration(low)}"
        if high is not None and seconds > high:
            return f"expected at most {format_duration(high)}"
        return None
    if option.kind == "number":
        try:
            number = float(raw)
        except ValueError:
            number = float("nan")
        if number != number or (low is not None and number < low) or (high is not None and number > high):
            return "expected a number" + _bounds(low, high)
        return None
    if option.kind == "whole":
        text = raw.strip()
        digits = text[1:] if text.startswith("-") else text
        if not digits.isdigit() or (low is not None and int(text) < low) or (high is not None and int(text) > high):
            return "expected a whole number" + _bounds(low, high, whole=True)
        return None
    if option.kind == "flag" and raw.strip().lower() not in ("true", "false"):
        return "expected true or false"
    if option.kind == "choice" and raw.strip() not in option.choices:
        return "expected " + (", ".join(option.choices[:-1]) + " or " + option.choices[-1])
    return None


def _bounds(low: float | None, high: float | None, *, whole: bool = False) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    if high is not None:
        return f" of at most {high:g}"
    return ""


@dataclass(frozen=True)
class ReadOptions:
    """A driver's options as :meth:`DriverOptions.read` left them: typed accessors, each checking the kind."""

    driver: str
    values: Mapping[str, OptionValue]

    def text(self, name: str) -> str | None:
        value = self.values[name]
        return value if isinstance(value, str) else None

    def seconds(self, name: str) -> int:
        return self._typed(name, int)

    def whole(self, name: str) -> int:
        return self._typed(name, int)

    def number(self, name: str) -> float:
        value = self.values[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{self.driver} driver option {name} is not a number")
        return float(value)

    def flag(self, name: str) -> bool:
        return self.values[name] is True

    def ids(self, name: str) -> frozenset[str]:
        value = self.values[name]
        return value if isinstance(value, frozenset) else frozenset()

    def _typed(self, name: str, kind: type[int]) -> int:
        value = self.values[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TypeError(f"{self.driver} driver option {name} is not a {kind.__name__}")
        return value


# ------------------------------------------------------------------------------------------ health sources


@runtime_checkable
class HealthSource(Protocol):
    """Where a rollout's health readings come from, apart from what installs (Argo's metric providers).

    Every driver is one (its ``observe``): by default a rollout is judged by the driver that updates it.
    Another source (agents' heartbeats, the Ansible health playbook, later a metrics system) may judge
    instead: "Ansible installs, Prometheus judges". Sources register under the entry point group
    ``ringfence.health_sources`` (``ringfence.drivers.registry``).
    """

    name: str

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        """The latest health of each asset that reported; silent assets are left out (unknown)."""


DRIVERS_OWN_HEALTH = "driver"
"""The health source a rollout uses unless it names another: the driver's own ``observe``."""


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
    driver: type | Driver, update: Update, *, operations: Iterable[OperationKind] | None = None
) -> str | None:
    """Why ``driver`` cannot carry a rollout of ``update`` through, in a sentence; None when nothing says it cannot.

    ``driver`` is a registered driver's class (before its options are known: only what it refuses whatever its
    options counts; ``ringfence.drivers.registry.driver_class`` finds it by name) or a built driver (what it
    refuses with its options too). ``operations``: only these (default: every operation the update may need,
    :func:`operations_for`). A driver that declares nothing refuses nothing here.
    """
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
    driver: type | Driver,
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


def release_restore_points(driver: Driver, rollout_id: str) -> tuple[str, ...] | None:
    """Ask ``driver`` to let go of the restore points rollout ``rollout_id`` still holds (the optional hook
    ``release_restore_points``); its sentences, or None when the driver declares no such hook (its restore points
    cost nothing to keep, or it keeps none). A :class:`~ringfence.core.errors.DriverError` is the caller's."""
    hook = getattr(driver, "release_restore_points", None)
    if not callable(hook):
        return None
    return tuple(str(sentence) for sentence in hook(rollout_id))


__all__ = [
    "DRIVERS_OWN_HEALTH",
    "ENTRY_POINT_GROUP",
    "HEALTH_SOURCE_GROUP",
    "Batch",
    "Driver",
    "DriverOption",
    "DriverOptions",
    "HealthSource",
    "OperationKind",
    "OperationResult",
    "OperationStatus",
    "OptionKind",
    "OptionValue",
    "ReadOptions",
    "operations_for",
    "refusal_for",
    "release_restore_points",
    "require_able",
]
