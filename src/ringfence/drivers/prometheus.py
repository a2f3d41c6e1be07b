"""The ``prometheus`` health source: the trust's own monitoring judges a rollout ("Ansible installs, Prometheus
judges").

Each reading runs every *check* of a checks file (``docs/prometheus.md``) as an instant query against
Prometheus's HTTP API (``POST /api/v1/query``) and turns the answers into one :class:`AssetHealth` per asset:

- **failed** when any series of any check that applies to the asset breaches its threshold (``fail_when: "< 1"``),
  with the check's signal and a sentence naming the check, the value and the threshold;
- **healthy** when every check that applies to the asset answered with at least one series for it and none
  breached;
- **left out** (unknown) otherwise: an asset with no series for a check — no exporter, a scrape that never
  happened, a ratio that is NaN for want of traffic — is *no telemetry*, never a pass. The gates treat it as
  not judged (missing telemetry is never a pass; rule 6 never widens an unjudged stratum).

The source only reads; the comparison of a stratum's updated members with its not-yet-updated ones is the
gates' (``core.gates``): the controller asks for every target of the rollout, updated or not, at every step
of the bake and once more when the bake ends, and a failure seen during the bake is judged at once.

A check names its asset in the query with ``{asset}`` (``up{instance=~"{asset}(:[0-9]+)?"}``): the source asks
for many assets in one query, replacing ``{asset}`` with an alternation of their ids (``batch`` ids a query),
and finds each answer's asset in the series' ``label`` (default ``instance``): its value, or the value before
a ``:port``, or the host name before the first ``.`` of that, equal to an asked id. A check without
``{asset}`` is asked once and its series are attributed the same way. ``{window}`` stands for the check's
``window`` (default ``5m``), for range functions (``rate(x[{window}])``).

A Prometheus that does not answer (refused, timed out, an HTTP error, a query it rejects) is a
:class:`~ringfence.core.errors.DriverError` naming the check and the address: the controller pauses a running
rollout with that sentence. It is never a crash and never a pass.

Configuration: the options (``url``, ``checks``, ``timeout``, ``batch``), or — where the server builds the
source, which passes no options — the environment: ``RINGFENCE_PROMETHEUS_URL``, ``RINGFENCE_PROMETHEUS_CHECKS``,
``RINGFENCE_PROMETHEUS_TIMEOUT``, ``RINGFENCE_PROMETHEUS_BATCH``. Without a checks file the one check is ``up``.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ringfence.core.driver import DriverOption, DriverOptions
from ringfence.core.durations import format_duration, parse_duration
from ringfence.core.errors import DriverError, InputError, Problem
from ringfence.core.estate import load_document_text, locate_problems, problems_from_validation
from ringfence.core.gates import AssetHealth, AssetStatus, FailureSignal
from ringfence.drivers.registry import DriverContext

NAME = "prometheus"

URL_ENV = "RINGFENCE_PROMETHEUS_URL"
CHECKS_ENV = "RINGFENCE_PROMETHEUS_CHECKS"
TIMEOUT_ENV = "RINGFENCE_PROMETHEUS_TIMEOUT"
BATCH_ENV = "RINGFENCE_PROMETHEUS_BATCH"
_ENV = {"url": URL_ENV, "checks": CHECKS_ENV, "timeout": TIMEOUT_ENV, "batch": BATCH_ENV}

OPTIONS = DriverOptions(
    NAME,
    (
        DriverOption("url", f"Prometheus's address, e.g. http://prometheus:9090 (or ${URL_ENV})", required=True),
        DriverOption(
            "checks", f"a YAML file of checks, docs/prometheus.md (or ${CHECKS_ENV}); without one: up", kind="path"
        ),
        DriverOption(
            "timeout",
            "how long Prometheus may take to answer one query",
            kind="duration",
            default="10s",
            minimum=1,
            maximum=300,
        ),
        DriverOption(
            "batch",
            "assets named in one query of a check written with {asset}",
            kind="whole",
            default="500",
            minimum=1,
            maximum=5000,
        ),
    ),
    role="health source",
    flag="--health-option",
)

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_THRESHOLD = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@functools.lru_cache(maxsize=256)
def _threshold(text: str) -> tuple[Callable[[float, float], bool], float]:
    """``"< 1"`` → (less than, 1.0); read once per threshold, not once per series."""
    found = _THRESHOLD.match(text)
    if found is None:
        raise ValueError(f"expected a comparison and a number such as '< 1' or '> 0.05', got {text!r}")
    return _COMPARISONS[found.group(1)], float(found.group(2))


class Check(BaseModel):
    """One PromQL check of a checks file (see the module docstring and docs/prometheus.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    query: Annotated[str, Field(min_length=1, max_length=20_000)]
    fail_when: str
    """``OP NUMBER``: the asset fails when a series' value compares true (``"< 1"``, ``"> 0.05"``)."""
    signal: Literal["heartbeat_lost", "crashed", "reboot_loop", "service_check_failed"] = "service_check_failed"
    label: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")] = "instance"
    window: str = "5m"
    assets: str | None = None
    """A regular expression: the check applies only to asset ids it matches (``search``); default every asset."""

    @field_validator("fail_when")
    @classmethod
    def _threshold(cls, value: str) -> str:
        _threshold(value.strip())  # a ValueError says what a threshold looks like
        return value.strip()

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        seconds = parse_duration(value)  # a ValueError says what a duration looks like
        if seconds <= 0:
            raise ValueError(f"a window lasts some time, got {value!r}")
        return value

    @field_validator("assets")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return value

    def breaches(self, value: float) -> bool:
        compare, threshold = _threshold(self.fail_when)
        return compare(value, threshold)

    def applies_to(self, asset_id: str) -> bool:
        return self.assets is None or re.search(self.assets, asset_id) is not None

    def promql(self, assets: str | None) -> str:
        """The query as sent: ``{window}`` in PromQL's duration words, ``{asset}`` the alternation ``assets``."""
        text = self.query.replace("{window}", _promql_duration(parse_duration(self.window)))
        return text.replace("{asset}", assets) if assets is not None else text

    @property
    def per_asset(self) -> bool:
        return "{asset}" in self.query


class ChecksFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    checks: Annotated[tuple[Check, ...], Field(min_length=1)]

    @field_validator("checks")
    @classmethod
    def _names_once(cls, value: tuple[Check, ...]) -> tuple[Check, ...]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"each check needs a name of its own; {', '.join(twice)} named more than once")
        return value


