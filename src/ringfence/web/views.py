"""What each dashboard page shows, built from the service layer: frozen view models, no HTML.

The route handlers call these; the templates only lay the models out. Every number and sentence here comes
from the same use cases the JSON API and the CLI call (rollout status and log, the audit chain, the impact
analyses, the drill runner), so the dashboard can never tell a different story from ``ringfence rollout
status``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from markupsafe import Markup
from sqlalchemy.engine import Engine

from ringfence.api.routes.drills import bundled_scenario_text, bundled_scenarios
from ringfence.core.audit import AuditEntry, ChainReport
from ringfence.core.drills import DrillReport, run_drill_text
from ringfence.core.durations import humanize_duration
from ringfence.core.estate import TIER_NAMES, Estate
from ringfence.core.gates import AssetHealth, AssetStatus, RingVerdict, format_stratum
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import (
    TIERS,
    ServiceDown,
    SinglePointOfFailure,
    SupplierConcentration,
    advice_for,
    find_single_points_of_failure,
    supplier_concentration,
)
from ringfence.core.incident import Incident, rto_clocks, waiting_for
from ringfence.core.rollout.reconcile import SINCE_INSTALL, RolloutView, judge
from ringfence.core.rollout.state import AssetState, RolloutPhase
from ringfence.files.report import DrillView, drill_view
from ringfence.service import estates as estates_service
from ringfence.service import incidents as incident_service
from ringfence.service import rollouts as rollout_service
from ringfence.service.estates import CompiledEstates, LoadedEstate
from ringfence.service.tokens import Caller, Role
from ringfence.store import repo
from ringfence.store.db import session_scope
from ringfence.store.records import ObservationKind, Rollout
from ringfence.web.charts import concentration_svg, harm_order, tier_counts
from ringfence.web.security import may

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

AUDIT_PAGE = 100
"""Audit entries per page, newest first."""


def when(at: datetime) -> str:
    """A timestamp as people on a ward read it: ``2024-07-19 04:09:12 UTC``."""
    return at.strftime("%Y-%m-%d %H:%M:%S ") + (at.tzname() or "UTC")


@dataclass(frozen=True)
class Tier:
    """An impact tier as shown: ``T1`` and its name, never its colour alone."""

    number: int
    name: str

    @property
    def chip(self) -> str:
        return f"T{self.number}"


def tier(number: int) -> Tier:
    return Tier(number, TIER_NAMES.get(number, f"tier {number}"))


# ------------------------------------------------------------------------------------------ the estate


@dataclass(frozen=True)
class EstateChoice:
    name: str
    version: int
    created_at: str
    created_by: str


@dataclass(frozen=True)
class ServiceRow:
    id: str
    name: str
    rto: str
    rpo: str
    continuity: str
    spofs: int
    """How many single points of failure take this service down."""


@dataclass(frozen=True)
class TierSection:
    tier: Tier
    services: tuple[ServiceRow, ...]


@dataclass(frozen=True)
class SpofRow:
    ref: str
    form: str
    """asset, supplier, software or site."""
    name: str
    worst: Tier
    services: tuple[tuple[Tier, tuple[str, ...]], ...]
    """The services it takes down, grouped by tier, worst tier first."""
    advice: str


@dataclass(frozen=True)
class SupplierRow:
    id: str
    name: str
    counts: tuple[tuple[Tier, int], ...]
    total: int
    services: tuple[str, ...]


@dataclass(frozen=True)
class EstateOverview:
    name: str
    version: int
    uploaded: str
    uploaded_by: str
    assets: int
    services: int
    sites: tuple[str, ...]
    tiers: tuple[TierSection, ...]
    spofs: tuple[SpofRow, ...]
    concentration_chart: Markup
    suppliers: tuple[SupplierRow, ...]
    warnings: tuple[str, ...]


class Recent(Generic[K, V]):
    """The last few results of a pure computation, by key. Thread-safe (handlers run on a thread pool);
    two threads asking for one key at once may both compute it, and the answer is the same."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._found: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]
        value = compute()
        with self._lock:
            self._found[key] = value
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return value


@dataclass(frozen=True)
class Analyses:
    """What the overview shows of one estate version (versions never change, so neither do these)."""

    spofs: tuple[SinglePointOfFailure, ...]
    concentration: tuple[SupplierConcentration, ...]


