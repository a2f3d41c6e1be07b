"""Request bodies of the REST API, and the responses only the API gives, as pydantic models (so /openapi.json
describes them).

The documents the CLI prints too (analysis, plans, recovery, drills, rollout status, audit verification) are not
here: each is one model in :mod:`ringfence.core.documents`, which the routes name as their ``response_model``.
Responses forbid extra keys, so an answer that grows a key without its model fails loudly in tests instead of
losing the key quietly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Interval, MaxLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ringfence.core.documents import CheckDocument
from ringfence.service.tokens import Role

EstateFormatName = Literal["yaml", "json"]


# ------------------------------------------------------------------------------------------ bounded inputs
# Whatever a caller sends is held, at the edge, to what the database can store: a number past PostgreSQL's
# INTEGER, a NUL character (PostgreSQL text cannot hold one) or a name longer than its column would otherwise
# reach the database and come back as a 500. Bounded here, it is a 422 naming the field. Path and query
# parameters take the same types (``Annotated[RecordId, Path()]``).

LARGEST_ID = 2**31 - 1
"""The largest row id (estate versions, tokens): PostgreSQL's INTEGER."""
LARGEST_SEQUENCE = 2**63 - 1
"""The largest sequence number (audit entries, rollout events): a 64-bit integer, on SQLite and PostgreSQL."""
LONGEST_NAME = 200
"""The longest name (estate, asset, token, person): what the database keeps for one."""


def _without_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"cannot hold a NUL character (at {value.index(chr(0)) + 1})")
    return value


RecordId = Annotated[int, Interval(ge=1, le=LARGEST_ID)]
"""The id of a stored row (an estate version, a token)."""
LogPosition = Annotated[int, Interval(ge=0, le=LARGEST_SEQUENCE)]
"""A position in a log (``after=``): 0 for its start."""
Text = Annotated[str, AfterValidator(_without_nul)]
"""Free text (a file, a reason): any length the route allows, but no NUL."""
Name = Annotated[str, MaxLen(LONGEST_NAME), AfterValidator(_without_nul)]
"""A name or id (an estate, a rollout, an incident, an asset): at most 200 characters, no NUL."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------- problems


class ProblemOut(_Out):
    """One thing wrong (or worth a warning) with an input, located."""

    field: str | None = Field(description="Field path inside the document, e.g. assets[3].requires[0].")
    line: int | None = Field(description="1-based line in the uploaded text, when known.")
    source: str | None
    message: str
    detail: str = Field(description="The whole sentence: source:line: field: message.")


# ----------------------------------------------------------------------------------------------- estates


class EstateUpload(_In):
    """An estate file's text. Also accepted: the raw YAML itself with ``Content-Type: application/yaml``."""

    name: Annotated[Name | None, Field(description="Must match the `estate:` the content declares.")] = None
    content: Annotated[Text, Field(min_length=1, description="The estate file (YAML or JSON), as text.")]
    format: Annotated[EstateFormatName | None, Field(description="Default: detected from the content.")] = None


class EstateVersionOut(_Out):
    id: int = Field(description="The version's id; `?version=` takes it.")
    name: str
    sha256: str
    format: EstateFormatName
    created_at: datetime
    created_by: str
    assets: int
    services: int
    status: str = Field(
        default="accepted",
        description="accepted (of record; the one accepted last is current), proposed (awaiting a second "
        "person), rejected, or kept (stored for an incident, never of record).",
    )
    decided_by: str | None = Field(default=None, description="Who approved or rejected the proposal.")


class TierChangeOut(_Out):
    service: str
    was: int
    now: int


class RequirementDroppedOut(_Out):
    owner: str = Field(description="`service 'epr'` or `asset 'epr-app-1'`.")
    requirement: str


class AssetMoveOut(_Out):
    asset: str
    from_estate: str


class EstateDiffOut(_Out):
    """How a version weakens the estate of record: why it needs a second person before it becomes current."""

    against: int | None = Field(description="The current version compared with; null when there was none.")
    tiers_lowered: list[TierChangeOut]
    services_removed: list[str]
    requirements_removed: list[RequirementDroppedOut]
    assets_moved: list[AssetMoveOut]
    changes: list[str] = Field(description="Each change in a sentence, worst first.")


class EstateUploaded(_Out):
    created: bool = Field(description="False when the same text was already stored: that version is returned.")
    current: bool = Field(description="Whether this version is the estate's current version of record.")
    version: EstateVersionOut
    check: CheckDocument
    warnings: list[ProblemOut]
    proposed: bool = Field(
        default=False, description="True when the version weakens the estate of record: it awaits a second person."
    )
    diff: EstateDiffOut | None = Field(default=None, description="What it weakens (when judged now).")


class EstateProposal(_Out):
    version: EstateVersionOut
    diff: EstateDiffOut


