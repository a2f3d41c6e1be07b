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

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringfence.core.documents import CheckDocument
from ringfence.service.tokens import Role

EstateFormatName = Literal["yaml", "json"]


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

    name: Annotated[str | None, Field(description="Must match the `estate:` the content declares.")] = None
    content: Annotated[str, Field(min_length=1, description="The estate file (YAML or JSON), as text.")]
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


class EstateUploaded(_Out):
    created: bool = Field(description="False when the same text was already stored: that version is returned.")
    current: bool = Field(description="Whether this version is the estate's current (newest) one.")
    version: EstateVersionOut
    check: CheckDocument
    warnings: list[ProblemOut]


class EstateListItem(_Out):
    name: str
    versions: int
    latest: EstateVersionOut


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
    estate: str = Field(description="Estate name.")
    version: int | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[str, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    override_hold: str | None = Field(default=None, description="Plan a held release anyway; why.")


class RolloutCreate(_In):
    estate: str = Field(description="Estate name.")
    version: int | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[str, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    driver: str = Field(default="simulated", description="Execution driver (entry point name).")
    health_source: str | None = Field(
        default=None,
        description="What judges the rollout's health: `driver` (the default, the driver's own reading) or an "
        "installed health source (entry point name in `ringfence.health_sources`: `heartbeats`, `ansible` …).",
    )
    strategy: Literal["ringfence", "all-at-once", "batches"] = "ringfence"
    override_hold: str | None = Field(
        default=None, description="Roll out a held release anyway; recorded, and someone else must approve."
    )


class RolloutAction(_In):
    reason: Annotated[str, Field(max_length=2000, description="Why (recorded in the audit log).")] = ""


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
    estate: str = Field(description="Estate name.")
    version: int | None = Field(default=None, description="Estate version id; default: the current one.")
    scenario: str | None = Field(default=None, description="A drill scenario file (YAML or JSON), as text.")
    bundled: str | None = Field(default=None, description="Or the id of a bundled scenario (GET /v1/drills/scenarios).")
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
    name: Annotated[str, Field(min_length=1, max_length=200, description="Whose token: a person, team or service.")]
    role: Role
    asset: str | None = Field(default=None, description="For an agent token: the one asset it speaks for.")


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