# Keyed by the estate text's SHA-256: the analyses are a function of the text alone, whichever database
# (or version number) it came from.
_ANALYSES: Recent[str, Analyses] = Recent(4)


def estate_choices(engine: Engine) -> list[EstateChoice]:
    """Each stored estate's newest version, most recently uploaded first."""
    found = sorted(estates_service.list_estates(engine), key=lambda e: e.latest.id, reverse=True)
    return [EstateChoice(e.name, e.latest.id, when(e.latest.created_at), e.latest.created_by) for e in found]


def current_estate(engine: Engine, cache: CompiledEstates, name: str | None) -> LoadedEstate | None:
    """Estate ``name`` (default: the most recently uploaded one) at its newest version, compiled."""
    if name is None:
        choices = estate_choices(engine)
        if not choices:
            return None
        name = choices[0].name
    return cache.get(engine, name)


def estate_overview(loaded: LoadedEstate) -> EstateOverview:
    estate, graph, version = loaded.estate, loaded.graph, loaded.version
    analysed = _ANALYSES.get(
        version.sha256,
        lambda: Analyses(tuple(find_single_points_of_failure(graph)), tuple(supplier_concentration(graph))),
    )
    exposure: dict[str, int] = {}
    for spof in analysed.spofs:
        for service in spof.services:
            exposure[service.id] = exposure.get(service.id, 0) + 1
    sections = []
    for number in TIERS:
        rows = tuple(
            ServiceRow(
                id=s.id,
                name=s.label,
                rto=humanize_duration(s.rto) if s.rto is not None else "not set",
                rpo=humanize_duration(s.rpo) if s.rpo is not None else "not set",
                continuity=s.continuity or "",
                spofs=exposure.get(s.id, 0),
            )
            for s in sorted(estate.services, key=lambda s: s.id)
            if s.tier == number
        )
        if rows:
            sections.append(TierSection(tier(number), rows))
    spofs = tuple(_spof_row(graph, spof) for spof in analysed.spofs)
    suppliers = tuple(
        SupplierRow(
            id=s.id,
            name=_supplier_name(estate, s.id),
            counts=tuple((tier(t), n) for t, n in tier_counts(s).items() if n),
            total=len(s.services_down),
            services=tuple(d.id for d in s.services_down),
        )
        for s in harm_order(analysed.concentration)
    )
    return EstateOverview(
        name=estate.name,
        version=version.id,
        uploaded=when(version.created_at),
        uploaded_by=version.created_by,
        assets=len(estate.assets),
        services=len(estate.services),
        sites=estate.sites,
        tiers=tuple(sections),
        spofs=spofs,
        concentration_chart=concentration_svg(analysed.concentration),
        suppliers=suppliers,
        warnings=tuple(str(w) for w in loaded.checked.warnings),
    )


def _spof_row(graph: EstateGraph, spof: SinglePointOfFailure) -> SpofRow:
    form, _, name = spof.ref.partition(":")
    return SpofRow(
        ref=spof.ref,
        form=form,
        name=name,
        worst=tier(spof.worst_tier),
        services=tuple(
            (tier(t), tuple(sorted(s.id for s in spof.services if s.tier == t)))
            for t in sorted({s.tier for s in spof.services})
        ),
        advice=advice_for(graph, spof),
    )


def _supplier_name(estate: Estate, supplier_id: str) -> str:
    supplier = estate.supplier_by_id.get(supplier_id)
    return supplier.label if supplier is not None else supplier_id


# ------------------------------------------------------------------------------------------ rollouts


@dataclass(frozen=True)
class RolloutRow:
    id: str
    update: str
    phase: str
    ring: int
    rings: int
    created_by: str
    approved_by: str
    created_at: str
    updated_at: str
    halt_reason: str


def rollout_rows(engine: Engine) -> list[RolloutRow]:
    """Every rollout, newest first."""
    with session_scope(engine, readonly=True) as session:
        found = repo.list_rollouts(session)
    return [_rollout_row(r) for r in reversed(found)]


