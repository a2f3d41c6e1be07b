"""The estate compiled once into integer arrays, and what goes down when something fails.

Nodes are services then assets, numbered ``0..n``; services occupy ``0..n_services``. Requirements become
CSR arrays (numpy) read backwards, from a required node to the nodes that need it:

* hard edges: ``dependents_ptr``/``dependents`` — who needs this node up;
* any-groups: group ``g`` belongs to ``group_owner[g]``, needs ``group_k[g]`` of its members up, and tolerates
  ``group_slack[g] = size - K`` members down; ``member_groups_ptr``/``member_groups`` — the groups a node is in.

Blast radius is a counter-based propagation from the failed set, level by level: a node goes down when a hard
requirement goes down, or when one of its groups has lost more members than its slack. Only nodes that go
down, and the edges out of them, are touched; per-query counters start as zeroed arrays (``calloc``'d, so
untouched pages cost nothing). The result is the least set closed under the rules of the estate format —
cycles bring nothing down by themselves, because nothing is down until a failure reaches it.

Everything user-facing speaks ids; indices never leave this module's callers in the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt

from ringfence.errors import InputError, Problem
from ringfence.estate import AnyGroup, Asset, Estate
from ringfence.selectors import Selector, parse_selector, scalar_value

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


def gather(ptr: IntArray, values: IntArray, rows: IntArray) -> IntArray:
    """Concatenate the CSR rows ``rows`` of ``values`` without a Python loop."""
    if rows.size == 0:
        return _EMPTY
    starts = ptr[rows]
    lengths = ptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY
    if rows.size == 1:
        return values[starts[0] : starts[0] + total]
    # For each output position: the start of its row plus its offset inside that row.
    row_offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return values[row_offsets + np.arange(total)]


class AssetIndex:
    """Answers selectors over the assets with indexes built lazily per key, and caches the answers.

    A million assets share a few hundred distinct ``where`` selectors; each is answered once, with numpy
    masks over a categorical code column per key, not by testing every asset in Python.
    """

    def __init__(self, assets: Sequence[Asset]) -> None:
        self._assets = assets
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
        vocabulary: dict[str, int] = {}
        codes = np.fromiter(
            (
                -1 if value is None else vocabulary.setdefault(value, len(vocabulary))
                for value in (scalar_value(asset, key) for asset in self._assets)
            ),
            dtype=np.int32,
            count=len(self._assets),
        )
        self._columns[key] = (codes, vocabulary)
        return codes, vocabulary

    @cached_property
    def _software(self) -> dict[str, IntArray]:
        runs: dict[str, list[int]] = {}
        for i, asset in enumerate(self._assets):
            for item in asset.software:
                runs.setdefault(item.product, []).append(i)
                runs.setdefault(item.ref, []).append(i)
        return {ref: np.unique(np.asarray(found, dtype=np.int64)) for ref, found in runs.items()}

    @cached_property
    def _by_supplier(self) -> dict[str, IntArray]:
        """Assets a supplier provides: operated or hosted by it, or running its software."""
        provides: dict[str, set[int]] = {}
        for i, asset in enumerate(self._assets):
            if asset.supplier:
                provides.setdefault(asset.supplier, set()).add(i)
            for item in asset.software:
                provides.setdefault(item.supplier_id, set()).add(i)
        return {s: np.fromiter(sorted(found), dtype=np.int64, count=len(found)) for s, found in provides.items()}

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
                hit = np.isin(codes, np.asarray(wanted, dtype=np.int32))
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
        self.ids: list[str] = [s.id for s in services] + [a.id for a in assets]
        self.index: dict[str, int] = {node_id: i for i, node_id in enumerate(self.ids)}
        self.service_tier = np.fromiter((s.tier for s in services), dtype=np.int8, count=self.n_services)
        self.assets = AssetIndex(assets)
        self.warnings: list[Problem] = []

        hard_from: list[int] = []
        hard_to: list[int] = []
        group_owner: list[int] = []
        group_k: list[int] = []
        member_node: list[IntArray] = []
        member_group: list[IntArray] = []
        self.group_spec: list[AnyGroup] = []
        index = self.index
        for owner, node in enumerate((*services, *assets)):
            for requirement in node.requires:
                if isinstance(requirement, str):
                    # Dependents point back: when `requirement` goes down, `owner` goes down.
                    hard_from.append(index[requirement])
                    hard_to.append(owner)
                    continue
                members = self._group_members(requirement, owner)
                g = len(group_owner)
                group_owner.append(owner)
                group_k.append(requirement.any)
                self.group_spec.append(requirement)
                member_node.append(members)
                member_group.append(np.full(members.size, g, dtype=np.int64))
                if members.size < requirement.any:
                    section = "services" if owner < self.n_services else "assets"
                    self.warnings.append(
                        Problem(
                            f"{section[:-1]} '{self.ids[owner]}' needs {requirement.describe()}, but only "
                            f"{members.size} match: it is down until more do",
                            path=(
                                section,
                                owner if owner < self.n_services else owner - self.n_services,
                                "requires",
                            ),
                            source=estate.source,
                        )
                    )

        self.dependents_ptr, self.dependents = _csr(
            self.n, np.asarray(hard_from, dtype=np.int64), np.asarray(hard_to, dtype=np.int64)
        )
        self.hard_requirement_count = np.bincount(np.asarray(hard_to, dtype=np.int64), minlength=self.n)
        self.group_owner = np.asarray(group_owner, dtype=np.int64)
        self.group_k = np.asarray(group_k, dtype=np.int64)
        members_flat = np.concatenate(member_node) if member_node else _EMPTY
        groups_flat = np.concatenate(member_group) if member_group else _EMPTY
        self.group_size = np.bincount(groups_flat, minlength=len(group_owner)).astype(np.int64)
        self.group_members_ptr, self.group_members = _csr(len(group_owner), groups_flat, members_flat)
        self.member_groups_ptr, self.member_groups = _csr(self.n, members_flat, groups_flat)
        self.group_slack = self.group_size - self.group_k
        # Owners of groups that cannot be met are down before anything fails (a selector that matches too little).
        self.broken_owners = np.unique(self.group_owner[self.group_slack < 0])

    def _group_members(self, group: AnyGroup, owner: int) -> IntArray:
        if group.of is not None:
            return np.fromiter((self.index[m] for m in group.of), dtype=np.int64, count=len(group.of))
        assert group.where is not None
        found = self.assets.match(parse_selector(group.where)) + self.n_services
        # A where-group never counts its own owner among its members.
        return found[found != owner] if owner >= self.n_services else found

    # ------------------------------------------------------------------------------ propagation

    def propagate(self, seeds: IntArray) -> BoolArray:
        """The least down set containing ``seeds`` (and the owners of groups that can never be met)."""
        down = np.zeros(self.n, dtype=np.bool_)
        lost = np.zeros(self.group_owner.size, dtype=np.int64)
        frontier = np.unique(np.concatenate((seeds.astype(np.int64, copy=False), self.broken_owners)))
        down[frontier] = True
        dependents_ptr, dependents = self.dependents_ptr, self.dependents
        member_groups_ptr, member_groups = self.member_groups_ptr, self.member_groups
        while frontier.size:
            candidates = gather(dependents_ptr, dependents, frontier)
            groups_hit = gather(member_groups_ptr, member_groups, frontier)
            if groups_hit.size:
                np.add.at(lost, groups_hit, 1)
                broken = groups_hit[lost[groups_hit] > self.group_slack[groups_hit]]
                if broken.size:
                    candidates = np.concatenate((candidates, self.group_owner[broken]))
            if candidates.size == 0:
                break
            candidates = candidates[~down[candidates]]
            frontier = np.unique(candidates)
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
        return self.group_members[self.group_members_ptr[g] : self.group_members_ptr[g + 1]]

    @cached_property
    def member_nodes(self) -> IntArray:
        """The node of each entry of ``member_groups`` (the CSR rows expanded)."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.member_groups_ptr))

    @cached_property
    def requirement_edges(self) -> tuple[IntArray, IntArray]:
        """Every hard edge as (required node, dependent node) arrays."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.dependents_ptr)), self.dependents

    @cached_property
    def could_cascade(self) -> BoolArray:
        """Nodes whose loss alone can bring down another node: something hard-requires them, or they sit in a
        group with no slack. Any other node, lost alone, takes down nothing but itself."""
        has_dependents = np.diff(self.dependents_ptr) > 0
        # Slack left with nothing failed: members already down (behind a group that can never be met) count as lost.
        lost_at_baseline = np.bincount(
            self.member_groups[self.baseline[self.member_nodes]], minlength=self.group_owner.size
        )
        tight_groups = (self.group_slack - lost_at_baseline)[self.member_groups] <= 0
        in_tight_group = np.zeros(self.n, dtype=np.bool_)
        if tight_groups.any():
            in_tight_group[self.member_nodes[tight_groups]] = True
        result: BoolArray = has_dependents | in_tight_group
        return result


def compile_estate(estate: Estate) -> EstateGraph:
    """Compile an estate once; every analysis then runs on the arrays."""
    return EstateGraph(estate)
