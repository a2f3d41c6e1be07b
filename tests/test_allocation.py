"""``bulk_allocation``: the collector is paused inside, restored after, and only a large build is frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ringfence.core.allocation import FREEZE_AFTER, bulk_allocation


@pytest.fixture
def clean_gc() -> Iterator[None]:
    gc.collect()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def test_the_collector_is_paused_inside_and_restored_after(clean_gc: None) -> None:
    with bulk_allocation():
        assert not gc.isenabled()
        with bulk_allocation():  # nested: the inner one must not turn it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_disabled_collector_stays_disabled(clean_gc: None) -> None:
    gc.disable()
    with bulk_allocation():
        pass
    assert not gc.isenabled()


def test_the_collector_is_restored_when_the_build_fails(clean_gc: None) -> None:
    with pytest.raises(ValueError, match="bad estate"), bulk_allocation():
        raise ValueError("bad estate")
    assert gc.isenabled()


def test_only_a_large_build_is_frozen(clean_gc: None) -> None:
    with bulk_allocation():
        small = [[i] for i in range(1_000)]
    assert gc.get_freeze_count() == 0
    with bulk_allocation():
        large = [[i] for i in range(FREEZE_AFTER + 1)]
    # What the build made survives in the permanent generation, where no collection walks it.
    assert gc.get_freeze_count() > FREEZE_AFTER
    assert len(small) + len(large) > FREEZE_AFTER
