"""What a change between two stored versions of an estate does to risk: ``ringfence diff OLD NEW`` on the server.

``GET /v1/estates/{name}/diff?from=V1&to=V2`` answers the very document of ``ringfence diff --json``
(:func:`ringfence.core.estate_diff.diff_document`). ``to`` defaults to the current version. A tier-1 single point
of failure added is ``"adds_tier_1_single_point": true`` in a 200 answer, not an error status: the question
was answered.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from ringfence.api.deps import EngineDep, Viewer
from ringfence.api.routes.estates import Compiled
from ringfence.api.schemas import Name, RecordId
from ringfence.core.estate_diff import EstateDiffDocument, diff_document, diff_estates

router = APIRouter(prefix="/v1/estates", tags=["analysis"])


@router.get("/{name}/diff", response_model=EstateDiffDocument, summary="What a change of version does to risk")
def estate_diff(
    name: Annotated[Name, Path(description="Estate name.")],
    caller: Viewer,
    engine: EngineDep,
    cache: Compiled,
    before: Annotated[RecordId, Query(alias="from", description="The version before the change.")],
    after: Annotated[
        RecordId | None, Query(alias="to", description="The version after the change; default: the current one.")
    ] = None,
) -> EstateDiffDocument:
    """Single points of failure added or removed, services that lose or gain redundancy, tier and impact changes,
    supplier concentration moves (``ringfence diff --json``)."""
    old = cache.get(engine, name, before).graph
    new = cache.get(engine, name, after).graph
    return diff_document(diff_estates(old, new))
