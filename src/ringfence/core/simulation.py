"""A simulated estate for drills and tests: a fault model, a clock, and a world that obeys them.

Pure and deterministic: whether an asset fails depends only on the seed and its id (not on the order
operations come in), and time only moves when the clock is told to. The world keeps, per asset, what is
installed, how often it was installed and rolled back, whether it is up, when it failed, its verified
restore point and whether a rollback lost its data; per operation (rollout, kind, asset), when it
started, when it ends and how it ended. :class:`SimulationDriver` drives it through the driver protocol;
``ringfence.drivers.simulated`` adds a world kept in a JSON file for real processes.

Semantics
    - An operation takes the update's ``timing`` (restore point, apply, rollback) and ends then.
    - Starting an operation an asset already had in this rollout changes nothing (idempotent).
    - An asset the fault affects fails ``after`` seconds once its install finished, unless it was rolled
      back first; it then stays down (and reports its signal) until it is rolled back.
    - Rolling back without a verified restore point loses the asset's data when the fault says so;
      from a verified restore point nothing is lost.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ringfence.core.driver import Batch, OperationKind, OperationResult, OperationStatus
from ringfence.core.errors import InputError
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.core.update import Fault, Timing

DRILL_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
"""Where simulated time starts in drills: a fixed instant, so that every run of a drill is identical."""


class SimulatedClock:
    """Time that only moves when told to. Call it to read the time."""

    def __init__(self, start: datetime = DRILL_EPOCH) -> None:
        if start.tzinfo is None:
            raise InputError(f"a simulated clock starts at a time with a timezone, not {start.isoformat()}")
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance_to(self, at: datetime) -> None:
        """Move to ``at``; never backwards (a step back would replay events)."""
        if at > self._now:
            self._now = at

    def advance(self, seconds: float) -> None:
        self.advance_to(self._now + timedelta(seconds=seconds))


@dataclass(frozen=True)
class FaultModel:
    """Which assets a bad release breaks, how likely, how soon, and what breaking looks like."""

    affected: frozenset[str]
    probability: float = 1.0
    after: float = 60.0
    signal: FailureSignal = FailureSignal.crashed
    rollback_loses_data: bool = False
    seed: int = 0

    @classmethod
    def from_fault(cls, fault: Fault, affected: Iterable[str], seed: int) -> FaultModel:
        return cls(
            affected=frozenset(affected),
            probability=fault.probability,
            after=float(fault.after),
            signal=FailureSignal(fault.signal),
            rollback_loses_data=fault.rollback_loses_data,
            seed=seed,
        )

    def fails(self, asset_id: str) -> bool:
        """Whether ``asset_id`` fails once updated: a draw fixed by the seed and the id alone."""
        if asset_id not in self.affected or self.probability <= 0:
            return False
        if self.probability >= 1:
            return True
        digest = hashlib.blake2b(f"{self.seed}:{asset_id}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.probability


NO_FAULT = FaultModel(affected=frozenset())


@dataclass
class SimulatedAsset:
    """One asset of the simulated world (times are seconds since the Unix epoch)."""

    version: str | None = None
    installs: int = 0
    apply_requests: int = 0
    """How often an apply was asked for, repeats included: the controller's retries show here, not in installs."""
    rollbacks: int = 0
    installed_at: float | None = None
    fail_at: float | None = None
    failed_at: float | None = None
    is_down: bool = False
    signal: str | None = None
    restore_point: str | None = None
    data_lost: bool = False


@dataclass
class SimulatedOperation:
    rollout_id: str
    kind: OperationKind
    asset_id: str
    version: str
    started: float
    ends: float
    status: OperationStatus = "running"
    detail: str = ""
    ref: str | None = None