class EstateProposalList(_Out):
    name: str
    proposals: list[EstateProposal] = Field(description="Proposed versions, oldest first, judged against now.")


class EstateListItem(_Out):
    name: str
    versions: int
    latest: EstateVersionOut = Field(description="The current version of record (the newest when none is).")
    proposals: int = Field(default=0, description="Versions awaiting a second person.")


class EstateList(_Out):
    estates: list[EstateListItem]


class EstateVersionList(_Out):
    name: str
    versions: list[EstateVersionOut] = Field(description="Oldest first; the last is current.")


class EstateDetail(_Out):
    """An estate version summarised: counts by tier and kind, sites, and its warnings."""

    name: str
    version: EstateVersionOut
    current: bool
    versions: int
    assets: int
    services: int
    suppliers: int
    sites: list[str]
    services_by_tier: dict[str, int]
    assets_by_kind: dict[str, int]
    warnings: list[ProblemOut]


# ------------------------------------------------------------------------------------ plans and rollouts


class PlanRequest(_In):
    estate: Name = Field(description="Estate name.")
    version: RecordId | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[Text, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    override_hold: Text | None = Field(default=None, description="Plan a held release anyway; why.")


class RolloutCreate(_In):
    estate: Name = Field(description="Estate name.")
    version: RecordId | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[Text, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    driver: Name = Field(default="simulated", description="Execution driver (entry point name).")
    health_source: Name | None = Field(
        default=None,
        description="What judges the rollout's health: `driver` (the default, the driver's own reading) or an "
        "installed health source (entry point name in `ringfence.health_sources`: `heartbeats`, `ansible` …).",
    )
    strategy: Literal["ringfence", "all-at-once", "batches"] = "ringfence"
    override_hold: Text | None = Field(
        default=None, description="Roll out a held release anyway; recorded, and someone else must approve."
    )


class RolloutAction(_In):
    reason: Annotated[Text, Field(max_length=2000, description="Why (recorded in the audit log).")] = ""


class RolloutSummary(_Out):
    id: str
    update: str
    estate_version: int
    phase: str
    ring: int
    halt_reason: str | None
    created_by: str
    approved_by: str | None
    needs_approval: bool
    created_at: datetime
    updated_at: datetime


class RolloutList(_Out):
    rollouts: list[RolloutSummary] = Field(description="Oldest first.")


# ------------------------------------------------------------------------------------------------ audit


class AuditEntryOut(_Out):
    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(_Out):
    entries: list[AuditEntryOut]
    last_seq: int = Field(description="Pass as `after` to get the entries written since.")


# ------------------------------------------------------------------------------------------------ drills


class DrillRequest(_In):
    estate: Name = Field(description="Estate name.")
    version: RecordId | None = Field(default=None, description="Estate version id; default: the current one.")
    scenario: Text | None = Field(default=None, description="A drill scenario file (YAML or JSON), as text.")
    bundled: Name | None = Field(
        default=None, description="Or the id of a bundled scenario (GET /v1/drills/scenarios)."
    )
    strategies: list[Literal["ringfence", "all-at-once", "batches"]] | None = Field(
        default=None, min_length=1, description="Default: all three."
    )

    @model_validator(mode="after")
    def _one_scenario(self) -> DrillRequest:
        if (self.scenario is None) == (self.bundled is None):
            raise ValueError("give exactly one of scenario (its text) or bundled (a bundled scenario's id)")
        return self


class BundledScenario(_Out):
    id: str
    file: str
    description: str | None
    release: str
    content: str


class ScenarioList(_Out):
    scenarios: list[BundledScenario]


# ------------------------------------------------------------------------------------------------ tokens


class TokenCreate(_In):
    name: Annotated[Text, Field(min_length=1, max_length=200, description="Whose token: a person, team or service.")]
    role: Role
    asset: Name | None = Field(
        default=None, description="For an agent token: the one asset it speaks for (a stored estate must have it)."
    )
    force: bool = Field(default=False, description="Issue an agent token for an asset no stored estate has.")


class TokenOut(_Out):
    id: int
    name: str
    role: Role
    asset: str | None


class TokenIssued(TokenOut):
    token: str = Field(description="The secret. Shown once; only its hash is kept.")


class TokenList(_Out):
    tokens: list[TokenOut]


__all__ = [
    "AuditEntryOut",
    "AuditPage",
    "BundledScenario",
    "DrillRequest",
    "EstateDetail",
    "EstateList",
    "EstateUpload",
    "EstateUploaded",
    "EstateVersionList",
    "EstateVersionOut",
    "PlanRequest",
    "ProblemOut",
    "RolloutAction",
    "RolloutCreate",
    "RolloutList",
    "RolloutSummary",
    "ScenarioList",
    "TokenCreate",
    "TokenIssued",
    "TokenList",
    "TokenOut",
]
