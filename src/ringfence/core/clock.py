"""The wall clock, for the adapters: the one place ringfence reads the time of day.

The core never calls :func:`utc_now`: every core function takes the time it acts at (``at``, ``now``, or a
``clock`` callable) as a parameter, so drills run in simulated time and every decision can be replayed. The
function lives here only so that every adapter layer (store, drivers, service, api, web, cli) can import the
same one; tests/test_layers.py checks that no core module calls it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, as an aware UTC datetime (what every stored timestamp and every ``at=`` argument is)."""
    return datetime.now(UTC)


__all__ = ["utc_now"]