def _rollout_row(r: Rollout) -> RolloutRow:
    plan = r.plan if isinstance(r.plan, dict) else {}
    rings = plan.get("rings")
    return RolloutRow(
        id=r.id,
        update=r.update_id,
        phase=r.state.phase.value,
        ring=r.state.ring,
        rings=len(rings) if isinstance(rings, list) else 0,
        created_by=r.created_by,
        approved_by=r.approved_by or ("awaiting approval" if r.needs_approval else "not needed"),
        created_at=when(r.created_at),
        updated_at=when(r.state.updated_at),
        halt_reason=r.state.halt_reason or "",
    )


@dataclass(frozen=True)
class RingRow:
    index: int
    name: str
    """``canary``, ``canary wave 2`` …, then ``ring N``: what the plan made of the ring."""
    assets: int
    updated: int
    """Targets the update reached: installed (healthy or not), being rolled back, or rolled back."""
    states: tuple[tuple[str, int], ...]
    strata: tuple[str, ...]
    is_current: bool


@dataclass(frozen=True)
class StratumRow:
    stratum: str
    targets: int
    updated: int
    healthy: int
    failed: int
    unknown: int
    outcome: str
    """The gate's outcome on the current ring for this stratum ('' when it has nothing to judge)."""
    sentence: str


@dataclass(frozen=True)
class Verdict:
    """A phase change and the sentence that explains it (the gate's verdict, or who did what and why)."""

    at: str
    actor: str
    from_phase: str
    to_phase: str
    ring: str
    reason: str


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    confirm: str
    """The question asked before acting ('' for none)."""
    is_danger: bool


@dataclass(frozen=True)
class FailedAsset:
    """An asset the rollout broke, what failed, and where it stands now."""

    id: str
    ring: str
    stratum: str
    what: str
    """What failed, in words: ``install failed: …``, ``crashed 20 min after install``."""
    state: str
    """Its state in the rollout now (``rolled_back``, ``rollback_failed``, ``applied`` …)."""
    state_detail: str
    """What its rollback said, once it has one."""


@dataclass(frozen=True)
class IncidentLink:
    """The incident the rollout's halt declared."""

    id: str
    status: str
    title: str


@dataclass(frozen=True)
class RolloutPage:
    id: str
    update: str
    product: str
    version: str
    strategy: str
    phase: str
    is_terminal: bool
    ring: int
    ring_name: str
    ring_count: int
    paused_from: str
    halt_reason: str
    created_by: str
    created_at: str
    approved_by: str
    needs_approval: bool
    updated_at: str
    rings: tuple[RingRow, ...]
    strata: tuple[StratumRow, ...]
    gate_sentence: str
    verdicts: tuple[Verdict, ...]
    actions: tuple[Action, ...]
    approval_note: str
    """Why an approver sees no approve button (they created the rollout), or ''."""
    warnings: tuple[str, ...]
    failed_assets: tuple[FailedAsset, ...]
    incident: IncidentLink | None


_INSTALLED = SINCE_INSTALL
_REACHED = _INSTALLED | {AssetState.ROLLED_BACK}


def rollout_page(engine: Engine, rollout_id: str, caller: Caller) -> RolloutPage:
    found = rollout_service.status(engine, rollout_id)
    entries = rollout_service.log(engine, rollout_id)
    view = _view(engine, rollout_id)
    r = found.rollout
    plan = r.plan if isinstance(r.plan, dict) else {}
    state = r.state
    update = view.update
    counts_by_ring: dict[int, int] = {}
    for a in found.assets:
        if a.state in _REACHED:
            counts_by_ring[a.ring] = counts_by_ring.get(a.ring, 0) + 1
    names = ring_names(plan, len(found.rings))
    incident = incident_service.of_rollout(engine, rollout_id)
    rings = tuple(
        RingRow(
            index=ring.index,
            name=names[ring.index],
            assets=ring.assets,
            updated=counts_by_ring.get(ring.index, 0),
            states=tuple(sorted(ring.states.items(), key=lambda item: _STATE_ORDER.get(item[0], 99))),
            strata=ring.strata,
            is_current=ring.index == state.ring and (state.phase.is_running or state.phase is RolloutPhase.PAUSED),
        )
        for ring in found.rings
    )
    verdict = _live_verdict(view)
    strata = _strata(view, verdict)
    warnings = plan.get("warnings")
    return RolloutPage(
        id=r.id,
        update=r.update_id,
        product=update.product,
        version=update.version,
        strategy=found.strategy,
        phase=state.phase.value,
        is_terminal=state.phase.is_terminal,
        ring=state.ring,
        ring_name=names[state.ring] if state.ring < len(names) else f"ring {state.ring}",
        ring_count=len(found.rings),
        paused_from=state.paused_from.value if state.paused_from else "",
        halt_reason=state.halt_reason or "",
        created_by=r.created_by,
        created_at=when(r.created_at),
        approved_by=r.approved_by or "",
        needs_approval=r.needs_approval,
        updated_at=when(state.updated_at),
        rings=rings,
        strata=strata,
        gate_sentence=verdict.sentence if verdict is not None else "",
        verdicts=tuple(_verdicts(entries)),
        actions=tuple(_actions(r, update.rollback, caller)),
        approval_note=_approval_note(r, caller),
        warnings=tuple(str(w) for w in warnings) if isinstance(warnings, list) else (),
        failed_assets=_failed_assets(engine, r, view, names, incident),
        incident=IncidentLink(incident.id, incident.status.value, incident.title) if incident is not None else None,
    )