@dataclass
class SimulatedWorld:
    """Every asset and operation the simulation has seen. Plain data, so it round-trips through JSON."""

    assets: dict[str, SimulatedAsset] = field(default_factory=dict)
    operations: dict[str, SimulatedOperation] = field(default_factory=dict)

    def asset(self, asset_id: str) -> SimulatedAsset:
        found = self.assets.get(asset_id)
        if found is None:
            found = self.assets[asset_id] = SimulatedAsset()
        return found

    # -- views the drills and tests read

    def exposed(self) -> tuple[str, ...]:
        """Assets an install reached."""
        return tuple(sorted(a for a, s in self.assets.items() if s.installs))

    def failed(self) -> tuple[str, ...]:
        """Assets that failed at some point."""
        return tuple(sorted(a for a, s in self.assets.items() if s.failed_at is not None))

    def down(self) -> tuple[str, ...]:
        return tuple(sorted(a for a, s in self.assets.items() if s.is_down))

    def data_lost(self) -> tuple[str, ...]:
        return tuple(sorted(a for a, s in self.assets.items() if s.data_lost))

    def first_failure_at(self) -> float | None:
        return min((s.failed_at for s in self.assets.values() if s.failed_at is not None), default=None)

    # -- JSON

    def to_document(self) -> dict[str, Any]:
        return {
            "assets": {a: vars(s).copy() for a, s in sorted(self.assets.items())},
            "operations": {key: {**vars(op), "kind": op.kind.value} for key, op in sorted(self.operations.items())},
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any], source: str = "<world>") -> SimulatedWorld:
        try:
            assets = {str(a): SimulatedAsset(**fields) for a, fields in document.get("assets", {}).items()}
            operations = {
                str(key): SimulatedOperation(**{**fields, "kind": OperationKind(fields["kind"])})
                for key, fields in document.get("operations", {}).items()
            }
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise InputError(f"{source}: not a simulated world written by ringfence ({exc})") from None
        return cls(assets=assets, operations=operations)


def _key(rollout_id: str, kind: OperationKind, asset_id: str) -> str:
    return f"{rollout_id}|{kind.value}|{asset_id}"


# Event kinds, in the order they happen when they fall on the same instant.
_OPERATION_ENDS = 0
_ASSET_FAILS = 1


