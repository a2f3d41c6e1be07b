"""Update files, drill scenarios, incident scenarios and vendor holds (formats in docs/update-format.md).

Like the estate, these are validated pydantic models parsed from text, with every problem located by
file, line and field. No I/O here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ringfence.core.errors import ConflictError, InputError, Problem
from ringfence.core.estate import (
    ID_PATTERN,
    LARGEST_COUNT,
    LONGEST_ID,
    Duration,
    load_document_text,
    locate_problems,
    problems_from_validation,
)
from ringfence.core.selectors import SCALAR_KEYS, parse_selector
from ringfence.core.windows import Freeze, WindowRule

M = TypeVar("M", bound=BaseModel)

DEFAULT_STRATA = ("kind", "attrs.os", "attrs.model", "site")
DEFAULT_RINGS: tuple[int | str, ...] = (1, "5%", "25%", "100%")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class GateSpec(_Model):
    """Thresholds of the health gate (extension). See ringfence.core.gates for what each means."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05
    baseline_failure_rate: Annotated[float, Field(ge=0, lt=1)] = 0.01
    max_failures: Annotated[int, Field(ge=0, le=LARGEST_COUNT)] = 0
    min_coverage: Annotated[float, Field(gt=0, le=1)] = 1.0


class Timing(_Model):
    """How long applying and rolling back one ring take (extension; for plan durations and the simulator)."""

    apply: Duration = 600
    rollback: Duration = 900
    restore_point: Duration = 300


def _ring_step(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError("a ring is a count (5) or a share ('25%')")
    text = str(value).strip()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            raise ValueError(f"'{text}' is not a share; write e.g. '25%'") from None
        if not 0 < share <= 100:
            raise ValueError(f"'{text}': a share is more than 0% and at most 100%")
        return text
    if text.isdigit() and int(text.lstrip("0") or "0") > 0:
        # Compared as digits first: int() of thousands of digits is slow, then refused by Python itself.
        if len(text.lstrip("0")) > len(str(LARGEST_COUNT)) or int(text) > LARGEST_COUNT:
            shown = text if len(text) <= 24 else f"{text[:12]}…{text[-6:]}"
            raise ValueError(f"'{shown}': a ring is at most {LARGEST_COUNT:,} assets")
        return int(text)
    raise ValueError(f"'{text}' is not a ring size; write a count (5) or a share ('25%')")


def _ring_steps_of(value: Sequence[object]) -> tuple[int | str, ...]:
    """Each step read, and each larger than the step of its kind before it (counts with counts, shares with
    shares): the steps are cumulative, so a step that goes back would plan a ring that updates nothing.

    Problems are raised per step, so that they are located at ``rings[i]`` (the line of that step)."""
    steps: list[int | str] = []
    errors: list[InitErrorDetails] = []
    last: dict[bool, tuple[int, float, str]] = {}
    for i, raw in enumerate(value):
        try:
            step = _ring_step(raw)
        except ValueError as exc:
            errors.append(_step_error(i, str(exc), raw))
            continue
        steps.append(step)
        is_share = isinstance(step, str)
        size = float(step[:-1]) if isinstance(step, str) else float(step)
        text = f"'{step}'" if is_share else str(step)
        before = last.get(is_share)
        if before is not None and size <= before[1]:
            kind = "share" if is_share else "count"
            errors.append(
                _step_error(
                    i,
                    f"{text} is not larger than {before[2]} before it (rings[{before[0]}]): rings are cumulative, "
                    f"so each {kind} must be larger than the {kind} before it",
                    raw,
                )
            )
            continue  # the steps after it are held to the larger one before it
        last[is_share] = (i, size, text)
    if errors:
        raise ValidationError.from_exception_data("rings", errors)
    return tuple(steps)


def _step_error(index: int, message: str, value: object) -> InitErrorDetails:
    # The message goes in as context, not as the template: a step written with braces must not be formatted.
    return InitErrorDetails(
        type=PydanticCustomError("ring_step", "{message}", {"message": message}), loc=(index,), input=value
    )


class Update(_Model):
    id: Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)]
    product: Annotated[str, Field(pattern=r"^[a-z0-9._-]+/[A-Za-z0-9._+-]+$")]
    version: Annotated[str, Field(pattern=r"^[^\s,|@=!]+$")]
    targets: str | None = None
    strata: tuple[str, ...] = DEFAULT_STRATA
    rings: tuple[int | str, ...] = DEFAULT_RINGS
    bake: Duration = 3600
    rollback: Literal["snapshot", "reinstall", "none"] = "snapshot"
    gate: GateSpec = GateSpec()
    timing: Timing = Timing()
    description: str | None = None
    # Left out of a dump when empty: an update without windows stores and reads back as it always did.
    windows: tuple[WindowRule, ...] = Field(default=(), exclude_if=lambda v: not v)
    """When each ring may open (ringfence.core.windows, docs/windows.md); none: any time."""
    freezes: tuple[Freeze, ...] = Field(default=(), exclude_if=lambda v: not v)
    """Whole days in London on which no ring opens."""

    @field_validator("targets")
    @classmethod
    def _targets_selector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_selector(value)
        return value

    @field_validator("strata")
    @classmethod
    def _strata_keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            if key not in SCALAR_KEYS and not (key.startswith("attrs.") and len(key) > 6):
                raise ValueError(f"'{key}' cannot be a strata key; use kind, site, supplier, id or attrs.NAME")
        if len(set(value)) != len(value):
            raise ValueError("a strata key is listed twice")
        return value

    @field_validator("rings", mode="before")
    @classmethod
    def _ring_steps(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("rings is a non-empty list of counts or shares, e.g. [1, '5%', '25%', '100%']")
        return _ring_steps_of(value)

    @property
    def release(self) -> str:
        return f"{self.product}@{self.version}"

    @property
    def target_selector(self) -> str:
        return self.targets or f"software={self.product}"


class UpdateDocument(_Model):
    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    update: Update


class Fault(_Model):
    """What goes wrong in a drill: which updated assets can fail, how likely, how long after install."""

    affects: str
    probability: Annotated[float, Field(ge=0, le=1)] = 1.0
    after: Duration = 60
    rollback_loses_data: bool = False
    signal: Literal["crashed", "heartbeat_lost", "reboot_loop", "service_check_failed"] = "crashed"

    @field_validator("affects")
    @classmethod
    def _affects_selector(cls, value: str) -> str:
        parse_selector(value)
        return value


class DrillScenario(_Model):
    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    scenario: Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)]
    description: str | None = None
    update: Update
    fault: Fault
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0