_STATE_ORDER = {s.value: i for i, s in enumerate(AssetState)}


def ring_names(plan: Mapping[str, object], count: int) -> list[str]:
    """Each ring as the planner names it: ``canary``, ``canary wave 2`` …, then ``ring N``.

    Read defensively, from what the stored plan says of its canary phase: ``canary_rings`` (how many leading
    rings are canaries), or ``canary: true`` on each such ring. A plan that says neither (stored before
    canary waves) names each ring by its number rather than guess.
    """
    stored = plan.get("canary_rings")
    rings = plan.get("rings")
    if isinstance(stored, int) and not isinstance(stored, bool):
        canaries = stored
    elif isinstance(rings, list):
        # The canary phase is the leading rings only.
        canaries = next(
            (i for i, ring in enumerate(rings) if not (isinstance(ring, Mapping) and ring.get("canary") is True)),
            len(rings),
        )
    else:
        canaries = 0
    return [
        "canary" if i == 0 and canaries > 0 else f"canary wave {i + 1}" if i < canaries else f"ring {i}"
        for i in range(count)
    ]


def _failed_assets(
    engine: Engine, r: Rollout, view: RolloutView, names: Sequence[str], incident: Incident | None
) -> tuple[FailedAsset, ...]:
    """The assets the rollout broke — its install failed, its health failed since the install, or its rollback
    failed — each with what failed and where it stands now. Read from what was observed during the rollout,
    so an asset is still named, with its failure, once it has been rolled back and reports healthy again."""
    seen = _failures_seen(engine, r)
    recorded = {ref.removeprefix("asset:") for ref in incident.failed} if incident is not None else set()
    rows = []
    for a in sorted(view.assets, key=lambda a: (a.ring, a.asset_id)):
        what = seen.get(a.asset_id, "")
        if not what and incident is not None and a.asset_id in recorded:
            what = f"failed when the rollout halted (incident {incident.id})"
        if not what and a.state is AssetState.ROLLBACK_FAILED:
            what = "its rollback failed"
        if not what:
            continue
        has_rollback = a.state in (AssetState.ROLLING_BACK, AssetState.ROLLED_BACK, AssetState.ROLLBACK_FAILED)
        rows.append(
            FailedAsset(
                id=a.asset_id,
                ring=names[a.ring] if a.ring < len(names) else f"ring {a.ring}",
                stratum=format_stratum(a.stratum),
                what=what,
                state=a.state.value,
                state_detail=(a.detail or "") if has_rollback else "",
            )
        )
    return tuple(rows)


def _failures_seen(engine: Engine, r: Rollout) -> dict[str, str]:
    """What failed on each asset during rollout ``r``: its failed install and its last failed health reading,
    in words (``install failed: …``, ``crashed 20 min after install``)."""
    with session_scope(engine, readonly=True) as session:
        found = repo.list_observations(
            session,
            since=r.created_at,
            rollout_id=r.id,
            kinds=[ObservationKind.INSTALL_RESULT, ObservationKind.HEALTH_CHECK],
        )
    install: dict[str, str] = {}
    health: dict[str, str] = {}
    for obs in found:
        if obs.status != AssetStatus.failed.value:  # "failed" for an operation's result and for a reading alike
            continue
        note = obs.detail.get("detail")
        said = f": {note}" if note else ""
        if obs.kind is ObservationKind.INSTALL_RESULT:
            install[obs.asset_id] = f"install failed{said}"
            continue
        signal = obs.detail.get("signal")
        after = obs.detail.get("seconds_after_install")
        when = f" {humanize_duration(float(after))} after install" if isinstance(after, int | float) else ""
        health[obs.asset_id] = f"{str(signal).replace('_', ' ') if signal else 'failed'}{when}{said}"
    return {a: "; ".join(w for w in (install.get(a), health.get(a)) if w) for a in install.keys() | health.keys()}