class SimulationDriver:
    """The driver protocol over a :class:`SimulatedWorld`, in the time of ``clock``.

    ``restore_point_failures`` and ``install_failures`` name assets whose restore point fails
    verification or whose install fails; ``silent`` assets never report health (unknown).
    ``on_change`` is called after every change to the world (the file-backed driver saves it there).
    """

    name = "simulated"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        timing: Timing | None = None,
        fault: FaultModel = NO_FAULT,
        world: SimulatedWorld | None = None,
        restore_point_failures: Iterable[str] = (),
        install_failures: Iterable[str] = (),
        rollback_failures: Iterable[str] = (),
        silent: Iterable[str] = (),
        on_change: Callable[[SimulatedWorld], None] | None = None,
    ) -> None:
        self.clock = clock
        self.timing = timing or Timing()
        self.fault = fault
        self.world = world if world is not None else SimulatedWorld()
        self.restore_point_failures = frozenset(restore_point_failures)
        self.install_failures = frozenset(install_failures)
        self.rollback_failures = frozenset(rollback_failures)
        self.silent = frozenset(silent)
        self._on_change = on_change
        self._events: list[tuple[float, int, str]] = []
        self.replace_world(self.world)

    def replace_world(self, world: SimulatedWorld) -> None:
        """Carry on from ``world`` (one kept by an earlier process): what it has in flight ends when it said."""
        self.world = world
        self._events = []
        for key, op in world.operations.items():
            if op.status == "running":
                heapq.heappush(self._events, (op.ends, _OPERATION_ENDS, key))
        for asset_id, asset in world.assets.items():
            if asset.fail_at is not None and not asset.is_down and asset.version is not None:
                heapq.heappush(self._events, (asset.fail_at, _ASSET_FAILS, asset_id))

    # ----------------------------------------------------------------------------- the protocol

    def start(self, batch: Batch) -> None:
        changed = self._settle()
        now = self._now()
        duration = self._duration(batch.kind)
        for asset_id in batch.assets:
            key = _key(batch.rollout_id, batch.kind, asset_id)
            asset = self.world.asset(asset_id)
            if batch.kind is OperationKind.apply:
                asset.apply_requests += 1
                changed = True
            if key in self.world.operations:
                continue  # idempotent: this rollout already asked for this operation on this asset
            if batch.kind is OperationKind.apply:
                asset.installs += 1
            self.world.operations[key] = SimulatedOperation(
                rollout_id=batch.rollout_id,
                kind=batch.kind,
                asset_id=asset_id,
                version=batch.version,
                started=now,
                ends=now + duration,
            )
            heapq.heappush(self._events, (now + duration, _OPERATION_ENDS, key))
            changed = True
        if duration == 0:
            changed = self._settle() or changed
        if changed:
            self._changed()

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        if self._settle():
            self._changed()
        results = []
        for asset_id in batch.assets:
            op = self.world.operations.get(_key(batch.rollout_id, batch.kind, asset_id))
            if op is not None:
                results.append(OperationResult(asset_id, op.status, op.detail, op.ref))
        return results

    def cancel(self, batch: Batch) -> None:
        changed = self._settle()
        for asset_id in batch.assets:
            op = self.world.operations.get(_key(batch.rollout_id, batch.kind, asset_id))
            if op is not None and op.status == "running":
                op.status, op.detail = "failed", "cancelled before it finished"
                changed = True
        if changed:
            self._changed()

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        if self._settle():
            self._changed()
        health: dict[str, AssetHealth] = {}
        for asset_id in asset_ids:
            if asset_id in self.silent:
                continue
            asset = self.world.assets.get(asset_id)
            if asset is not None and asset.is_down:
                since = None
                if asset.failed_at is not None and asset.installed_at is not None:
                    since = max(0.0, asset.failed_at - asset.installed_at)
                signal = FailureSignal(asset.signal) if asset.signal else None
                health[asset_id] = AssetHealth(asset_id, AssetStatus.failed, signal, since)
            else:
                health[asset_id] = AssetHealth(asset_id, AssetStatus.healthy)
        return health

    def next_event_at(self) -> datetime | None:
        while self._events and not self._is_live(self._events[0]):
            heapq.heappop(self._events)
        if not self._events:
            return None
        return datetime.fromtimestamp(self._events[0][0], UTC)

    # ----------------------------------------------------------------------------- the world moving

    def _now(self) -> float:
        return self.clock().timestamp()

    def _duration(self, kind: OperationKind) -> float:
        timing = self.timing
        return float(
            {
                OperationKind.restore_point: timing.restore_point,
                OperationKind.apply: timing.apply,
                OperationKind.rollback: timing.rollback,
            }[kind]
        )

    def _is_live(self, event: tuple[float, int, str]) -> bool:
        at, kind, key = event
        if kind == _OPERATION_ENDS:
            op = self.world.operations.get(key)
            return op is not None and op.status == "running" and op.ends == at
        asset = self.world.assets.get(key)
        return asset is not None and asset.fail_at == at and not asset.is_down and asset.version is not None

    def _settle(self) -> bool:
        """Let everything due by now happen, in time order. True when the world changed."""
        now = self._now()
        changed = False
        while self._events and self._events[0][0] <= now:
            event = heapq.heappop(self._events)
            if not self._is_live(event):
                continue
            at, kind, key = event
            if kind == _OPERATION_ENDS:
                self._finish(self.world.operations[key], at)
            else:
                self._fail(key, at)
            changed = True
        return changed

    def _finish(self, op: SimulatedOperation, at: float) -> None:
        asset = self.world.asset(op.asset_id)
        if op.kind is OperationKind.restore_point:
            if op.asset_id in self.restore_point_failures:
                op.status, op.detail = "failed", "the restore point failed verification"
            else:
                op.status, op.ref = "succeeded", f"rp-{op.rollout_id}-{op.asset_id}"
                op.detail = "restore point taken and verified"
                asset.restore_point = op.ref
        elif op.kind is OperationKind.apply:
            if op.asset_id in self.install_failures:
                op.status, op.detail = "failed", f"the install of {op.version} failed"
                return
            op.status, op.detail = "succeeded", f"{op.version} installed"
            asset.version, asset.installed_at = op.version, at
            if self.fault.fails(op.asset_id):
                asset.fail_at = at + self.fault.after
                heapq.heappush(self._events, (asset.fail_at, _ASSET_FAILS, op.asset_id))
        else:
            if op.asset_id in self.rollback_failures:
                op.status, op.detail = "failed", "the rollback did not complete"
                return
            asset.rollbacks += 1
            from_snapshot = asset.restore_point is not None
            if not from_snapshot and self.fault.rollback_loses_data:
                asset.data_lost = True
            asset.version, asset.installed_at, asset.fail_at = None, None, None
            asset.is_down, asset.signal = False, None
            op.status = "succeeded"
            op.detail = (
                f"restored from verified restore point {asset.restore_point}"
                if from_snapshot
                else "rolled back by reinstalling the previous release"
                + ("; the asset's data was lost" if asset.data_lost else "")
            )

    def _fail(self, asset_id: str, at: float) -> None:
        asset = self.world.asset(asset_id)
        asset.is_down, asset.failed_at, asset.signal = True, at, self.fault.signal.value

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.world)


__all__ = [
    "DRILL_EPOCH",
    "NO_FAULT",
    "FaultModel",
    "SimulatedAsset",
    "SimulatedClock",
    "SimulatedOperation",
    "SimulatedWorld",
    "SimulationDriver",
]