class IncidentScenario(_Model):
    """An incident to rehearse recovery for: what fails (extension)."""

    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    incident: Annotated[str, Field(pattern=ID_PATTERN, max_length=LONGEST_ID)]
    description: str | None = None
    fail: tuple[str, ...]


class Hold(_Model):
    release: Annotated[str, Field(pattern=r"^[a-z0-9._-]+/[A-Za-z0-9._+-]+(@[^\s,|@=!]+)?$")]
    reason: str
    source: str | None = None


class HoldsDocument(_Model):
    api_version: Literal["ringfence/v1"] = Field(alias="apiVersion")
    holds: tuple[Hold, ...] = ()


def _parse(model: type[M], text: str, source: str, what: str) -> M:
    data = load_document_text(text, source)
    if not isinstance(data, dict):
        raise InputError([Problem(f"{what} file is a mapping with apiVersion: ringfence/v1", source=source)])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(locate_problems(problems_from_validation(exc, data, source), text)) from None


def parse_update_text(text: str, source: str = "<update>") -> Update:
    return _parse(UpdateDocument, text, source, "an update").update


def parse_scenario_text(text: str, source: str = "<scenario>") -> DrillScenario:
    return _parse(DrillScenario, text, source, "a drill scenario")


def parse_incident_text(text: str, source: str = "<incident>") -> IncidentScenario:
    return _parse(IncidentScenario, text, source, "an incident scenario")


def parse_holds_text(text: str, source: str = "<holds>") -> tuple[Hold, ...]:
    return _parse(HoldsDocument, text, source, "a holds").holds


@dataclass(frozen=True)
class HoldOverride:
    """A held release planned anyway, and why: recorded in the plan and the audit log."""

    release: str
    reason: str
    justification: str


def check_holds(update: Update, holds: Sequence[Hold], justification: str | None = None) -> HoldOverride | None:
    """Refuse a release under a vendor hold, unless a person writes down why it must go ahead."""
    for hold in holds:
        if hold.release in (update.release, update.product):
            if justification is None or not justification.strip():
                where = f" ({hold.source})" if hold.source else ""
                raise ConflictError(
                    f"{update.release} is on hold: {hold.reason}{where}. "
                    "To plan it anyway, give a justification (--override-hold 'why'); it is recorded."
                )
            return HoldOverride(hold.release, hold.reason, justification.strip())
    return None
