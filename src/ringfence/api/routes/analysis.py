"""Analysis of a stored estate: blast radius, single points of failure, supplier concentration, recovery.

Each answers the same JSON document as the matching command's ``--json`` (``ringfence.core.documents``), on the
estate's current version or the one ``?version=`` names. Compiled graphs are cached per version.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import Field

from ringfence.api.deps import EngineDep, Viewer
from ringfence.api.routes.estates import Compiled
from ringfence.api.schemas import Name, RecordId, Text
from ringfence.core.documents import (
    ConcentrationDocument,
    ImpactDocument,
    RecoveryDocument,
    SpofDocument,
    concentration_document,
    impact_document,
    recovery_document,
    spof_document,
)
from ringfence.core.durations import parse_duration
from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import LARGEST_COUNT

router = APIRouter(prefix="/v1/estates", tags=["analysis"])

EstateName = Annotated[Name, Path(description="Estate name.")]
VersionQuery = Annotated[RecordId | None, Query(description="Estate version id; default: the current one.")]
# One failure reference: `where:` takes a selector, so longer than a name.
FailQuery = Annotated[
    list[Annotated[Text, Field(max_length=4000)]],
    Query(
        min_length=1,
        description="What fails (repeat the parameter): asset:ID, service:ID, supplier:ID, software:P[@V], "
        "site:NAME, where:SELECTOR or a bare ID.",
    ),
]


@contextmanager
def named_as(names: Mapping[str, str]) -> Iterator[None]:
    """Problems the core names by a CLI flag (``--fail``) are named by this API's parameter (``fail``)."""
    try:
        yield
    except InputError as exc:
        problems = [
            replace(p, path=(names[p.path[0]], *p.path[1:]))
            if p.path and isinstance(p.path[0], str) and p.path[0] in names
            else p
            for p in exc.problems
        ]
        raise InputError(problems) from None


@router.get("/{name}/impact", response_model=ImpactDocument, summary="Blast radius of failures")
def impact(
    name: EstateName, fail: FailQuery, caller: Viewer, engine: EngineDep, cache: Compiled, version: VersionQuery = None
) -> ImpactDocument:
    """What goes down when the ``fail`` references fail (``ringfence impact --json``)."""
    from ringfence.core.impact import compute_blast_radius

    graph = cache.get(engine, name, version).graph
    with named_as({"--fail": "fail"}):
        radius = compute_blast_radius(graph, fail)
    return impact_document(radius)


@router.get("/{name}/spof", response_model=SpofDocument, summary="Single points of failure")
def spof(
    name: EstateName,
    caller: Viewer,
    engine: EngineDep,
    cache: Compiled,
    tier: Annotated[
        int | None, Query(ge=1, le=4, description="Keep only services of this tier or more critical.")
    ] = None,
    version: VersionQuery = None,
) -> SpofDocument:
    """Assets, suppliers, products and sites whose loss alone takes a service down (``ringfence spof --json``)."""
    from ringfence.core.impact import find_single_points_of_failure

    graph = cache.get(engine, name, version).graph
    return spof_document(find_single_points_of_failure(graph, max_tier=tier))


@router.get("/{name}/concentration", response_model=ConcentrationDocument, summary="Supplier concentration")
def concentration(
    name: EstateName, caller: Viewer, engine: EngineDep, cache: Compiled, version: VersionQuery = None
) -> ConcentrationDocument:
    """What each supplier's failure takes down, as a share of each tier (``ringfence concentration --json``)."""
    from ringfence.core.impact import supplier_concentration

    graph = cache.get(engine, name, version).graph
    return concentration_document(supplier_concentration(graph))


@router.get("/{name}/recover", response_model=RecoveryDocument, summary="Recovery order after failures")
def recover(
    name: EstateName,
    fail: FailQuery,
    caller: Viewer,
    engine: EngineDep,
    cache: Compiled,
    parallel: Annotated[
        int | None,
        Query(ge=1, le=LARGEST_COUNT, description="At most N items restored at once; ordered by tier, then RTO."),
    ] = None,
    step_time: Annotated[
        Text, Query(max_length=100, description="How long one restore step takes, for RTO estimates.")
    ] = "1h",
    version: VersionQuery = None,
) -> RecoveryDocument:
    """Restore order, continuity plans to enact and RTOs at risk (``ringfence recover --json``)."""
    from ringfence.core.recovery import plan_recovery

    try:
        step_seconds = parse_duration(step_time)
    except ValueError as exc:
        raise InputError([Problem(str(exc), path=("step_time",))]) from None
    graph = cache.get(engine, name, version).graph
    with named_as({"--fail": "fail"}):
        failures = graph.resolve_failures(fail)
    plan = plan_recovery(graph, failures, parallel=parallel, step_seconds=step_seconds)
    return recovery_document(plan)