DEFAULT_CHECKS = ChecksFile(
    checks=(
        Check(
            name="up",
            query='up{instance=~"{asset}(:[0-9]+)?"}',
            fail_when="< 1",
            signal="heartbeat_lost",
        ),
    )
)
"""Without a checks file: is the asset's exporter scraped (Prometheus's own ``up``)?"""


def read_checks(path: str | Path) -> ChecksFile:
    """The checks of the YAML file at ``path``; an InputError naming the file and the field when it is wrong."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError([Problem(f"cannot read the checks file: {exc.strerror or exc}", source=source)]) from None
    data: Any = load_document_text(text, source)  # YAML that does not parse: located, as every file's
    try:
        return ChecksFile.model_validate(data)
    except ValidationError as exc:
        # The estate's wording and its line numbers: "checks.yaml:4: checks[0].fail_when: …", one per mistake.
        raise InputError(locate_problems(problems_from_validation(exc, data, source), text)) from None


@dataclass(frozen=True)
class _Breach:
    check: Check
    value: float
    series: str


class PrometheusHealth:
    """The health source ``prometheus`` (see the module docstring)."""

    name = NAME
    options = OPTIONS

    def __init__(self, **options: str) -> None:
        read = OPTIONS.read(options)
        url = (read.text("url") or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InputError(
                [Problem(f"prometheus url={url!r}: expected an http:// or https:// address", path=("url",))]
            )
        self.url = url
        checks = read.text("checks")
        self.checks = read_checks(checks) if checks else DEFAULT_CHECKS
        self.timeout = read.seconds("timeout")
        self.batch = read.whole("batch")

    @classmethod
    def from_context(cls, options: Mapping[str, str], context: DriverContext) -> PrometheusHealth:
        """Built where no options are given (the server's loop, ``rollout start``): the environment fills in."""
        given = dict(options)
        for option, variable in _ENV.items():
            if option not in given and context.environ.get(variable, "").strip():
                given[option] = context.environ[variable].strip()
        return cls(**given)

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        asked = list(dict.fromkeys(asset_ids))
        if not asked:
            return {}
        lookup = _AssetLookup(asked)
        breaches: dict[str, _Breach] = {}
        answered: dict[str, set[str]] = {}  # asset → the checks that had a number for it
        # A client per reading, its connections kept alive across the reading's queries and closed after: the
        # server builds a source per rollout it drives and nothing would close a client kept for longer.
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            answers = [(check, list(self._answers(client, check, asked))) for check in self.checks.checks]
        for check, found in answers:
            for series, value in found:
                asset = lookup.find(series.get(check.label))
                if asset is None or not check.applies_to(asset) or math.isnan(value):
                    continue  # not an asked asset, or NaN: no number, no evidence either way
                answered.setdefault(asset, set()).add(check.name)
                if check.breaches(value) and asset not in breaches:
                    breaches[asset] = _Breach(check, value, _series_words(series))
        health: dict[str, AssetHealth] = {}
        for asset in asked:
            breach = breaches.get(asset)
            if breach is not None:
                detail = (
                    f"prometheus check '{breach.check.name}': {breach.series} = {_number(breach.value)}, "
                    f"failing when {breach.check.fail_when}"
                )
                health[asset] = AssetHealth(asset, AssetStatus.failed, FailureSignal(breach.check.signal), None, detail)
                continue
            expected = {c.name for c in self.checks.checks if c.applies_to(asset)}
            # Healthy only when every check that applies had a number for it: no data is never a pass.
            if expected and expected <= answered.get(asset, set()):
                health[asset] = AssetHealth(asset, AssetStatus.healthy)
        return health

    def _answers(
        self, client: httpx.Client, check: Check, asked: Sequence[str]
    ) -> Iterator[tuple[Mapping[str, str], float]]:
        assets = [a for a in asked if check.applies_to(a)]
        if not assets:
            return
        if not check.per_asset:
            yield from self._query(client, check, check.promql(None))
            return
        for start in range(0, len(assets), self.batch):
            chunk = assets[start : start + self.batch]
            yield from self._query(client, check, check.promql(_alternation(chunk)))

    def _query(self, client: httpx.Client, check: Check, promql: str) -> Iterator[tuple[Mapping[str, str], float]]:
        where = f"Prometheus at {self.url}"
        try:
            response = client.post("/api/v1/query", data={"query": promql})
        except httpx.TimeoutException:
            raise DriverError(
                f"{where} did not answer check '{check.name}' within {format_duration(self.timeout)}"
            ) from None
        except httpx.HTTPError as exc:
            raise DriverError(f"{where} could not be asked check '{check.name}': {exc}") from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            said = body.get("error") if isinstance(body, dict) else None
            raise DriverError(
                f"{where} answered check '{check.name}' with HTTP {response.status_code}"
                + (f": {said}" if said else "")
            )
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            raise DriverError(
                f"check '{check.name}' answers a {data.get('resultType')}, not series: write it to return one "
                f"series per asset, labelled with {check.label}"
            )
        for item in data.get("result") or ():
            labels, sample = item.get("metric") or {}, item.get("value")
            try:
                value = float(sample[1])
            except (IndexError, KeyError, TypeError, ValueError):
                continue
            yield labels, value


class _AssetLookup:
    """Which asked asset a label value names: the value, the value before a ``:port``, or its first name."""

    def __init__(self, asked: Sequence[str]) -> None:
        self._asked = frozenset(asked)

    def find(self, value: str | None) -> str | None:
        if not value:
            return None
        host = value.rsplit(":", 1)[0] if value.rsplit(":", 1)[-1].isdigit() else value
        for candidate in (value, host, host.split(".", 1)[0]):
            if candidate in self._asked:
                return candidate
        return None


def _alternation(assets: Sequence[str]) -> str:
    """``(?:ws-1|ws-2)``, for a ``=~`` matcher. Ids are ``[a-z0-9._-]``: only the dot means something to a regex,
    and ``[.]`` says it without a backslash, which PromQL's string would need doubled."""
    return "(?:" + "|".join(a.replace(".", "[.]") for a in assets) + ")"


def _promql_duration(seconds: float) -> str:
    whole = max(1, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _series_words(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def _number(value: float) -> str:
    return f"{value:.4g}"


__all__ = [
    "BATCH_ENV",
    "CHECKS_ENV",
    "DEFAULT_CHECKS",
    "NAME",
    "OPTIONS",
    "TIMEOUT_ENV",
    "URL_ENV",
    "Check",
    "ChecksFile",
    "PrometheusHealth",
    "read_checks",
]