def _view(engine: Engine, rollout_id: str) -> RolloutView:
    # A read-only transaction: the page must never wait for (or hold up) the controller's lock.
    with session_scope(engine, readonly=True) as session:
        return rollout_service.SqlRolloutSession(session, rollout_id).view()


def _live_verdict(view: RolloutView) -> RingVerdict | None:
    """What the gate would say about the current ring now, once something in it is installed.

    Only while the rollout runs or is paused: once it has halted, the assets it never reached are skipped
    and no longer a control group, so judging again would contradict the verdict that halted it (which
    the page shows as the halt reason).
    """
    phase = view.state.phase
    if not (phase.is_running or phase is RolloutPhase.PAUSED):
        return None
    if not any(a.state in _INSTALLED for a in view.ring(view.state.ring)):
        return None
    return judge(view)


def _strata(view: RolloutView, verdict: RingVerdict | None) -> tuple[StratumRow, ...]:
    by_stratum = {format_stratum(v.stratum): v for v in verdict.strata} if verdict is not None else {}
    groups: dict[str, list[str]] = {}
    states: dict[str, AssetState] = {}
    for a in view.assets:
        groups.setdefault(format_stratum(a.stratum), []).append(a.asset_id)
        states[a.asset_id] = a.state
    rows = []
    for name in sorted(groups):
        members = groups[name]
        installed = [m for m in members if states[m] in _INSTALLED]
        health = [view.health.get(m) for m in installed]
        healthy = sum(1 for h in health if h is not None and h.status is AssetStatus.healthy)
        failed = sum(1 for m, h in zip(installed, health, strict=True) if _is_failed(states[m], h))
        judged = by_stratum.get(name)
        rows.append(
            StratumRow(
                stratum=name,
                targets=len(members),
                updated=len(installed),
                healthy=healthy,
                failed=failed,
                unknown=len(installed) - healthy - failed,
                outcome=judged.outcome.value if judged is not None else "",
                sentence=judged.sentence if judged is not None else "",
            )
        )
    return tuple(rows)


def _is_failed(state: AssetState, health: AssetHealth | None) -> bool:
    return state in (AssetState.FAILED, AssetState.ROLLBACK_FAILED) or (
        health is not None and health.status is AssetStatus.failed
    )


def _verdicts(entries: Sequence[AuditEntry]) -> list[Verdict]:
    """The rollout's phase changes with their sentences, newest first."""
    out = []
    for e in entries:
        if e.action != "rollout.transition":
            continue
        detail = e.detail
        ring = detail.get("ring")
        out.append(
            Verdict(
                at=when(e.at),
                actor=e.actor,
                from_phase=str(detail.get("from", "")),
                to_phase=str(detail.get("to", "")),
                ring="" if ring is None else str(ring),
                reason=str(detail.get("reason", "")),
            )
        )
    return list(reversed(out))


def _actions(r: Rollout, rollback: str, caller: Caller) -> list[Action]:
    """The buttons this caller may press now. The service layer checks again; this only hides the rest."""
    phase = r.state.phase
    found: list[Action] = []
    if phase is RolloutPhase.AWAITING_APPROVAL and may(caller, Role.APPROVER) and caller.name != r.created_by:
        found.append(Action("approve", "Approve", f"Approve rollout {r.id} as {caller.name}?", False))
    if not may(caller, Role.OPERATOR):
        return found
    if phase is RolloutPhase.PENDING:
        found.append(Action("start", "Start", f"Start rollout {r.id}?", False))
    if phase.is_running:
        found.append(Action("pause", "Pause", "", False))
    if phase is RolloutPhase.PAUSED:
        found.append(Action("resume", "Resume", f"Resume rollout {r.id}?", False))
    if phase.is_running or phase is RolloutPhase.PAUSED:
        found.append(Action("abort", "Abort", f"Abort rollout {r.id}? It halts at once.", True))
    if phase is RolloutPhase.HALTED and rollback != "none":
        found.append(Action("rollback", "Roll back", f"Roll back every updated asset of {r.id}?", True))
    return found


