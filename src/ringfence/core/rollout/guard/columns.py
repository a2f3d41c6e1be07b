"""The guard's inputs read as columns, and asset ids numbered without a dict (see :class:`Columns`)."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import ItemsView, Iterator, Mapping, Sequence, ValuesView
from typing import TypeVar

import numpy as np

from ringfence.core.errors import InputError
from ringfence.core.rollout.guard.violations import IntArray, _distinct, _pick_all
from ringfence.core.words import names

V = TypeVar("V")


class Columns(Mapping[str, V]):
    """A read-only mapping held as two columns of the same length: its keys, and the value of each.

    What a caller that holds its rows as objects (a rollout's million targets) hands the guard: reading the
    rows into two lists costs a fraction of building a dict of them, and the guard reads columns in one pass
    — an assignment whose keys come in the plan's order (or in the order of the last assignment checked),
    and the states of a :class:`GuardState` whose ``states`` shares the very key list of its ``assignment``.
    Looking a key up builds the dict, once. The keys must be distinct, as a mapping's are: the guard checks
    that an assignment read in one pass holds each target once, and building the dict refuses a repeat.
    """

    __slots__ = ("_lookup", "keys_column", "values_column")

    def __init__(self, keys: Sequence[str], values: Sequence[V]) -> None:
        if len(keys) != len(values):
            raise InputError(f"columns of {len(keys):,} keys and {len(values):,} values: give one value per key")
        self.keys_column = keys
        self.values_column = values
        self._lookup: dict[str, V] | None = None

    def __len__(self) -> int:
        return len(self.keys_column)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_column)

    def __getitem__(self, key: str) -> V:
        return self._dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict()

    def values(self) -> ValuesView[V]:
        return _ColumnValues(self)

    def items(self) -> ItemsView[str, V]:
        return _ColumnItems(self)

    def _dict(self) -> dict[str, V]:
        if self._lookup is None:
            lookup = dict(zip(self.keys_column, self.values_column, strict=True))
            if len(lookup) != len(self.keys_column):
                repeated = [k for k, n in Counter(self.keys_column).items() if n > 1]
                raise InputError(f"columns name {names(repeated)} more than once: a mapping names each key once")
            self._lookup = lookup
        return self._lookup


class _ColumnValues(ValuesView[V]):
    """The values of :class:`Columns`, read from their column without building the dict."""

    def __init__(self, columns: Columns[V]) -> None:
        super().__init__(columns)
        self._column = columns.values_column

    def __iter__(self) -> Iterator[V]:
        return iter(self._column)

    def __contains__(self, value: object) -> bool:
        return any(v is value or v == value for v in self._column)


class _ColumnItems(ItemsView[str, V]):
    """The items of :class:`Columns`, paired from their columns without building the dict."""

    def __init__(self, columns: Columns[V]) -> None:
        super().__init__(columns)
        self._columns = columns

    def __iter__(self) -> Iterator[tuple[str, V]]:
        return zip(self._columns.keys_column, self._columns.values_column, strict=True)


class _Numbering:
    """Asset ids to their numbers (their positions in ``ids``), looked up a batch at a time.

    A dict of a million ids costs half a second to build (an insert per id into a table scattered over
    memory) and as long again to look a million ids up. Here the ids' hashes (kept on each string) are read
    in one pass and sorted, and bucketed by their top bits (a str hash is uniform): a batch of look-ups is a
    pass of hashing, a few vectorised probes of its buckets and a check that the id found is the id asked —
    by address when it is the very same string object (ids read from one source usually are), else by value.
    Distinct ids may share a hash, rarely: a look-up then searches the run of that hash.
    """

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self._addresses: IntArray | None = None
        hashes = np.fromiter(map(hash, ids), np.int64, len(ids)).view(np.uint64)
        self._order = np.argsort(hashes)
        self._hashes = hashes[self._order]
        # About two buckets per id: most look-ups find their id at the first probe.
        bits = (2 * len(ids)).bit_length()
        self._shift = np.uint64(64 - bits)
        per_bucket = np.bincount((self._hashes >> self._shift).astype(np.int64), minlength=1 << bits)
        self._bucket_start = np.concatenate([[0], np.cumsum(per_bucket)]).astype(np.int64)
        # An id given twice has one hash twice: the ids are distinct when those that share a hash are.
        shared = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        involved = _distinct(np.concatenate([shared, shared + 1]))
        self.distinct = len({ids[i] for i in self._order[involved].tolist()}) == involved.size

    def numbers(self, asked: Sequence[str]) -> IntArray:
        """The number of each id asked; -1 for an id that is not one of ``ids``."""
        found = np.full(len(asked), -1, np.int64)
        if not asked or not self._ids:
            return found
        wanted = np.fromiter(map(hash, asked), np.int64, len(asked)).view(np.uint64)
        bucket = (wanted >> self._shift).astype(np.int64)
        # Probe each bucket from its start, all look-ups at once, until the hash is found or the bucket ends; the
        # first probe (most look-ups end there) is made over the whole batch, without indirection.
        start, end = self._bucket_start[bucket], self._bucket_start[bucket + 1]
        hit = (start < end) & (self._hashes[np.minimum(start, self._hashes.size - 1)] == wanted)
        first = np.where(hit, start, -1)
        rest = np.flatnonzero(~hit & (start + 1 < end))
        position, end = start[rest] + 1, end[rest]
        while rest.size:
            hit = self._hashes[position] == wanted[rest]
            first[rest[hit]] = position[hit]
            live = ~hit & (position + 1 < end)
            rest, position, end = rest[live], position[live] + 1, end[live]
        hashed = np.flatnonzero(first >= 0)
        candidates = self._order[first[hashed]]
        if len(asked) * 16 < len(self._ids):
            # A small batch (the assets a step starts, those down): compared by value, which for the very same
            # string object is an identity check; the ids' addresses would cost a pass over every id.
            same = np.zeros(hashed.size, np.bool_)
        else:
            # The same object is the same id, read without touching a string; others are compared by value.
            if self._addresses is None:
                self._addresses = np.fromiter(map(id, self._ids), np.int64, len(self._ids))
            addresses = np.fromiter(map(id, asked), np.int64, len(asked))
            same = self._addresses[candidates] == addresses[hashed]
        other = np.flatnonzero(~same)
        same[other] = np.fromiter(
            map(operator.eq, _pick_all(self._ids, candidates[other]), _pick_all(asked, hashed[other])),
            np.bool_,
            other.size,
        )
        found[hashed[same]] = candidates[same]
        for q in hashed[~same].tolist():
            found[q] = self._search_run(asked[q], int(first[q]))
        return found

    def _search_run(self, asset: str, start: int) -> int:
        """The number of ``asset`` among the ids after ``start`` that share its hash (a collision), or -1."""
        hashes, position = self._hashes, start + 1
        while position < hashes.size and hashes[position] == hashes[start]:
            number = int(self._order[position])
            if self._ids[number] == asset:
                return number
            position += 1
        return -1
