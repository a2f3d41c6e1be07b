"""The ledger of one rollout: which (operation, asset) it had, in which run, and with what result.

Kept in ``ARTIFACTS/<rollout>/ledger.json``, written atomically, so that an operation an asset already had in
this rollout is never started again (a restarted controller finds it and reports its result as before).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ringfence.core.driver import OperationKind, OperationStatus
from ringfence.core.errors import DriverError
from ringfence.files.disk import write_text_atomic

LEDGER_FILE = "ledger.json"


@dataclass
class LedgerOperation:
    """One (operation, asset) of a rollout: which run carries it and, once known, its result."""

    host: str | None
    status: OperationStatus
    run: str | None
    detail: str = ""
    ref: str | None = None
    finished_at: float | None = None


@dataclass
class LedgerRun:
    """One ansible-runner run of a rollout: its hosts (asset id → host) and its process."""

    name: str
    kind: OperationKind
    assets: dict[str, str]
    started_at: float
    pid: int | None = None
    stop_reason: str | None = None
    """Why ringfence stopped the run, when it did (cancelled, or over its timeout)."""
    settled: bool = False


@dataclass
class Ledger:
    """What the driver did for one rollout, kept in ``ARTIFACTS/<rollout>/ledger.json``."""

    path: Path
    rollout_id: str
    runs: dict[str, LedgerRun] = field(default_factory=dict)
    operations: dict[OperationKind, dict[str, LedgerOperation]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, rollout_id: str) -> Ledger:
        if not path.exists():
            return cls(path, rollout_id)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            runs = {
                name: LedgerRun(
                    name=name,
                    kind=OperationKind(r["kind"]),
                    assets={str(a): str(h) for a, h in r["assets"].items()},
                    started_at=float(r["started_at"]),
                    pid=int(r["pid"]) if r.get("pid") is not None else None,
                    stop_reason=r.get("stop_reason"),
                    settled=bool(r.get("settled")),
                )
                for name, r in document.get("runs", {}).items()
            }
            operations = {
                OperationKind(kind): {
                    str(asset): LedgerOperation(
                        host=o.get("host"),
                        status=cast(OperationStatus, o["status"]),
                        run=o.get("run"),
                        detail=str(o.get("detail") or ""),
                        ref=o.get("ref"),
                        finished_at=float(o["finished_at"]) if o.get("finished_at") is not None else None,
                    )
                    for asset, o in entries.items()
                }
                for kind, entries in document.get("operations", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DriverError(
                f"{path}: the ansible driver's ledger of rollout {rollout_id} cannot be read ({exc}); "
                "it records which hosts were already updated, so ringfence will not guess — restore it or "
                "move the rollout's artifacts directory aside"
            ) from None
        return cls(path, rollout_id, runs, operations)

    def save(self) -> None:
        document = {
            "ledger": 1,
            "rollout": self.rollout_id,
            "runs": {
                name: {
                    "kind": r.kind.value,
                    "assets": r.assets,
                    "started_at": r.started_at,
                    "pid": r.pid,
                    "stop_reason": r.stop_reason,
                    "settled": r.settled,
                }
                for name, r in sorted(self.runs.items())
            },
            "operations": {
                kind.value: {asset: vars(o).copy() for asset, o in sorted(entries.items())}
                for kind, entries in self.operations.items()
            },
        }
        # Atomic: a process killed mid-write leaves the previous ledger whole, never half of one.
        write_text_atomic(self.path, json.dumps(document, indent=1, sort_keys=True) + "\n")

    def operation(self, kind: OperationKind, asset_id: str) -> LedgerOperation | None:
        return self.operations.get(kind, {}).get(asset_id)

    def record(self, kind: OperationKind, asset_id: str, operation: LedgerOperation) -> None:
        self.operations.setdefault(kind, {})[asset_id] = operation

    def next_run_name(self, kind: OperationKind) -> str:
        count = sum(1 for r in self.runs.values() if r.kind is kind)
        return f"{kind.value}-{count + 1:02d}"


__all__ = ["LEDGER_FILE", "Ledger", "LedgerOperation", "LedgerRun"]
