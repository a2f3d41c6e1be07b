"""Request and response bodies of the REST API, as pydantic models (so /openapi.json describes them).

The analysis, plan, recovery and drill responses mirror the documents of the CLI contract key for key
(``ringfence.core.documents``, ``ringfence.core.drills.drill_document``): the API and ``--json`` print the same JSON.
Responses forbid extra keys, so a document that grows a key without its model fails loudly in tests
instead of losing the key quietly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class CheckDocument(_Out):
    """``ringfence check --json``."""

    ok: bool
    assets: int
    services: int
    suppliers: int
    estate: str
    warnings: list[str]


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


# ---------------------------------------------------------------------------------------------- analysis


class ServiceTier(_Out):
    id: str
    tier: int


class ImpactDocument(_Out):
    """``ringfence impact --json``."""

    failed: list[str]
    services_down: list[ServiceTier]
    assets_down: list[str]
    by_tier: dict[str, int]


class SinglePointOfFailureOut(_Out):
    ref: str
    services: list[str]
    worst_tier: int


class SpofDocument(_Out):
    """``ringfence spof --json``."""

    spofs: list[SinglePointOfFailureOut]


class SupplierShare(_Out):
    id: str
    services_down: list[str]
    share_by_tier: dict[str, float]


class ConcentrationDocument(_Out):
    """``ringfence concentration --json``."""

    suppliers: list[SupplierShare]


class RestoreStepOut(_Out):
    step: int
    restore: list[str]


class ContinuityOut(_Out):
    service: str
    tier: int
    rto: int | None
    plan: str | None
    contacts: list[str]


class RtoRiskOut(_Out):
    service: str
    tier: int
    rto: int
    restored_by: int


class RecoveryDocument(_Out):
    """``ringfence recover --json``."""

    failed: list[str]
    steps: list[RestoreStepOut]
    continuity: list[ContinuityOut]
    rto_at_risk: list[RtoRiskOut]
    notes: list[str]
    parallel: int | None
    step_seconds: int
    evidence: str


# ------------------------------------------------------------------------------------ plans and rollouts


class PlanRequest(_In):
    estate: str = Field(description="Estate name.")
    version: int | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[str, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    override_hold: str | None = Field(default=None, description="Plan a held release anyway; why.")


class PlanRing(_Out):
    index: int
    name: str
    assets: list[str]
    bake: int
    size: int
    strata: list[str]
    tiers: dict[str, int]
    canary: bool
    why: str | None


class PlanWarningOut(_Out):
    kind: str
    owners: list[str]
    members: list[str]
    k: int
    message: str


class HoldOverrideOut(_Out):
    release: str
    reason: str
    justification: str


class PlanDocument(_Out):
    """``ringfence plan --json``."""

    update: str
    release: str
    targets: int
    strata_keys: list[str]
    rings: list[PlanRing]
    canary_rings: int
    warnings: list[PlanWarningOut]
    notes: list[str]
    minimum_duration: int
    worst_case_rollback: int | None
    hold_override: HoldOverrideOut | None


class RolloutCreate(_In):
    estate: str = Field(description="Estate name.")
    version: int | None = Field(default=None, description="Estate version id; default: the current one.")
    update: Annotated[str, Field(min_length=1, description="The update file (YAML or JSON), as text.")]
    driver: str = Field(default="simulated", description="Execution driver (entry point name).")
    strategy: Literal["ringfence", "all-at-once", "batches"] = "ringfence"
    override_hold: str | None = Field(
        default=None, description="Roll out a held release anyway; recorded, and someone else must approve."
    )


class RolloutAction(_In):
    reason: Annotated[str, Field(max_length=2000, description="Why (recorded in the audit log).")] = ""


class RingStatusOut(_Out):
    index: int
    name: str
    canary: bool
    assets: int
    states: dict[str, int]
    strata: list[str]


class RolloutAssetOut(_Out):
    id: str
    ring: int
    state: str
    detail: str | None


class RolloutStatusDocument(_Out):
    """``ringfence rollout status --json``."""

    id: str
    update: str
    strategy: str
    phase: str
    ring: int
    paused_from: str | None
    halt_reason: str | None
    version: int
    created_by: str
    approved_by: str | None
    needs_approval: bool
    updated_at: str
    rings: list[RingStatusOut]
    assets: list[RolloutAssetOut]
    pending_decisions: int


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


class AuditVerification(_Out):
    """``ringfence audit verify --json``."""

    ok: bool
    entries: int
    first_bad_seq: int | None
    reason: str | None
    last_hash: str | None


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


class DrillStrategyResult(_Out):
    strategy: str
    exposed: int
    failed: int
    services_down: list[ServiceTier]
    halted_at_ring: int | None
    detected_after: float | None
    data_lost: int
    rings: int
    duration: float
    outcome: str
    halt_reason: str | None
    exposed_assets: list[str]
    failed_assets: list[str]
    data_lost_assets: list[str]


class DrillDocument(_Out):
    """``ringfence drill --json``."""

    scenario: str
    targets: int
    affected: int
    results: list[DrillStrategyResult]


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
    "AuditVerification",
    "BundledScenario",
    "CheckDocument",
    "ConcentrationDocument",
    "DrillDocument",
    "DrillRequest",
    "EstateDetail",
    "EstateList",
    "EstateUpload",
    "EstateUploaded",
    "EstateVersionList",
    "EstateVersionOut",
    "ImpactDocument",
    "PlanDocument",
    "PlanRequest",
    "ProblemOut",
    "RecoveryDocument",
    "RolloutAction",
    "RolloutCreate",
    "RolloutList",
    "RolloutStatusDocument",
    "RolloutSummary",
    "ScenarioList",
    "SpofDocument",
    "TokenCreate",
    "TokenIssued",
    "TokenList",
    "TokenOut",
]
