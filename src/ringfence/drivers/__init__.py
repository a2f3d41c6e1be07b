"""Execution drivers: how a rollout's operations reach real (or simulated) machines.

``base`` holds the protocol every driver follows and the registry (entry point group
``ringfence.drivers``); ``simulation`` the pure simulated world used by drills; ``simulated`` the
``simulated`` driver, which can also keep its world in a JSON file.
"""

from ringfence.core.driver import (
    Batch,
    Driver,
    OperationKind,
    OperationResult,
    OperationStatus,
    available_drivers,
    load_driver,
)

__all__ = [
    "Batch",
    "Driver",
    "OperationKind",
    "OperationResult",
    "OperationStatus",
    "available_drivers",
    "load_driver",
]
