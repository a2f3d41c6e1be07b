"""The estate compiled once into integer arrays, and what goes down when something fails.

Nodes are services then assets, numbered ``0..n``; services occupy ``0..n_services``. Requirements become
CSR arrays (numpy) read backwards, from a required node to the nodes that need it:

* hard edges: ``dependents_ptr``/``dependents`` — who needs this node up;
* any-groups: group ``g`` belongs to ``group_owner[g]``, needs ``group_k[g]`` of its members up, and tolerates
  ``group_slack[g] = size - K`` members down. Its members are a shared *set* ``group_set[g]`` (less the owner,
  when a ``where`` matches its own owner): owners naming the same selector or list share one set, stored once
  (``set_members_ptr``/``set_members``, and ``member_sets_ptr``/``member_sets`` — the sets a node is in).

Blast radius is a counter-based propagation from the failed set, level by level: a node goes down when a hard
requirement goes down, or when one of its groups has lost more members than its slack (counted once per set:
the groups of a set, sorted by slack, break as a prefix as the set loses members). Only nodes that go
down, and the edges out of them, are touched; per-query counters start as zeroed arrays (``calloc``'d, so
untouched pages cost nothing). The result is the least set closed under the rules of the estate format —
cycles bring nothing down by themselves, because nothing is down until a failure reaches it.

Everything user-facing speaks ids; indices never leave this module's callers in the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter, methodcaller

import numpy as np
import numpy.typing as npt

from ringfence.core.allocation import bulk_allocation
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import AnyGroup, Asset, Estate, SoftwareKey, supplier_of
from ringfence.core.selectors import Selector, parse_selector, scalar_column

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_EMPTY = np.zeros(0, dtype=np.int64)


def _csr(rows: int, pairs_from: IntArray, pairs_to: IntArray) -> tuple[IntArray, IntArray]:
    """CSR adjacency of ``from → to`` pairs: ``ptr`` of length rows+1 and ``to`` sorted by ``from``."""
    order = np.argsort(pairs_from, kind="stable")
    counts = np.bincount(pairs_from, minlength=rows)
    ptr = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr, pairs_to[order].astype(np.int64, copy=False)


def distinct(values: IntArray) -> IntArray:
    """The distinct values, ascending: ``np.unique`` by sorting. (numpy 2's ``np.unique`` hashes first, and was
    several times slower on the index arrays here.)"""
    if values.size <= 1:
        return values.astype(np.int64, copy=False)
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep].astype(np.int64, copy=False)


def _row_of_entry(ptr: IntArray) -> IntArray:
    """The row of each entry of a CSR array with pointers ``ptr`` (the rows expanded)."""
    return np.repeat(np.arange(ptr.size - 1, dtype=np.int64), np.diff(ptr))


def _ranges(starts: IntArray, lengths: IntArray) -> IntArray:
    """The positions ``starts[i] .. starts[i] + lengths[i] - 1`` of every range, concatenated, without a loop."""
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY
    # For each output position: the start of its range plus its offset inside that range.
    offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def gather(ptr: IntArray, values: IntArray, rows: IntArray) -> IntArray:
    """Concatenate the CSR rows ``rows`` of ``values`` without a Python loop."""
    if rows.size == 0:
        return _EMPTY
    starts = ptr[rows]
    if rows.size == 1:
        return values[starts[0] : ptr[rows[0] + 1]]
    return values[_ranges(starts, ptr[rows + 1] - starts)]


_SOFTWARE = attrgetter("software")
"""An asset's software items (mapped over a million assets, a C getter costs less than a generator's frames)."""
_ID = attrgetter("id")
_REQUIRES = attrgetter("requires")
_ATTRS = attrgetter("attrs")


class _Codes(dict[str | None, int]):
    """Each distinct value a code from 0, in order of first appearance; None (no value) is -1.

    A value seen before is a plain dict lookup in C; only a new value (a few hundred among a million) runs
    :meth:`__missing__`."""

    def __init__(self) -> None:
        super().__init__({None: -1})

    def __missing__(self, value: str | None) -> int:
        code = self[value] = len(self) - 1
        return code


class AssetIndex:
    """Answers selectors over the assets with indexes built lazily per key, and caches the answers.

    A million assets share a few hundred distinct ``where`` selectors; each is answered once, with numpy
    masks over a categorical code column per key, not by testing every asset in Python.
    """

    def __init__(self, assets: Sequence[Asset], software_keys: Sequence[SoftwareKey] | None = None) -> None:
        self._assets = assets
        self._software_keys = software_keys
        self._columns: dict[str, tuple[npt.NDArray[np.int32], dict[str, int]]] = {}
        self._answers: dict[str, IntArray] = {}

    @property
    def size(self) -> int:
        return len(self._assets)

    def column(self, key: str) -> tuple[npt.NDArray[np.int32], dict[str, int]]:
        """Codes per asset for a scalar key (-1 where the asset has no value), and the code of each value."""
        cached = self._columns.get(key)
        if cached is not None:
            return cached
        # An attrs key reads the attrs of every asset, gathered once for all the keys a large estate's where-groups
        # use (walking 200,000 models again per key cost more than coding the values).
        values = (
            map(methodcaller("get", key[6:]), self._attrs)
            if key.startswith("attrs.")
            else scalar_column(self._assets, key)
        )
        # Coded in the one pass that reads them: no list of 200,000 values, no second walk to find the distinct ones.
        code_of = _Codes()
        codes = np.fromiter(map(code_of.__getitem__, values), dtype=np.int32, count=len(self._assets))
        vocabulary = {value: code for value, code in code_of.items() if value is not None}
        self._columns[key] = (codes, vocabulary)
        return codes, vocabulary

    @cached_property
    def _attrs(self) -> list[dict[str, str]]:
        return list(map(_ATTRS, self._assets))

    @cached_property
    def _software_rows(self) -> tuple[list[tuple[str, str, str]], list[IntArray]]:
        """Each distinct software item (product, version, supplier id), and the assets that run it (ascending).

        A million assets run a few hundred distinct items: they are coded in one pass, and the assets of each
        are found by sorting the codes, not by growing a list per asset in Python."""
        owner = np.repeat(
            np.arange(len(self._assets), dtype=np.int64),
            np.fromiter(map(len, map(_SOFTWARE, self._assets)), dtype=np.int64, count=len(self._assets)),
        )
        keys = self._software_keys
        if keys is None:
            keys = [(item.product, item.version, item.supplier) for asset in self._assets for item in asset.software]
        code_of = {key: code for code, key in enumerate(dict.fromkeys(keys))}
        items = [(product, version, supplier_of(product, supplier)) for product, version, supplier in code_of]
        if not keys:
            return items, [_EMPTY for _ in items]
        codes = np.fromiter(map(code_of.__getitem__, keys), dtype=np.int64, count=len(keys))
        order = np.argsort(codes, kind="stable")  # stable: each item's assets stay ascending
        bounds = np.searchsorted(codes[order], np.arange(len(items) + 1))
        assets = owner[order]
        return items, [assets[bounds[c] : bounds[c + 1]] for c in range(len(items))]

    @cached_property
    def _software(self) -> dict[str, IntArray]:
        """Assets by product (``vendor/name``) and by exact version (``vendor/name@version``)."""
        items, assets = self._software_rows
        runs: dict[str, list[IntArray]] = {}
        for (product, version, _), found in zip(items, assets, strict=True):
            runs.setdefault(product, []).append(found)
            runs.setdefault(f"{product}@{version}", []).append(found)
        return {ref: distinct(np.concatenate(found)) for ref, found in runs.items()}

    @cached_property
    def _by_supplier(self) -> dict[str, IntArray]:
        """Assets a supplier provides: operated or hosted by it, or running its software."""
        provides: dict[str, list[IntArray]] = {}
        codes, vocabulary = self.column("supplier")
        for supplier, code in vocabulary.items():
            provides.setdefault(supplier, []).append(np.flatnonzero(codes == code).astype(np.int64))
        items, assets = self._software_rows
        for (_, _, supplier), found in zip(items, assets, strict=True):
            provides.setdefault(supplier, []).append(found)
        return {supplier: distinct(np.concatenate(found)) for supplier, found in provides.items()}

    def supplied_by(self, supplier_id: str) -> IntArray:
        return self._by_supplier.get(supplier_id, _EMPTY)

    def running(self, software_ref: str) -> IntArray:
        """Assets running a product (``vendor/name``) or an exact version (``vendor/name@version``)."""
        return self._software.get(software_ref, _EMPTY)

    def match(self, selector: Selector) -> IntArray:
        """Indices of the assets the selector matches, ascending."""
        cached = self._answers.get(selector.text)
        if cached is not None:
            return cached
        mask = np.ones(len(self._assets), dtype=np.bool_)
        for term in selector.terms:
            if term.key == "software":
                hit = np.zeros(len(self._assets), dtype=np.bool_)
                for value in term.values:
                    hit[self.running(value)] = True
            else:
                codes, vocabulary = self.column(term.key)
                wanted = [vocabulary[v] for v in term.values if v in vocabulary]
                if len(wanted) == 1:
                    hit = codes == wanted[0]
                else:
                    # A table over the key's few codes, indexed by each asset's code (shifted so that "no
                    # value", -1, reads the table's first cell): one gather instead of np.isin's sort or hash
                    # per term (about a tenth of a second of compile at 200,000 assets of many where-groups).
                    table = np.zeros(len(vocabulary) + 1, dtype=np.bool_)
                    table[np.asarray(wanted, dtype=np.int64) + 1] = True
                    hit = table[codes + 1]
            mask &= ~hit if term.negated else hit
        answer = np.flatnonzero(mask).astype(np.int64)
        self._answers[selector.text] = answer
        return answer


@dataclass(frozen=True)
class Failure:
    """A failure as the user named it, and the nodes it fails."""

    ref: str
    nodes: IntArray = field(compare=False)


@dataclass(frozen=True)
class DownSet:
    """What is down after some failures, as a mask over nodes, with views by id."""

    graph: EstateGraph
    mask: BoolArray
    failed: tuple[Failure, ...]

    @cached_property
    def service_indices(self) -> IntArray:
        return np.flatnonzero(self.mask[: self.graph.n_services]).astype(np.int64)

    @cached_property
    def asset_indices(self) -> IntArray:
        return (np.flatnonzero(self.mask[self.graph.n_services :]) + self.graph.n_services).astype(np.int64)

    @property
    def service_ids(self) -> list[str]:
        return sorted(self.graph.ids[i] for i in self.service_indices.tolist())

    @property
    def asset_ids(self) -> list[str]:
        return sorted(self.graph.ids[i] for i in self.asset_indices.tolist())

    def is_down(self, node_id: str) -> bool:
        return bool(self.mask[self.graph.index[node_id]])


class EstateGraph:
    """An :class:`Estate` compiled for fast questions. Build with :func:`compile_estate`."""

    def __init__(self, estate: Estate) -> None:
        self.estate = estate
        services, assets = estate.services, estate.assets
        self.n_services = len(services)
        self.n_assets = len(assets)
        self.n = self.n_services + self.n_assets
        # The estate's own numbering when it has one (build_estate found it while checking ids): built again,
        # the id list and its index were a tenth of the compile at 200,000 assets.
        self.index: dict[str, int] = (
            estate.node_index
            if estate.node_index is not None
            else dict(zip([*map(_ID, services), *map(_ID, assets)], range(self.n), strict=True))
        )
        self.ids: list[str] = list(self.index)
        self.service_tier = np.fromiter((s.tier for s in services), dtype=np.int8, count=self.n_services)
        self.assets = AssetIndex(assets, estate.software_keys)
        self.warnings: list[Problem] = []

        hard_from: list[int] = []
        hard_to: list[int] = []
        group_owner: list[int] = []
        group_k: list[int] = []
        group_set: list[int] = []
        group_size: list[int] = []
        # Member sets are shared: many owners name the same `where` selector (every GP practice's records service
        # needs "any 1 of its practice's workstations", every dependent of a cluster the same hosts), and storing
        # the members once per distinct set, not once per group, is what keeps a million-asset graph small.
        set_of_key: dict[object, int] = {}
        set_members: list[IntArray] = []
        self.group_spec: list[AnyGroup] = []
        index = self.index
        n_services = self.n_services
        requirements = estate.requirements
        if requirements is None:
            requirements = [(n, r) for n, r in enumerate(map(_REQUIRES, (*services, *assets))) if r]
        for owner, requires in requirements:
            for requirement in requires:
                if isinstance(requirement, str):
                    # Dependents point back: when `requirement` goes down, `owner` goes down.
                    hard_from.append(index[requirement])
                    hard_to.append(owner)
                    continue
                key: object = requirement.where if requirement.where is not None else requirement.of
                s = set_of_key.get(key)
                if s is None:
                    s = set_of_key[key] = len(set_members)
                    set_members.append(self._set_members(requirement))
                members = set_members[s]
                size = members.size
                if owner >= n_services and requirement.where is not None:
                    # A where-group never counts its own owner among its members (members are sorted).
                    at = int(np.searchsorted(members, owner))
                    size -= int(at < members.size and members[at] == owner)
                group_owner.append(owner)
                group_k.append(requirement.any)
                group_set.append(s)
                group_size.append(size)
                self.group_spec.append(requirement)
                if size < requirement.any:
                    section = "services" if owner < n_services else "assets"
                    self.warnings.append(
                        Problem(
                            f"{section[:-1]} '{self.ids[owner]}' needs {requirement.describe()}, but only "
                            f"{size} match: it is down until more do",
                            path=(section, owner if owner < n_services else owner - n_services, "requires"),
                            source=estate.source,
                        )
                    )

        self.dependents_ptr, self.dependents = _csr(
            self.n, np.asarray(hard_from, dtype=np.int64), np.asarray(hard_to, dtype=np.int64)
        )
        self.hard_requirement_count = np.bincount(np.asarray(hard_to, dtype=np.int64), minlength=self.n)
        self.group_owner = np.asarray(group_owner, dtype=np.int64)
        self.group_k = np.asarray(group_k, dtype=np.int64)
        self.group_set = np.asarray(group_set, dtype=np.int64)
        self.group_size = np.asarray(group_size, dtype=np.int64)
        self.group_slack = self.group_size - self.group_k
        n_sets = len(set_members)
        self.set_size = np.fromiter((m.size for m in set_members), dtype=np.int64, count=n_sets)
        # A where-group whose selector matches its own owner is one smaller than its set: the owner is left out.
        self.excludes_owner: BoolArray = self.group_size < self.set_size[self.group_set]
        self.set_members_ptr = np.zeros(n_sets + 1, dtype=np.int64)
        np.cumsum(self.set_size, out=self.set_members_ptr[1:])
        self.set_members = np.concatenate(set_members) if set_members else _EMPTY
        self.member_sets_ptr, self.member_sets = _csr(self.n, self.set_members, _row_of_entry(self.set_members_ptr))
        # The groups of each set, by slack: when a set has lost L members, exactly the groups with slack < L are
        # broken — a prefix — so propagation finds the newly broken ones with one binary search per set.
        by_set = np.lexsort((self.group_slack, self.group_set))
        self.set_groups = by_set.astype(np.int64)
        self.set_groups_ptr = np.zeros(n_sets + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.group_set, minlength=n_sets), out=self.set_groups_ptr[1:])
        self._slack_stride = self.n + 2
        self._set_group_keys = self.group_set[by_set] * self._slack_stride + np.maximum(self.group_slack[by_set], -1)
        # Owners of groups that cannot be met are down before anything fails (a selector that matches too little).
        self.broken_owners = distinct(self.group_owner[self.group_slack < 0])

    def _set_members(self, group: AnyGroup) -> IntArray:
        if group.of is not None:
            return np.fromiter((self.index[m] for m in group.of), dtype=np.int64, count=len(group.of))
        assert group.where is not None
        return self.assets.match(parse_selector(group.where)) + self.n_services

    # ------------------------------------------------------------------------------ propagation

    def propagate(self, seeds: IntArray) -> BoolArray:
        """The least down set containing ``seeds`` (and the owners of groups that can never be met)."""
        down = np.zeros(self.n, dtype=np.bool_)
        lost = np.zeros(self.set_members_ptr.size - 1, dtype=np.int64)
        fired = np.zeros_like(lost)  # per set: how many of its groups (in slack order) have broken so far
        frontier = distinct(np.concatenate((seeds.astype(np.int64, copy=False), self.broken_owners)))
        down[frontier] = True
        dependents_ptr, dependents = self.dependents_ptr, self.dependents
        member_sets_ptr, member_sets = self.member_sets_ptr, self.member_sets
        set_groups_ptr, keys = self.set_groups_ptr, self._set_group_keys
        while frontier.size:
            candidates = gather(dependents_ptr, dependents, frontier)
            sets_hit = gather(member_sets_ptr, member_sets, frontier)
            if sets_hit.size:
                np.add.at(lost, sets_hit, 1)
                touched = distinct(sets_hit)
                # A group's owner counts among its set's losses only once it is down itself, when its group no
                # longer matters: so "slack < lost members of the set" is exact for every owner still up.
                first = set_groups_ptr[touched]
                broken_to = np.searchsorted(keys, touched * self._slack_stride + lost[touched])
                newly = broken_to - first - fired[touched]
                if newly.any():
                    broken = self.set_groups[_ranges(first + fired[touched], newly)]
                    fired[touched] = broken_to - first
                    candidates = np.concatenate((candidates, self.group_owner[broken]))
            if candidates.size == 0:
                break
            candidates = candidates[~down[candidates]]
            frontier = distinct(candidates)
            down[frontier] = True
        return down

    @cached_property
    def baseline(self) -> BoolArray:
        """What is down with nothing failed: owners of groups that cannot be met, and what needs them."""
        return self.propagate(_EMPTY)

    def down_after(self, failures: Sequence[Failure]) -> DownSet:
        seeds = np.concatenate([f.nodes for f in failures]) if failures else _EMPTY
        return DownSet(self, self.propagate(seeds), tuple(failures))

    # ------------------------------------------------------------------------------ failures

    def resolve_failure(self, ref: str) -> Failure:
        """Turn a failure reference (``asset:ID``, ``supplier:ID``, ``software:P[@V]``, ``site:N``, ``where:SEL``,
        ``ID``)
        into the nodes it fails. Unknown names are bad input, not an empty failure."""
        estate = self.estate
        form, sep, name = ref.partition(":")
        if not sep:
            form, name = "", ref
        name = name.strip()
        if form in ("", "asset", "service"):
            i = self.index.get(name)
            if i is None or (form == "asset" and i < self.n_services) or (form == "service" and i >= self.n_services):
                noun = form or "asset or service"
                raise InputError(
                    [Problem(f"failure '{ref}' names no {noun} of estate '{estate.name}'", path=("--fail",))]
                )
            return Failure(ref, np.asarray([i], dtype=np.int64))
        if form == "supplier":
            if name not in estate.supplier_by_id:
                raise InputError(
                    [Problem(f"failure '{ref}' names no supplier of estate '{estate.name}'", path=("--fail",))]
                )
            return Failure(ref, self.assets.supplied_by(name) + self.n_services)
        if form == "software":
            product = name.partition("@")[0]
            if product not in estate.products:
                raise InputError([Problem(f"failure '{ref}': no asset runs '{product}'", path=("--fail",))])
            return Failure(ref, self.assets.running(name) + self.n_services)
        if form == "site":
            if name not in estate.sites:
                known = ", ".join(estate.sites) or "none"
                raise InputError(
                    [
                        Problem(
                            f"failure '{ref}' names no site of estate '{estate.name}' (sites: {known})",
                            path=("--fail",),
                        )
                    ]
                )
            return Failure(ref, self.assets.match(parse_selector(f"site={name}")) + self.n_services)
        if form == "where":
            try:
                selector = parse_selector(name)
            except ValueError as exc:
                raise InputError([Problem(f"failure '{ref}': {exc}", path=("--fail",))]) from None
            return Failure(ref, self.assets.match(selector) + self.n_services)
        raise InputError(
            [
                Problem(
                    f"failure '{ref}' has unknown form '{form}'; use asset:, service:, supplier:, software:, "
                    "site: or where:",
                    path=("--fail",),
                )
            ]
        )

    def resolve_failures(self, refs: Iterable[str]) -> list[Failure]:
        return [self.resolve_failure(ref) for ref in refs]

    # ------------------------------------------------------------------------------ helpers

    def is_service(self, i: int) -> bool:
        return i < self.n_services

    def hard_requirements_of(self, i: int) -> list[int]:
        """Nodes that ``i`` hard-requires (forward edges, derived from the estate, for recovery and display)."""
        node = self.estate.services[i] if i < self.n_services else self.estate.assets[i - self.n_services]
        return [self.index[r] for r in node.hard_requirements]

    def members_of(self, g: int) -> IntArray:
        """The member nodes of group ``g`` (its set, less its owner where the owner matches its own selector)."""
        s = self.group_set[g]
        members = self.set_members[self.set_members_ptr[s] : self.set_members_ptr[s + 1]]
        if self.excludes_owner[g]:
            without_owner: IntArray = members[members != self.group_owner[g]]
            return without_owner
        return members

    @cached_property
    def _member_group_csr(self) -> tuple[IntArray, IntArray, IntArray]:
        """Each group's members expanded (no sharing): ``(ptr, groups)`` by member node, and the node of each
        entry. Built on first use, by the analyses that walk groups member by member (recovery), never by impact
        or SPOF: at a million assets it is tens of millions of entries."""
        sizes = self.set_size[self.group_set]
        entries = _ranges(self.set_members_ptr[self.group_set], sizes)
        nodes = self.set_members[entries]
        groups = np.repeat(np.arange(self.group_owner.size, dtype=np.int64), sizes)
        keep = nodes != self.group_owner[groups]
        ptr, member_groups = _csr(self.n, nodes[keep], groups[keep])
        return ptr, member_groups, _row_of_entry(ptr)

    @property
    def member_groups_ptr(self) -> IntArray:
        """CSR pointers of :attr:`member_groups` by node."""
        return self._member_group_csr[0]

    @property
    def member_groups(self) -> IntArray:
        """The groups each node is a member of, as CSR rows by node (see :attr:`member_groups_ptr`)."""
        return self._member_group_csr[1]

    @property
    def member_nodes(self) -> IntArray:
        """The node of each entry of ``member_groups`` (the CSR rows expanded)."""
        return self._member_group_csr[2]

    @cached_property
    def requirement_edges(self) -> tuple[IntArray, IntArray]:
        """Every hard edge as (required node, dependent node) arrays."""
        return _row_of_entry(self.dependents_ptr), self.dependents

    @cached_property
    def could_cascade(self) -> BoolArray:
        """Nodes whose loss alone can bring down another node: something hard-requires them, or they sit in a
        group with no slack. Any other node, lost alone, takes down nothing but itself.

        Counted per shared set, an owner inside its own set counts against its own groups' slack: that can only
        mark more nodes, never fewer, so no candidate that could cascade is ever skipped."""
        has_dependents = np.diff(self.dependents_ptr) > 0
        n_sets = self.set_members_ptr.size - 1
        in_tight_set = np.zeros(self.n, dtype=np.bool_)
        if n_sets:
            set_of_entry = _row_of_entry(self.set_members_ptr)
            # Slack left with nothing failed: members already down (behind a group never met) count as lost.
            lost_at_baseline = np.bincount(set_of_entry[self.baseline[self.set_members]], minlength=n_sets)
            least_slack = self.group_slack[self.set_groups[self.set_groups_ptr[:-1]]]
            tight = (least_slack - lost_at_baseline) <= 0
            in_tight_set[self.set_members[tight[set_of_entry]]] = True
        result: BoolArray = has_dependents | in_tight_set
        return result


def compile_estate(estate: Estate) -> EstateGraph:
    """Compile an estate once; every analysis then runs on the arrays."""
    with bulk_allocation():
        return EstateGraph(estate)