def _approval_note(r: Rollout, caller: Caller) -> str:
    if r.state.phase is not RolloutPhase.AWAITING_APPROVAL:
        return ""
    if caller.name == r.created_by:
        return f"You created {r.id}, so someone else with the approver role must approve it."
    if not may(caller, Role.APPROVER):
        return f"{r.id} is waiting for a person with the approver role who did not create it."
    return ""


# ------------------------------------------------------------------------------------------ drills


def scenario_ids() -> tuple[str, ...]:
    """The bundled drill scenarios (the same ones ``/v1/drills/scenarios`` lists), by id."""
    return tuple(scenario.scenario for _, _, scenario in bundled_scenarios())


@dataclass(frozen=True)
class DrillPage:
    estate: str
    estate_version: int
    view: DrillView
    tiers: tuple[Tier, ...]


_DRILLS: Recent[tuple[str, str], DrillReport] = Recent(8)


def drill_page(loaded: LoadedEstate, scenario_id: str) -> DrillPage:
    """Replay bundled scenario ``scenario_id`` on the estate, laid out with the drill report's own pieces.

    A scenario whose fault reaches none of this estate's targets is refused with the API's sentence."""
    text, source = bundled_scenario_text(scenario_id)
    # A drill is a simulation with a fixed seed: one estate version and one scenario always give one report.
    report = _DRILLS.get((loaded.version.sha256, scenario_id), lambda: run_drill_text(loaded.graph, text, source))
    return DrillPage(loaded.version.name, loaded.version.id, drill_view(0, report), tuple(tier(t) for t in TIERS))


# ------------------------------------------------------------------------------------------ audit log


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    detail: str
    hash: str


@dataclass(frozen=True)
class AuditPage:
    chain: ChainReport
    rows: tuple[AuditRow, ...]
    page: int
    pages: int
    subject: str


