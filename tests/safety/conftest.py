"""One seed for every property of the package, printed in the header so that a failure can be replayed.

``RINGFENCE_SAFETY_SEED=N`` replays a run; without it each run draws a new seed (the examples differ from run
to run, as hunting for counter-examples should), and Hypothesis still replays any failure it has stored.
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

SEED = int(os.environ.get("RINGFENCE_SAFETY_SEED") or random.SystemRandom().randrange(2**32))


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist workers start after this, with this environment: they all hunt with the same seed.
    os.environ.setdefault("RINGFENCE_SAFETY_SEED", str(SEED))


def pytest_report_header(config: pytest.Config) -> str:
    return f"safety properties: seed {SEED} (replay with RINGFENCE_SAFETY_SEED={SEED})"


def hunt(max_examples: int) -> settings:
    """Settings for a property that hunts counter-examples: no deadline (a run is many steps), shrink hard."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=False,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
