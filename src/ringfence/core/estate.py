"""The estate model: services → assets → software → suppliers, and the rules a valid estate obeys.

``parse_estate_text`` turns the text of an estate file (YAML or JSON) into an :class:`Estate`, or raises
:class:`~ringfence.core.errors.EstateError` listing every problem with its file, line and field. Reading the file
is the caller's business (``ringfence.files.disk``): this module does no I/O.

The happy path is fast (the C YAML loader, or ``json`` for JSON text, then one pydantic validation pass);
line numbers are found only for the problems shown (:func:`locate_problems`), in one pass over the text that
looks for their paths alone.

The validated pydantic models are the domain model: they are frozen and checked once; copying a
million assets into a second set of classes would double load time and memory for nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from ringfence.core.allocation import bulk_allocation
from ringfence.core.durations import format_duration, parse_duration
from ringfence.core.errors import EstateError, Problem
from ringfence.core.selectors import Selector, parse_selector

API_VERSION = "ringfence/v1"
ID_PATTERN = r"^[a-z0-9._-]+$"
_ID = re.compile(ID_PATTERN)
MAX_PROBLEMS = 50
LONGEST_ID = 200
"""The longest id (of an asset, service, supplier, update or scenario) and estate name: what the database keeps
for one (a longer one would be refused by PostgreSQL when a rollout or incident stores it)."""
LARGEST_COUNT = 10_000_000
"""The largest count a file may give (an any-group's K, a ring's size, a gate's tolerated failures): ten times
the largest estate ringfence is measured on. A larger one is a typo, and overflows the graph's 64-bit arrays."""


class AssetKind(StrEnum):
    HOST = "host"
    VM = "vm"
    ENDPOINT = "endpoint"
    APPLIANCE = "appliance"
    SAAS = "saas"
    NETWORK = "network"
    STORAGE = "storage"


TIER_NAMES = {
    1: "life-critical",
    2: "urgent care",
    3: "routine care",
    4: "business support",
}
NO_SERVICE_TIER = 5
"""The impact tier of an asset whose loss alone takes no service down."""


def _duration(value: object) -> int:
    return parse_duration(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def without_control_characters(value: str) -> str:
    """A name people write (an estate's) is text on one line: no control characters, NUL above all, which
    PostgreSQL cannot store."""
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"a name cannot hold control characters (U+{ord(found.group()):04X} at {found.start() + 1})")
    return value


def _with_text_attrs(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` with boolean attrs written as text, copying only what changes.

    YAML turns ``yes``/``true`` into booleans, and importers pass them through; attrs are text so that
    selectors compare like with like. Done here, once, rather than by a validator called for every asset,
    so the JSON fast path (which rejects a boolean attr and falls back to this path) stays lean."""
    assets = data.get("assets")
    if not isinstance(assets, list):
        return data
    changed: list[Any] | None = None
    for i, asset in enumerate(assets):
        attrs = asset.get("attrs") if isinstance(asset, Mapping) else None
        if isinstance(attrs, Mapping) and any(v is True or v is False for v in attrs.values()):
            changed = changed if changed is not None else list(assets)
            text = {k: ("true" if v else "false") if v is True or v is False else v for k, v in attrs.items()}
            changed[i] = {**asset, "attrs": text}
    return data if changed is None else {**data, "assets": changed}


Duration = Annotated[int, BeforeValidator(_duration), PlainSerializer(format_duration, return_type=str)]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)]
Count = Annotated[int, Field(ge=1, le=LARGEST_COUNT)]
Attrs = dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], str]


_FIELDS = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
"""How every part of an estate document is validated: unknown fields refused, numbers taken as the text written."""


class _Model(BaseModel):
    model_config = ConfigDict(**_FIELDS, frozen=True)


# The parts an estate has hundreds of thousands of (assets, their software items) are slotted, frozen dataclasses
# rather than models: a model keeps a dict of its fields and a set of those given, per instance; at 200,000 assets
# these were 290 MB of `ringfence impact`'s 690 MB, and about a fifth of its time, spent allocating them.


class Supplier(_Model):
    id: Id
    name: str | None = None
    contact: str | None = None
    """Extension: who to call at the supplier when their product fails."""

    @property
    def label(self) -> str:
        return self.name or self.id


def supplier_of(product: str, supplier: str | None) -> str:
    """Who supplies a product: the ``supplier`` given for it, else its vendor (``vendor/name``)."""
    return supplier or product.split("/", 1)[0]


@pydantic_dataclass(frozen=True, slots=True, kw_only=True, config=_FIELDS)
class Software:
    product: Annotated[str, Field(pattern=r"^[a-z0-9._-]+/[A-Za-z0-9._+-]+$")]
    version: Annotated[str, Field(pattern=r"^[^\s,|@=!]+$")]
    supplier: Id | None = None

    @property
    def supplier_id(self) -> str:
        """Who supplies it: ``supplier`` when given, else the product's vendor."""
        return supplier_of(self.product, self.supplier)

    @property
    def ref(self) -> str:
        return f"{self.product}@{self.version}"


SoftwareKey = tuple[str, str, str | None]
"""A software item as the graph indexes it: product, version, and the supplier written (None: its vendor)."""


class AnyGroup(_Model):
    """At least ``any`` of ``of`` (or of the assets ``where`` matches, never the owner itself) must be up."""

    any: Count = 1
    of: tuple[Id, ...] | None = None
    where: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AnyGroup:
        if (self.of is None) == (self.where is None):
            raise ValueError("an any-group needs exactly one of 'of' (a list of ids) or 'where' (a selector)")
        if self.of is not None:
            if not self.of:
                raise ValueError("an any-group's 'of' list cannot be empty")
            if self.any > len(self.of):
                raise ValueError(
                    f"needs {self.any} of {len(self.of)} listed ({', '.join(self.of)}): "
                    "K cannot be larger than its list"
                )
        if self.where is not None:
            parse_selector(self.where)
        return self

    @cached_property
    def selector(self) -> Selector | None:
        return parse_selector(self.where) if self.where is not None else None

    def describe(self) -> str:
        if self.of is not None:
            return f"any {self.any} of [{', '.join(self.of)}]"
        return f"any {self.any} where {self.where}"


def _requirement_tag(value: object) -> str:
    return "ref" if isinstance(value, str) else "any-group"


Requirement = Annotated[
    Annotated[Id, Tag("ref")] | Annotated[AnyGroup, Tag("any-group")],
    Discriminator(_requirement_tag),
]
_UNION_TAGS = {"ref", "any-group"}
UNKNOWN_FIELD_ERRORS = frozenset({"extra_forbidden", "unexpected_keyword_argument"})
"""Pydantic's error types for a field the format does not have: a model's, and a dataclass's (assets, software)."""


class _Requires:
    """What services and assets (a model, a dataclass) share: their requirements, by kind."""

    __slots__ = ()
    if TYPE_CHECKING:  # a field of each class that takes this in; declared for the type checker alone
        requires: tuple[Requirement, ...]

    @property
    def hard_requirements(self) -> tuple[str, ...]:
        return tuple(r for r in self.requires if isinstance(r, str))

    @property
    def any_groups(self) -> tuple[AnyGroup, ...]:
        return tuple(r for r in self.requires if isinstance(r, AnyGroup))


class Service(_Model, _Requires):
    id: Id
    requires: tuple[Requirement, ...] = ()
    name: str | None = None
    tier: Annotated[int, Field(ge=1, le=4)]
    rto: Duration | None = None
    rpo: Duration | None = None
    continuity: str | None = None
    contacts: tuple[str, ...] = ()
    """Extension: who to call, printed on downtime packs."""

    @property
    def label(self) -> str:
        return self.name or self.id


@pydantic_dataclass(frozen=True, slots=True, kw_only=True, config=_FIELDS)
class Asset(_Requires):
    id: Id
    requires: tuple[Requirement, ...] = ()
    kind: AssetKind
    name: str | None = None
    # Trimmed, then checked: a site is a selector value, so it cannot hold , | = or !.
    site: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^,|=!]+$")] | None = None
    supplier: Id | None = None
    attrs: Attrs = Field(default_factory=dict)
    software: tuple[Software, ...] = ()


Node = Service | Asset
"""What may require something, and be required: services and assets share one namespace of ids."""


class EstateDocument(_Model):
    """The file as written, validated field by field (references are checked by :func:`build_estate`)."""

    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    estate: Annotated[str, Field(min_length=1, max_length=LONGEST_ID), AfterValidator(without_control_characters)]
    suppliers: tuple[Supplier, ...] = ()
    services: tuple[Service, ...] = ()
    assets: tuple[Asset, ...] = ()


@dataclass(frozen=True)
class Estate:
    """A validated estate: every reference resolves, ids are unique, every rule of the format holds.

    ``suppliers`` holds the declared suppliers and, after them, the ones only named (by an asset's
    ``supplier`` or a product's vendor), so a ``supplier:ID`` failure works for both.
    """

    name: str
    suppliers: tuple[Supplier, ...]
    services: tuple[Service, ...]
    assets: tuple[Asset, ...]
    declared_suppliers: int
    source: str = "<estate>"
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    software_keys: Sequence[SoftwareKey] | None = field(default=None, compare=False, repr=False)
    """Every asset's software items in asset order, as (product, version, supplier given), when
    :func:`build_estate` walked them; None for an estate built another way (the graph walks them itself)."""
    node_index: dict[str, int] | None = field(default=None, compare=False, repr=False)
    """The number of every node, services then assets, in order (as the graph numbers them), when
    :func:`build_estate` found them."""
    requirements: Sequence[tuple[int, tuple[Requirement, ...]]] | None = field(default=None, compare=False, repr=False)
    """Each node that requires something, by its number, with what it requires, when :func:`build_estate` walked
    them (most assets require nothing: the graph walks these alone)."""

    @cached_property
    def asset_by_id(self) -> Mapping[str, Asset]:
        return {a.id: a for a in self.assets}

    @cached_property
    def service_by_id(self) -> Mapping[str, Service]:
        return {s.id: s for s in self.services}

    @cached_property
    def supplier_by_id(self) -> Mapping[str, Supplier]:
        return {s.id: s for s in self.suppliers}

    @cached_property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({a.site for a in self.assets if a.site is not None}))

    @cached_property
    def products(self) -> tuple[str, ...]:
        return tuple(sorted({s.product for a in self.assets for s in a.software}))

    def node(self, node_id: str) -> Node:
        found = self.service_by_id.get(node_id) or self.asset_by_id.get(node_id)
        if found is None:
            raise KeyError(node_id)
        return found

    def has_node(self, node_id: str) -> bool:
        return node_id in self.service_by_id or node_id in self.asset_by_id


# --------------------------------------------------------------------------------------------- parsing


class _EstateLoader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """YAML loader that keeps numbers and dates as the text written.

    A version ``7.10`` must stay ``7.10`` (a float would make it ``7.1``); pydantic turns ``"1"`` into
    the int a field wants. Duplicate keys are refused: YAML would silently keep the last one.
    """


_KEEP_AS_TEXT = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_EstateLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _KEEP_AS_TEXT]
    for first, resolvers in _EstateLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_EstateLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping_no_duplicates)


_TOO_DEEP = "lists and mappings nested too deeply to be a ringfence file"


def load_document_text(text: str, source: str) -> Any:
    """Parse YAML or JSON text into plain data; syntax errors become problems with their line.

    A text nested thousands deep (``[[[[…``) is refused as input, not left to exhaust the parser's stack: files
    come from uploads, and any viewer may send one to be checked."""
    if _looks_like_json(text):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise EstateError([Problem(f"not valid JSON: {exc.msg}", source=source, line=exc.lineno)]) from exc
        except RecursionError:
            raise EstateError([Problem(f"not valid JSON: {_TOO_DEEP}", source=source)]) from None
    try:
        return yaml.load(text, Loader=_EstateLoader)
    except RecursionError:
        raise EstateError([Problem(f"not valid YAML: {_TOO_DEEP}", source=source)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or "not valid YAML"
        raise EstateError([Problem(f"not valid YAML: {what}", source=source, line=line)]) from exc
    except yaml.YAMLError as exc:
        raise EstateError([Problem(f"not valid YAML: {exc}", source=source)]) from exc


def parse_estate_text(text: str, source: str = "<estate>") -> Estate:
    """Parse and validate estate file text. Raises :class:`EstateError` naming file, line and field.

    The estate's warnings carry their field paths but no lines: most commands never show them, and finding lines
    has a cost on a large file. A caller that shows them locates them first, ``locate_problems(warnings, text)``.
    """
    try:
        with bulk_allocation():
            estate = _parse_estate_json(text, source) if _looks_like_json(text) else None
            if estate is None:
                estate = parse_estate_document(load_document_text(text, source), source=source)
    except EstateError as exc:
        raise EstateError(locate_problems(exc.problems, text)) from None
    return estate


def _looks_like_json(text: str) -> bool:
    return text.lstrip()[:1] in ("{", "[")


def _parse_estate_json(text: str, source: str) -> Estate | None:
    """The fast path for JSON: pydantic parses and validates the text in one pass, without building the plain
    dicts and lists first (half the memory, and repeated strings such as sites and versions are shared).
    Returns None when the text is not a valid estate document, so the plain path can say why, line by line."""
    try:
        document = EstateDocument.model_validate_json(text)
    except ValidationError:
        return None
    return build_estate(document, source)


def validate_document(data: Mapping[str, Any]) -> EstateDocument:
    """Validate plain data field by field (boolean attrs become text); raises pydantic's ValidationError."""
    return EstateDocument.model_validate(_with_text_attrs(data))


def parse_estate_document(data: Any, source: str = "<estate>") -> Estate:
    """Validate plain data (as loaded from YAML/JSON, or built by an importer) into an :class:`Estate`.

    Problems carry field paths but no lines; :func:`parse_estate_text` adds lines from the text.
    """
    if not isinstance(data, Mapping):
        found = "nothing" if data is None else type(data).__name__
        raise EstateError(
            [
                Problem(
                    f"an estate file is a mapping with apiVersion: {API_VERSION}; found {found}",
                    source=source,
                )
            ]
        )
    try:
        document = validate_document(data)
    except ValidationError as exc:
        raise EstateError(problems_from_validation(exc, data, source)) from None
    return build_estate(document, source)


class LocatedValueError(ValueError):
    """A validator's problem about another field than the one it validates (a route naming an unknown channel):
    :func:`problems_from_validation` reports it at ``path``."""

    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


Explain = Callable[[Any, tuple[str | int, ...]], str | None]
"""A document's own words for some of pydantic's errors (the error's details, its path): None keeps the usual."""


def problems_from_validation(
    exc: ValidationError, data: Any, source: str, *, explain: Explain | None = None
) -> list[Problem]:
    """Each of pydantic's errors as a :class:`Problem` at its field, in a sentence; ``explain`` may word some."""
    problems = []
    for error in exc.errors(include_url=False)[:MAX_PROBLEMS]:
        path = tuple(part for part in error["loc"] if part not in _UNION_TAGS)
        kind = error["type"]
        located = (error.get("ctx") or {}).get("error")
        if isinstance(located, LocatedValueError):
            problems.append(Problem(str(located), path=located.path, source=source))
            continue
        if kind == "too_short" and _was_long_enough(error):
            # Pydantic drops the items that failed and then counts what is left: the items' own errors say it.
            continue
        message = explain(error, path) if explain is not None else None
        if message is not None:
            pass
        elif kind in UNKNOWN_FIELD_ERRORS:
            message = f"unknown field '{path[-1]}'"
        elif kind == "missing":
            message = f"required field '{path[-1]}' is missing"
        elif kind in ("model_type", "dataclass_type"):
            # Pydantic names the Python class ("an instance of Software"); the user wrote YAML or JSON.
            message = f"must be a mapping of fields (name: value), not {_written_as(error.get('input'))}"
        elif path and path[-1] == "apiVersion":
            message = f"apiVersion must be '{API_VERSION}'"
        elif kind in ("enum", "literal_error"):
            expected = error["msg"].removeprefix("Input should be ")
            message = f"'{error['input']}' is not allowed here; use {expected}"
        else:
            message = error["msg"]
            message = message.removeprefix("Value error, ")
            message = message[0].lower() + message[1:] if message else message
        problems.append(Problem(_with_owner(message, path, data), path=path, source=source))
    return problems


def _written_as(value: object) -> str:
    """What a value is, in the words of the file it came from."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return f"the text '{value}'" if len(value) <= 60 else f"the text '{value[:57]}…'"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, Sequence):
        return "a list"
    return type(value).__name__


def _was_long_enough(error: Any) -> bool:
    """Whether a ``too_short`` error's input itself had enough items (some failed, and were not counted)."""
    given, least = error.get("input"), (error.get("ctx") or {}).get("min_length")
    return isinstance(given, Sequence | Mapping) and isinstance(least, int) and len(given) >= least


def _with_owner(message: str, path: tuple[str | int, ...], data: Any) -> str:
    """Prefix a message with the asset/service/supplier it belongs to, when the document names one."""
    if len(path) >= 2 and path[0] in ("assets", "services", "suppliers") and isinstance(path[1], int):
        try:
            item = data[path[0]][path[1]]
            node_id = item.get("id") if isinstance(item, Mapping) else None
        except (KeyError, IndexError, TypeError):
            node_id = None
        if isinstance(node_id, str):
            noun = str(path[0])[:-1]
            return f"{noun} '{node_id}': {message}"
    return message


# ------------------------------------------------------------------------------------------ semantics

# C getters mapped over every asset: at 200,000 assets each walk in a comprehension cost tens of milliseconds more.
_ID_OF = attrgetter("id")
_REQUIRES = attrgetter("requires")
_SUPPLIER = attrgetter("supplier")
_SOFTWARE = attrgetter("software")
_SOFTWARE_KEY = attrgetter("product", "version", "supplier")


def build_estate(document: EstateDocument, source: str = "<estate>") -> Estate:
    """Check what field validation cannot (ids, references, groups) and build the :class:`Estate`."""
    problems: list[Problem] = []
    warnings: list[Problem] = []

    def problem(message: str, *path: str | int) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(Problem(message, path=path, source=source))

    supplier_ids: dict[str, int] = {}
    for i, supplier in enumerate(document.suppliers):
        if supplier.id in supplier_ids:
            problem(
                f"supplier '{supplier.id}' is defined twice (first at suppliers[{supplier_ids[supplier.id]}])",
                "suppliers",
                i,
                "id",
            )
        supplier_ids.setdefault(supplier.id, i)

    services, assets = document.services, document.assets
    n_services = len(services)
    # Node numbers (services, then assets) are the graph's: found here once, with the duplicates, and kept.
    node_ids = [*map(_ID_OF, services), *map(_ID_OF, assets)]
    node_index = dict(zip(node_ids, range(len(node_ids)), strict=True))
    if len(node_index) != len(node_ids):
        node_where: dict[str, tuple[str, int]] = {}
        sections: tuple[tuple[str, Sequence[Node]], ...] = (("services", services), ("assets", assets))
        for section, items in sections:
            for i, item in enumerate(items):
                if item.id in node_where:
                    first_section, first_index = node_where[item.id]
                    problem(
                        f"id '{item.id}' is already used by {first_section}[{first_index}]; "
                        "assets and services share one namespace",
                        section,
                        i,
                        "id",
                    )
                else:
                    node_where[item.id] = (section, i)

    # Most assets require nothing: the nodes that do are found in one pass (kept for the graph, which walks the
    # same requirements), and only they are checked.
    requirements = [(n, requires) for n, requires in enumerate(map(_REQUIRES, (*services, *assets))) if requires]
    for n, requires in requirements:
        section, i = ("services", n) if n < n_services else ("assets", n - n_services)
        node_id = node_ids[n]
        owner = f"{'service' if n < n_services else 'asset'} '{node_id}'"
        seen_hard: set[str] = set()
        for j, req in enumerate(requires):
            if isinstance(req, str):
                if req == node_id:
                    problem(f"{owner} requires itself", section, i, "requires", j)
                elif req in seen_hard:
                    problem(f"{owner} lists '{req}' twice in its requires", section, i, "requires", j)
                elif req not in node_index:
                    problem(f"{owner} requires '{req}', which is not defined", section, i, "requires", j)
                seen_hard.add(req)
                continue
            if req.of is not None:
                seen_member: set[str] = set()
                for k, member in enumerate(req.of):
                    at = (section, i, "requires", j, "of", k)
                    if member == node_id:
                        problem(f"{owner} lists itself in its own any-group", *at)
                    elif member in seen_member:
                        problem(f"{owner} lists '{member}' twice in one any-group", *at)
                    elif member not in node_index:
                        problem(f"{owner} requires any of '{member}', which is not defined", *at)
                    seen_member.add(member)

    if problems:
        raise EstateError(problems)

    # Suppliers named but not declared still exist (a `supplier:` failure must work); `check` says so.
    # A million assets name a few dozen suppliers: find the undeclared ones from the distinct names first, and
    # walk the assets for where each is first named only when there are any.
    declared = {s.id for s in document.suppliers}
    # One walk over every software item, kept for the graph's supplier and software indexes (the same walk
    # again there cost a tenth of `impact --fail supplier:…` at 200k assets).
    software_keys = list(map(_SOFTWARE_KEY, chain.from_iterable(map(_SOFTWARE, assets))))
    product_suppliers = {(product, supplier) for product, _, supplier in set(software_keys)}
    named = set(map(_SUPPLIER, assets)) | {supplier_of(product, supplier) for product, supplier in product_suppliers}
    named.discard(None)
    implicit: dict[str, tuple[str | int, ...]] = {}
    if not named <= declared:
        for i, asset in enumerate(document.assets):
            if asset.supplier and asset.supplier not in declared:
                implicit.setdefault(asset.supplier, ("assets", i, "supplier"))
            for k, software in enumerate(asset.software):
                if software.supplier_id not in declared:
                    implicit.setdefault(software.supplier_id, ("assets", i, "software", k))
    for supplier_id, path in sorted(implicit.items()):
        warnings.append(
            Problem(
                f"supplier '{supplier_id}' is named but not listed under suppliers; "
                "add it to give its name and contact",
                path=path,
                source=source,
            )
        )
    suppliers = document.suppliers + tuple(Supplier(id=s) for s in sorted(implicit))

    for i, service in enumerate(document.services):
        if not service.requires:
            warnings.append(
                Problem(
                    f"service '{service.id}' requires nothing, so nothing can take it down",
                    path=("services", i),
                    source=source,
                )
            )

    for i, service in enumerate(document.services):
        if service.rto is None or service.continuity is None:
            missing = [
                name for name, value in (("rto", service.rto), ("continuity", service.continuity)) if value is None
            ]
            warnings.append(
                Problem(
                    f"service '{service.id}' (tier {service.tier}) has no {' or '.join(missing)}; "
                    "recovery cannot plan for it",
                    path=("services", i),
                    source=source,
                )
            )

    return Estate(
        name=document.estate,
        suppliers=suppliers,
        services=document.services,
        assets=document.assets,
        declared_suppliers=len(document.suppliers),
        source=source,
        warnings=tuple(warnings),
        software_keys=software_keys,
        node_index=node_index,
        requirements=requirements,
    )


# ---------------------------------------------------------------------------------------- locations

FieldPath = tuple[str | int, ...]


def locate_problems(problems: Sequence[Problem], text: str) -> list[Problem]:
    """The problems, each with a field path and no line given the line of that field in ``text``.

    Call it with the problems about to be shown, not with every problem found: only their paths are looked for,
    in one pass over the text that stops at the last of them and builds nothing of the document (JSON values are
    skipped one by one with the C decoder; YAML is read as the C parser's stream of events). On a JSON text
    written on one line it reads nothing at all. A path that the text does not hold in full gets the line of its
    deepest part that it does hold."""
    paths = [p.path for p in problems if p.path and p.line is None]
    if not paths:
        return list(problems)
    lines = _lines_of_paths(text, paths)
    return [replace(p, line=lines.get(p.path)) if p.path and p.line is None else p for p in problems]


class _Step:
    """One part of the paths looked for; ``at`` is where the text holds it (an offset in JSON, a line in YAML)."""

    __slots__ = ("at", "children", "wanted")

    def __init__(self) -> None:
        self.children: dict[str | int, _Step] = {}
        self.wanted = False
        self.at: int | None = None


class _AllFound(Exception):  # noqa: N818 - not an error: it ends the walk once nothing is left to find
    """Every path looked for is found: the rest of the text need not be read."""


class _PathTree:
    """The paths looked for, as a tree, so one pass over the text finds them all."""

    def __init__(self, paths: Iterable[FieldPath]) -> None:
        self.root = _Step()
        self.left = 0
        for path in paths:
            step = self.root
            for part in path:
                step = step.children.setdefault(part, _Step())
            if not step.wanted:
                step.wanted = True
                self.left += 1

    def reach(self, step: _Step, at: int) -> None:
        """``step`` is at ``at`` in the text; a key written twice is located at its first place, as before."""
        if step.at is not None:
            return
        step.at = at
        if step.wanted:
            self.left -= 1
            if self.left == 0:
                raise _AllFound

    def deepest(self, path: FieldPath) -> int | None:
        """Where the deepest part of ``path`` that the text holds is."""
        step, at = self.root, self.root.at
        for part in path:
            found = step.children.get(part)
            if found is None or found.at is None:
                break
            step, at = found, found.at
        return at


def _lines_of_paths(text: str, paths: Sequence[FieldPath]) -> dict[FieldPath, int | None]:
    tree = _PathTree(paths)
    if _looks_like_json(text):
        one_line = _single_line_of_json(text)
        if one_line is not None:
            return dict.fromkeys(paths, one_line)
        try:
            _walk_json(text, tree)
        except _AllFound:
            pass
        except (ValueError, IndexError, RecursionError):
            pass  # not JSON after all (its loader said so): keep the lines found before the fault
        offsets = {path: tree.deepest(path) for path in paths}
        lines = _lines_at(text, {o for o in offsets.values() if o is not None})
        return {path: None if offset is None else lines[offset] for path, offset in offsets.items()}
    try:
        _walk_yaml(text, tree)
    except _AllFound:
        pass
    except (yaml.YAMLError, StopIteration, RecursionError):
        pass  # the loader has said what is wrong with the text: keep the lines found before the fault
    return {path: tree.deepest(path) for path in paths}


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _single_line_of_json(text: str) -> int | None:
    """The line every value of ``text`` is on, when the JSON is written on one line (as machines write it)."""
    start = _JSON_SPACE.match(text).end()  # type: ignore[union-attr]  # a pattern of * always matches
    end = len(text)
    while end > start and text[end - 1] in " \t\n\r":
        end -= 1
    if text.find("\n", start, end) != -1:
        return None
    return text.count("\n", 0, start) + 1


def _lines_at(text: str, offsets: Iterable[int]) -> dict[int, int]:
    """The 1-based line of each offset, counting newlines once from the start to the last offset."""
    lines: dict[int, int] = {}
    line, last = 1, 0
    for offset in sorted(offsets):
        line += text.count("\n", last, offset)
        last = offset
        lines[offset] = line
    return lines


def _walk_json(text: str, tree: _PathTree) -> None:
    """Record the offset of every looked-for path of a JSON text. Values off the paths are skipped by the C
    decoder; a list off the paths is skipped item by item, so that no large part of the document is ever built."""
    decode = json.JSONDecoder().raw_decode
    scan_key = json.decoder.scanstring  # type: ignore[attr-defined]
    space = _JSON_SPACE.match

    def after_space(pos: int) -> int:
        return space(text, pos).end()  # type: ignore[union-attr]

    def value(pos: int, step: _Step | None) -> int:
        char = text[pos]
        if char == "[":
            return items(pos, step)
        if char == "{" and step is not None and step.children:
            return members(pos, step)
        end: int = decode(text, pos)[1]
        return end

    def members(pos: int, step: _Step) -> int:
        pos = after_space(pos + 1)
        if text[pos] == "}":
            return pos + 1
        while True:
            if text[pos] != '"':
                raise ValueError("expected a key")
            key, pos = scan_key(text, pos + 1)
            child = step.children.get(key)
            if child is not None:
                tree.reach(child, pos - len(key) - 2)
            pos = after_space(pos)
            if text[pos] != ":":
                raise ValueError("expected ':'")
            pos = after_space(value(after_space(pos + 1), child))
            if text[pos] == "}":
                return pos + 1
            if text[pos] != ",":
                raise ValueError("expected ',' or '}'")
            pos = after_space(pos + 1)

    def items(pos: int, step: _Step | None) -> int:
        pos = after_space(pos + 1)
        if text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            child = step.children.get(index) if step is not None else None
            if child is not None:
                tree.reach(child, pos)
            pos = after_space(value(pos, child))
            if text[pos] == "]":
                return pos + 1
            if text[pos] != ",":
                raise ValueError("expected ',' or ']'")
            pos = after_space(pos + 1)
            index += 1

    start = after_space(0)
    tree.reach(tree.root, start)
    value(start, tree.root)


def _walk_yaml(text: str, tree: _PathTree) -> None:
    """Record the line of every looked-for path of a YAML text, from the C parser's events: no node is kept, and
    the parser stops at the last path found."""
    events = yaml.parse(text, Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader)
    opening, closing = yaml.CollectionStartEvent, yaml.CollectionEndEvent

    def skip(event: yaml.Event) -> None:
        if not isinstance(event, opening):
            return
        depth = 1
        for inner in events:
            if isinstance(inner, opening):
                depth += 1
            elif isinstance(inner, closing):
                depth -= 1
                if depth == 0:
                    return

    def node(event: yaml.Event, step: _Step | None) -> None:
        if step is None or not step.children:
            skip(event)
        elif isinstance(event, yaml.MappingStartEvent):
            while not isinstance(key := next(events), yaml.MappingEndEvent):
                child = step.children.get(key.value) if isinstance(key, yaml.ScalarEvent) else None
                skip(key)  # a key that is itself a list or mapping names no field
                if child is not None:
                    tree.reach(child, _line_of_event(key))
                node(next(events), child)
        elif isinstance(event, yaml.SequenceStartEvent):
            index = 0
            while not isinstance(item := next(events), yaml.SequenceEndEvent):
                child = step.children.get(index)
                if child is not None:
                    tree.reach(child, _line_of_event(item))
                node(item, child)
                index += 1

    for event in events:
        if isinstance(event, yaml.NodeEvent):
            tree.reach(tree.root, _line_of_event(event))
            node(event, tree.root)
            return


def _line_of_event(event: yaml.Event) -> int:
    mark = event.start_mark
    if mark is None:  # the parser marks every event; without a mark there is no line to give
        raise yaml.YAMLError("a YAML event without a position")
    return int(mark.line) + 1