def audit_page(engine: Engine, *, page: int, subject: str | None) -> AuditPage:
    """One page of the audit log, newest first, and whether the whole chain still verifies."""
    with session_scope(engine, readonly=True) as session:
        chain = repo.verify_audit(session)
        if subject:
            entries = repo.list_audit(session, subject=subject)
            total = len(entries)
            high = total - AUDIT_PAGE * (page - 1)
            shown = entries[max(0, high - AUDIT_PAGE) : max(0, high)]
        else:
            # Entries are numbered 1, 2, 3… while the chain holds; past a break, read on to the real last one.
            newest = chain.count
            if not chain.ok:
                tail = repo.list_audit(session, after_seq=chain.count)
                newest = tail[-1].seq if tail else chain.count
            total = newest
            high = newest - AUDIT_PAGE * (page - 1)
            low = max(0, high - AUDIT_PAGE)
            shown = repo.list_audit(session, after_seq=low, limit=max(0, high - low))
    rows = tuple(
        AuditRow(
            seq=e.seq,
            at=when(e.at),
            actor=e.actor,
            action=e.action,
            subject=e.subject,
            detail=json.dumps(dict(e.detail), sort_keys=True, ensure_ascii=False),
            hash=e.hash,
        )
        for e in reversed(shown)
    )
    pages = max(1, -(-total // AUDIT_PAGE))
    return AuditPage(chain, rows, page, pages, subject or "")


# ------------------------------------------------------------------------------------------ incidents

# Worst first: the order in which a list of incidents draws the eye to an RTO.
_CLOCK_SEVERITY = ("breached", "at_risk", "missed", "on_track", "met", "no_rto")
SHOWN_PER_STEP = 40
"""Items listed per restore step (each with its button); the rest are counted. Large incidents stay readable."""


@dataclass(frozen=True)
class IncidentRow:
    id: str
    title: str
    status: str
    declared_at: str
    declared_by: str
    cause: str
    """What failed, and the rollout that caused it, if any."""
    services_down: int
    items_down: int
    items_restored: int
    worst_tier: Tier | None
    rto_status: str
    """The worst RTO status among its services ('' when none has an RTO)."""
    rto_services: tuple[str, ...]
    """The services in that status."""


def incident_rows(engine: Engine, now: datetime) -> list[IncidentRow]:
    """Every incident: open ones first, then closed; newest first within each."""
    found = incident_service.list_incidents(engine)
    rows = []
    for incident in found:
        summary = incident_service.incident_summary(incident, now)
        clocks = [(c.service, c.status.value) for c in rto_clocks(incident, now) if c.rto is not None]
        worst = min((status for _, status in clocks), key=_CLOCK_SEVERITY.index, default="")
        cause = ", ".join(incident.failed) + (f" (rollout {summary.rollout})" if summary.rollout else "")
        rows.append(
            IncidentRow(
                id=summary.id,
                title=summary.title,
                status=summary.status,
                declared_at=when(summary.declared_at),
                declared_by=incident.declared_by,
                cause=cause,
                services_down=summary.services_down,
                items_down=summary.items_down,
                items_restored=summary.items_restored,
                worst_tier=tier(summary.worst_tier) if summary.worst_tier is not None else None,
                rto_status=worst,
                rto_services=tuple(service for service, status in clocks if status == worst),
            )
        )
    rows.sort(key=lambda r: r.id, reverse=True)
    rows.sort(key=lambda r: r.status != "open")  # stable: open first, newest first within each
    return rows


@dataclass(frozen=True)
class DownService:
    id: str
    name: str
    is_restored: bool


@dataclass(frozen=True)
class TierDown:
    tier: Tier
    services: tuple[DownService, ...]


@dataclass(frozen=True)
class ContinuityRow:
    service: str
    name: str
    tier: Tier
    rto: str
    plan: str
    contacts: tuple[str, ...]
    is_restored: bool


@dataclass(frozen=True)
class StepItem:
    id: str
    name: str
    is_service: bool
    restored_at: str
    """'' while still down."""
    waiting_for: tuple[str, ...]
    """Why it cannot be marked restored yet; empty when it can (or is restored)."""
    together: tuple[str, ...] = ()
    """Items of its step it needs and that need it: they can only be marked restored together (with it)."""


@dataclass(frozen=True)
class StepRow:
    step: int
    items: tuple[StepItem, ...]
    more: int
    """Items of this step not listed."""
    restored: int
    total: int


@dataclass(frozen=True)
class ClockRow:
    service: str
    name: str
    tier: Tier
    rto: str
    status: str
    deadline: str
    countdown: str
    """``2h 59m left · about 3h to restore``, ``breached 30 min ago``, ``met: back after 2h``…"""
    warning: str


@dataclass(frozen=True)
class EventRow:
    at: str
    kind: str
    actor: str
    text: str


@dataclass(frozen=True)
class IncidentPage:
    id: str
    title: str
    status: str
    is_open: bool
    estate: str
    estate_version: int | None
    failed: tuple[str, ...]
    rollout: str
    declared_at: str
    declared_by: str
    closed_at: str
    as_of: str
    step_time: str
    items_down: int
    items_restored: int
    tiers: tuple[TierDown, ...]
    assets_down: int
    continuity: tuple[ContinuityRow, ...]
    steps: tuple[StepRow, ...]
    clocks: tuple[ClockRow, ...]
    warnings: tuple[str, ...]
    timeline: tuple[EventRow, ...]
    ready: tuple[str, ...]
    """Items still down that wait for nothing: what can be marked restored now."""
    may_write: bool
    """The caller may mark restored and close (an operator, while the incident is open)."""


def incident_page(engine: Engine, incident_id: str, caller: Caller, now: datetime) -> IncidentPage:
    """An incident as the API's document tells it (``GET /v1/incidents/ID``), laid out for the page."""
    incident = incident_service.get(engine, incident_id)
    doc = incident_service.incident_document(incident, now)
    restored = {i.id for i in doc.items if i.restored_at is not None}
    names = {i.id: i.name for i in doc.items}
    tiers = []
    for number in TIERS:
        services = tuple(
            DownService(s.id, names[s.id], s.id in restored) for s in doc.impact.services_down if s.tier == number
        )
        if services:
            tiers.append(TierDown(tier(number), services))
    by_id = {i.id: i for i in doc.items}
    steps = []
    for step in doc.steps:
        shown = step.restore[:SHOWN_PER_STEP]
        steps.append(
            StepRow(
                step=step.step,
                items=tuple(
                    StepItem(
                        id=item_id,
                        name=by_id[item_id].name,
                        is_service=by_id[item_id].tier is not None,
                        restored_at=when(at) if (at := by_id[item_id].restored_at) is not None else "",
                        waiting_for=tuple(by_id[item_id].waiting_for),
                        together=_restored_together(incident, item_id) if by_id[item_id].waiting_for else (),
                    )
                    for item_id in shown
                ),
                more=len(step.restore) - len(shown),
                restored=len(step.restored),
                total=len(step.restore),
            )
        )
    is_open = doc.status == "open"
    return IncidentPage(
        id=doc.id,
        title=doc.title,
        status=doc.status,
        is_open=is_open,
        estate=doc.estate,
        estate_version=doc.estate_version,
        failed=tuple(doc.failed),
        rollout=doc.rollout or "",
        declared_at=when(doc.declared_at),
        declared_by=doc.declared_by,
        closed_at=when(doc.closed_at) if doc.closed_at is not None else "",
        as_of=when(doc.as_of),
        step_time=humanize_duration(doc.step_seconds),
        items_down=len(doc.items),
        items_restored=len(restored),
        tiers=tuple(tiers),
        assets_down=len(doc.impact.assets_down),
        continuity=tuple(
            ContinuityRow(
                service=c.service,
                name=c.name,
                tier=tier(c.tier),
                rto=humanize_duration(c.rto) if c.rto is not None else "not set",
                plan=c.plan or "",
                contacts=tuple(c.contacts),
                is_restored=c.service in restored,
            )
            for c in doc.continuity
        ),
        steps=tuple(steps),
        clocks=tuple(
            ClockRow(
                service=c.service,
                name=c.name,
                tier=tier(c.tier),
                rto=humanize_duration(c.rto) if c.rto is not None else "none",
                status=c.status,
                deadline=when(c.deadline) if c.deadline is not None else "",
                countdown=_countdown(c.status, c.remaining, c.estimated, c.time_to_restore),
                warning=c.warning or "",
            )
            for c in doc.clocks
        ),
        warnings=tuple(doc.warnings),
        timeline=tuple(EventRow(when(e.at), e.kind, e.actor, e.text) for e in doc.timeline),
        ready=tuple(i.id for i in doc.items if i.restored_at is None and not i.waiting_for),
        may_write=is_open and may(caller, Role.OPERATOR),
    )


def _restored_together(incident: Incident, item_id: str) -> tuple[str, ...]:
    """The items still down of ``item_id``'s step that it waits for, directly or through each other, when
    marking them all at once would be accepted (items that need each other); () otherwise."""
    items = incident.item_by_id
    step = items[item_id].step
    still_down = {i.id for i in incident.still_down}
    found, todo = {item_id}, [item_id]
    while todo:
        item = items[todo.pop()]
        for other in (*item.needs, *(m for g in item.groups for m in g.members)):
            if other in still_down and other not in found and items[other].step == step:
                found.add(other)
                todo.append(other)
    if len(found) == 1 or any(waiting_for(incident, other, also_restored=found) for other in found):
        return ()
    return tuple(sorted(found))


def _countdown(status: str, remaining: int | None, estimated: int | None, took: int | None) -> str:
    if status in ("met", "missed"):
        return f"{status}: back after {humanize_duration(took or 0)}"
    if status == "breached":
        return f"breached {humanize_duration(-(remaining or 0))} ago"
    to_restore = f"about {humanize_duration(estimated or 0)} to restore"
    if status == "no_rto":
        return f"no RTO · {to_restore}"
    return f"{humanize_duration(remaining or 0)} left · {to_restore}"


__all__ = [
    "Action",
    "AuditPage",
    "DrillPage",
    "EstateChoice",
    "EstateOverview",
    "IncidentPage",
    "IncidentRow",
    "RolloutPage",
    "RolloutRow",
    "ServiceDown",
    "Tier",
    "audit_page",
    "current_estate",
    "drill_page",
    "estate_choices",
    "estate_overview",
    "incident_page",
    "incident_rows",
    "rollout_page",
    "rollout_rows",
    "scenario_ids",
    "tier",
    "when",
]
