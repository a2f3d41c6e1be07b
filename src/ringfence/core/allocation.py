"""Memory management for building large structures: an estate of a million assets is tens of millions of objects.

Python's cyclic garbage collector runs whenever allocations outnumber deallocations by a threshold, and each run
of the oldest generation walks every tracked object. Loading a large estate allocates millions of long-lived
objects and frees almost none, so the collector runs again and again over a growing heap and finds nothing:
it was half of the load time of a 200,000-asset estate. Parsed documents, validated models and compiled arrays
hold no reference cycles, so pausing the collector while they are built loses nothing.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FREEZE_AFTER = 200_000
"""New container objects (about 40,000 assets' worth) beyond which a bulk build is frozen when it ends."""


@contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large, acyclic structure; nests safely."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Everything allocated meanwhile sits in the youngest generation: re-enabled as it is, the collector
        # would walk all of it at the next allocations, then again in each older generation. Frozen, the
        # survivors are never walked again; they are still freed as usual when nothing refers to them. Only a
        # large build is frozen: freezing also keeps whatever cyclic garbage exists at that moment for good,
        # so a long-running server parsing small estates now and then should not freeze each time.
        if gc.get_count()[0] >= FREEZE_AFTER:
            gc.freeze()
        if was_enabled:
            gc.enable()
