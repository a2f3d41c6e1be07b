"""Execution drivers: how a rollout's operations reach real (or simulated) machines, and health sources.

The protocol every driver follows is :mod:`ringfence.core.driver` (pure); ``registry`` finds and builds
drivers and health sources by name (entry point groups ``ringfence.drivers`` and
``ringfence.health_sources``, the one registry); ``simulated`` is the ``simulated`` driver over the pure world
of :mod:`ringfence.core.simulation`; ``agent`` reads what agents report; ``ansible`` runs playbooks.
"""

from ringfence.core.driver import Batch, Driver, OperationKind, OperationResult, OperationStatus
from ringfence.drivers.registry import DriverContext, available_drivers, build_driver, load_driver

__all__ = [
    "Batch",
    "Driver",
    "DriverContext",
    "OperationKind",
    "OperationResult",
    "OperationStatus",
    "available_drivers",
    "build_driver",
    "load_driver",
]
