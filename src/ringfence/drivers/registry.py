"""The one registry of drivers and health sources: Python entry points, nothing else.

A driver is a class registered under the entry point group ``ringfence.drivers`` (``pyproject.toml``:
``simulated``, ``agent``, ``ansible``, ``vsphere``); a health source one registered under ``ringfence.health_sources``
(``heartbeats``, ``ansible``, ``simulated``). A package adds its own by declaring an entry point; nothing is
registered by importing a module.

Building one:

- :func:`build_driver` from its name, its options (``--driver-option key=value``, read and checked by the
  options the class declares, :class:`~ringfence.core.driver.DriverOptions`) and a :class:`DriverContext`:
  what the process that builds it can give beyond options (the database, the update, the rollout). A class
  that needs the context takes it in a class method ``from_context(options, context)``; any other is built
  as ``cls(**options)``;
- :func:`server_driver`: the driver the server's controller loop drives a rollout with. Only classes with a
  ``for_server(context)`` class method run in the server (``simulated``, ``agent``); a rollout on any other
  driver is left to a ``ringfence worker`` (or ``ringfence rollout start``);
- :func:`worker_driver`: the driver a ``ringfence worker`` drives a rollout with: any installed driver, built
  from the options kept with the rollout (``--driver-option`` at ``rollout create`` or ``rollout start``), or
  as the server builds it when none were kept;
- :func:`build_health_source`: what judges a rollout's health. ``driver`` (the default) is the driver's own
  ``observe``; any other name is a source class, built by ``from_context(options, context)`` or
  ``cls(**options)``; or the driver itself when the source is that driver's own reading (a source class
  may say so in ``of_driver(driver)``: ``ansible`` on the ansible driver).

An unknown name is an :class:`~ringfence.core.errors.InputError` that lists the known ones.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from ringfence.core.driver import (
    DRIVERS_OWN_HEALTH,
    ENTRY_POINT_GROUP,
    HEALTH_SOURCE_GROUP,
    Driver,
    DriverOptions,
    HealthSource,
    require_able,
)
from ringfence.core.errors import InputError, Problem

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from ringfence.core.update import Update


@dataclass(frozen=True)
class DriverContext:
    """What the process building a driver (or health source) gives it beyond its options.

    ``engine``: the database of the server or CLI (the agent driver reads the agents' reports there, the
    simulated driver keeps its worlds there). ``update`` and ``rollout_id``: the rollout it is built for,
    when known. ``environ``: the settings of the process (the server's agent timeouts).
    """

    engine: Engine | None = None
    update: Update | None = None
    rollout_id: str | None = None
    environ: Mapping[str, str] = field(default_factory=dict)


def _entry_points(group: str) -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=group):
        found.setdefault(point.name, point)
    return found


def available_drivers() -> tuple[str, ...]:
    """Names of the installed drivers, sorted."""
    return tuple(sorted(_entry_points(ENTRY_POINT_GROUP)))


def available_health_sources() -> tuple[str, ...]:
    """Names a rollout may be judged by: ``driver`` (its driver's own) and the installed sources, sorted."""
    return (DRIVERS_OWN_HEALTH, *sorted(_entry_points(HEALTH_SOURCE_GROUP)))


def driver_class(name: str) -> type:
    """The class registered as driver ``name``; an InputError listing the installed drivers when none is."""
    return _load(ENTRY_POINT_GROUP, name, "driver", available_drivers(), ("--driver",))


def declared_class(name: str) -> type | None:
    """The class registered as driver ``name``, to ask what it declares; None when there is none to ask.

    A driver that cannot even be imported is reported when it is built (``rollout start``), where its options
    are given too; asking it about abilities here would only hide that sentence.
    """
    try:
        return driver_class(name)
    except (InputError, ImportError, AttributeError):
        return None


def require_driver_able(name: str, update: Update, **where: Any) -> None:
    """:func:`~ringfence.core.driver.require_able` for the driver registered as ``name``, before its options
    are known (only what it refuses whatever its options counts); nothing to say for an unknown name."""
    cls = declared_class(name)
    if cls is not None:
        require_able(cls, update, **where)


def options_of(name: str) -> DriverOptions | None:
    """The options driver ``name`` declares (None when it declares none)."""
    declared = getattr(driver_class(name), "options", None)
    return declared if isinstance(declared, DriverOptions) else None


def build_driver(name: str, options: Mapping[str, str] | None = None, context: DriverContext | None = None) -> Driver:
    """The driver registered as ``name``, built with ``options`` in ``context`` (see the module docstring)."""
    cls = driver_class(name)
    given = dict(options or {})
    from_context = getattr(cls, "from_context", None)
    try:
        if callable(from_context):
            built: object = from_context(given, context or DriverContext())
        else:
            built = cls(**given)
    except TypeError as exc:
        raise InputError(
            [Problem(f"driver '{name}' does not take these options ({exc})", path=("--driver-option",))]
        ) from None
    if not isinstance(built, Driver):
        raise InputError(f"the entry point for driver '{name}' does not build a driver (got {type(built).__name__})")
    return built


def load_driver(name: str, **options: str) -> Driver:
    """The driver registered as ``name``, built with ``options`` alone (``ringfence rollout start``, tests)."""
    return build_driver(name, options)


def server_driver(name: str, context: DriverContext) -> Driver | None:
    """The driver the server's controller loop drives a rollout on ``name`` with; None when ``name`` does not
    run in the server (or is not installed: the loop leaves the rollout to the CLI, which says so)."""
    try:
        cls = driver_class(name)
    except InputError:
        return None
    for_server = getattr(cls, "for_server", None)
    if not callable(for_server):
        return None
    built = for_server(context)
    if not isinstance(built, Driver):
        raise InputError(f"driver '{name}' does not build a driver for the server (got {type(built).__name__})")
    return built


def worker_driver(name: str, context: DriverContext, options: Mapping[str, str] | None = None) -> Driver:
    """The driver a ``ringfence worker`` drives a rollout on ``name`` with: built from the ``options`` kept with
    the rollout; without any, as the server builds it (``for_server``) when the class can be, else from no
    options (a driver that needs some says which, as an InputError)."""
    if not options:
        built = server_driver(name, context)
        if built is not None:
            return built
    return build_driver(name, options, context)


def worker_runnable(names: Collection[str] | None = None) -> tuple[str, ...]:
    """The installed drivers (of ``names``, or all) a worker can run here: those whose class loads and does not
    refuse every operation whatever its options (the ansible driver without the ``ansible`` extra), sorted."""
    from ringfence.core.driver import OperationKind
    from ringfence.core.update import Update

    probe = Update.model_validate({"id": "probe", "product": "probe/probe", "version": "1"})
    runnable = []
    for name in available_drivers():
        if names is not None and name not in names:
            continue  # loading a driver's class imports its library: only those asked about
        cls = declared_class(name)
        if cls is None:
            continue
        refuses = getattr(cls, "always_refuses", None)
        if callable(refuses) and refuses(OperationKind.apply, probe) is not None:
            continue
        runnable.append(name)
    return tuple(runnable)


def runs_in_server(name: str) -> bool:
    """Whether the server's controller loop can drive rollouts on driver ``name``."""
    try:
        return callable(getattr(driver_class(name), "for_server", None))
    except InputError:
        return False


def build_health_source(
    name: str,
    driver: Driver,
    options: Mapping[str, str] | None = None,
    context: DriverContext | None = None,
) -> HealthSource:
    """What judges a rollout on ``driver``: its own ``observe`` (``driver``, the default), or the source
    registered as ``name``. A source of the driver's own class reads through the driver itself."""
    if name == DRIVERS_OWN_HEALTH:
        return driver
    cls = health_source_class(name)
    if isinstance(driver, cls):
        return driver  # the source is that driver's own reading
    of_driver = getattr(cls, "of_driver", None)
    own = of_driver(driver) if callable(of_driver) else None
    if isinstance(own, HealthSource):
        return own  # the driver reads this source better itself (ansible's health playbook on the ansible driver)
    given = dict(options or {})
    from_context = getattr(cls, "from_context", None)
    try:
        built: object = from_context(given, context or DriverContext()) if callable(from_context) else cls(**given)
    except TypeError as exc:
        raise InputError(
            [Problem(f"health source '{name}' does not take these options ({exc})", path=("--health-option",))]
        ) from None
    if not isinstance(built, HealthSource):
        raise InputError(f"the entry point for health source '{name}' does not build one (got {type(built).__name__})")
    return built


def health_source_class(name: str) -> type:
    """The class registered as health source ``name``; an InputError listing the installed ones when none is."""
    return _load(HEALTH_SOURCE_GROUP, name, "health source", available_health_sources(), ("--health-source",))


def _load(group: str, name: str, what: str, known: tuple[str, ...], path: tuple[str, ...]) -> type:
    point = _entry_points(group).get(name)
    if point is None:
        listed = ", ".join(known) or "none"
        raise InputError([Problem(f"there is no {what} '{name}'; the installed {what}s are: {listed}", path=path)])
    loaded: Any = point.load()
    if not isinstance(loaded, type):
        raise InputError(f"the entry point for {what} '{name}' is not a class (got {type(loaded).__name__})")
    return loaded


__all__ = [
    "DriverContext",
    "available_drivers",
    "available_health_sources",
    "build_driver",
    "build_health_source",
    "declared_class",
    "driver_class",
    "health_source_class",
    "load_driver",
    "options_of",
    "require_driver_able",
    "runs_in_server",
    "server_driver",
    "worker_driver",
    "worker_runnable",
]
