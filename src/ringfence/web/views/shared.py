"""What every dashboard page shares: how a timestamp and an impact tier are shown, and a small cache of
recent results."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from ringfence.core.durations import humanize_duration
from ringfence.core.estate import TIER_NAMES

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def when(at: datetime) -> str:
    """A timestamp as people on a ward read it: ``2024-07-19 04:09:12 UTC``."""
    return at.strftime("%Y-%m-%d %H:%M:%S ") + (at.tzname() or "UTC")


@dataclass(frozen=True)
class Tier:
    """An impact tier as shown: ``T1`` and its name, never its colour alone."""

    number: int
    name: str

    @property
    def chip(self) -> str:
        return f"T{self.number}"


def duration(seconds: float | None, missing: str = "not set") -> str:
    """A duration as people read it (``2h 5m``), or ``missing`` where there is none (an RTO not set)."""
    return missing if seconds is None else humanize_duration(seconds)


def tier(number: int) -> Tier:
    return Tier(number, TIER_NAMES.get(number, f"tier {number}"))


class Recent(Generic[K, V]):
    """The last few results of a pure computation, by key. Thread-safe (handlers run on a thread pool);
    two threads asking for one key at once may both compute it, and the answer is the same."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._found: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]
        value = compute()
        with self._lock:
            self._found[key] = value
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return value
