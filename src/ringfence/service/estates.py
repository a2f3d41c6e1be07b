"""Estate use cases: check an uploaded estate, keep it as a new version, list and read versions back, and keep
the estate of record.

Versions are kept, so a bad upload never replaces the last good estate: the text is checked completely
(parsed, every reference resolved, the graph compiled) before anything is written, and a text that fails
stores nothing. The same text uploaded again is the version already stored (versions are deduplicated by
SHA-256): it does not become current again, so to work on an older estate name its version (``?version=`` in
the API).

The estate of record
    Each estate name is its own scope of record, with one *current* version; each asset id is held by at most
    one estate of record. Rollouts are planned, and the two-person rule judged, on the current version only,
    and agents are told to act only for rollouts on the current version that holds their asset. So a version
    that would weaken the rule cannot become current on one person's word: a new version is *accepted* (current
    at once) only when, against the current version, it lowers no service's tier, removes no service and
    removes or loosens no requirement (of a service or an asset), and claims no asset another estate of record
    holds (a move, also when a new estate takes another's assets). Otherwise it is *proposed*: stored, not
    current, until a second person (:func:`~ringfence.service.people.refuse_same_person`) approves it, with the
    :class:`EstateDiff` shown. A requirement is kept when the new version has one at least as strict: the same
    id; ``any K' of S'`` with S' ⊆ S and K' ≥ K; the same ``where`` selector with K' ≥ K; a hard id for an
    ``any 1 of`` that lists it. Changes to assets' attributes that change what a ``where`` selector matches are
    not judged (documented in docs/rollouts.md).

:class:`CompiledEstates` keeps the compiled graphs of the last few versions in memory: a version never
changes once stored, so a compiled graph stays right for as long as the process lives.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.errors import ConflictError, EstateError, NotFoundError, Problem
from ringfence.core.estate import AnyGroup, Estate, Node, Requirement, locate_problems, parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.files.disk import read_text, sample_estate_path
from ringfence.service.people import Actor, refuse_same_person
from ringfence.store.audit import append_audit
from ringfence.store.db import LOCK_NAMESPACE_AUDIT, advisory_lock, session_scope
from ringfence.store.estates import (
    ACCEPTED,
    PROPOSED,
    REJECTED,
    add_estate_version,
    asset_holders,
    current_estate_version,
    decide_estate_version,
    get_estate_version,
    hold_assets,
    latest_estate_version,
    list_estate_versions,
)
from ringfence.store.records import EstateFormat, EstateVersion

SAMPLE_ACTOR = "ringfence (sample estate)"
"""Who the audit log says loaded the bundled sample estate."""


@dataclass(frozen=True)
class CheckedEstate:
    """An estate text that holds: the estate, its compiled graph, its warnings (with lines) and its format."""

    estate: Estate
    graph: EstateGraph
    warnings: tuple[Problem, ...]
    format: EstateFormat


@dataclass(frozen=True)
class TierChange:
    """A service made less critical: its tier number went up."""

    service: str
    was: int
    now: int


@dataclass(frozen=True)
class RequirementDropped:
    """A requirement of a service or an asset that the new version removes or loosens."""

    owner: str
    requirement: str


@dataclass(frozen=True)
class AssetMove:
    """An asset another estate of record holds, claimed by this version."""

    asset: str
    from_estate: str


@dataclass(frozen=True)
class EstateDiff:
    """How a version weakens the estate of record, against its current version and the other estates."""

    against: int | None
    """The current version compared with (None: the estate had none)."""
    tiers_lowered: tuple[TierChange, ...] = ()
    services_removed: tuple[str, ...] = ()
    requirements_removed: tuple[RequirementDropped, ...] = ()
    assets_moved: tuple[AssetMove, ...] = ()

    @property
    def is_weaker(self) -> bool:
        """Whether a second person must approve before the version becomes current."""
        return bool(self.tiers_lowered or self.services_removed or self.requirements_removed or self.assets_moved)

    def sentences(self) -> list[str]:
        """Each change in a sentence, worst first (what the API, the CLI and the dashboard show)."""
        return [
            *(
                f"service '{t.service}' goes from tier {t.was} to tier {t.now} (less critical)"
                for t in self.tiers_lowered
            ),
            *(f"service '{s}' is removed" for s in self.services_removed),
            *(f"{r.owner}: requirement {r.requirement} is removed or loosened" for r in self.requirements_removed),
            *(f"asset '{m.asset}' moves from estate '{m.from_estate}'" for m in self.assets_moved),
        ]


@dataclass(frozen=True)
class StoredEstate:
    """An uploaded estate as kept: its version (``created`` False when the same text was already there) and how
    it weakens the estate of record (when it does, the version is proposed, not current)."""

    version: EstateVersion
    checked: CheckedEstate
    created: bool
    diff: EstateDiff | None = None

    @property
    def is_proposed(self) -> bool:
        return self.version.status == PROPOSED


@dataclass(frozen=True)
class EstateSummary:
    """One estate name: its current version of record (its newest version when none is current yet), how many
    versions it has and how many are proposed."""

    name: str
    latest: EstateVersion
    versions: int
    proposals: int = 0


@dataclass(frozen=True)
class Proposal:
    """A proposed version and how it weakens the current one (as of now)."""

    version: EstateVersion
    diff: EstateDiff


def _requirement_text(requirement: Requirement) -> str:
    return requirement.describe() if isinstance(requirement, AnyGroup) else f"'{requirement}'"


def _at_least_as_strict(new: Requirement, old: Requirement) -> bool:
    """Whether requirement ``new`` holds only when ``old`` does (so replacing ``old`` by it loosens nothing)."""
    if isinstance(old, str):
        return new == old
    if isinstance(new, str):
        return old.of is not None and old.any == 1 and new in old.of
    if old.of is not None and new.of is not None:
        # K' of a subset up means at least K' ≥ K of the whole list up.
        return set(new.of) <= set(old.of) and new.any >= old.any
    if old.where is not None and new.where is not None:
        return new.where.replace(" ", "") == old.where.replace(" ", "") and new.any >= old.any
    return False


def diff_estates(
    current: Estate | None, new: Estate, holders: Mapping[str, tuple[str, int]], *, against: int | None = None
) -> EstateDiff:
    """How ``new`` weakens ``current`` (its estate's current version) and takes assets ``holders`` says other
    estates hold (asset id → (estate name, version id) of record)."""
    moved = tuple(
        AssetMove(a.id, holders[a.id][0]) for a in new.assets if a.id in holders and holders[a.id][0] != new.name
    )
    if current is None:
        return EstateDiff(against, assets_moved=moved)
    services = {s.id: s for s in new.services}
    lowered = tuple(
        TierChange(s.id, s.tier, services[s.id].tier)
        for s in current.services
        if s.id in services and services[s.id].tier > s.tier
    )
    removed = tuple(s.id for s in current.services if s.id not in services)
    requires: dict[str, tuple[str, Sequence[Requirement]]] = {
        **{a.id: (f"asset '{a.id}'", a.requires) for a in new.assets},
        **{s.id: (f"service '{s.id}'", s.requires) for s in new.services},
    }
    dropped: list[RequirementDropped] = []
    owners: tuple[Node, ...] = (*current.services, *current.assets)
    for owner in owners:
        found = requires.get(owner.id)
        if found is None:
            continue  # a removed service is reported as such; a removed asset takes nothing down
        label, now = found
        for old in owner.requires:
            if not any(_at_least_as_strict(r, old) for r in now):
                dropped.append(RequirementDropped(label, _requirement_text(old)))
    return EstateDiff(against, lowered, removed, tuple(dropped), moved)


@dataclass(frozen=True)
class LoadedEstate:
    """A stored version, parsed and compiled."""

    version: EstateVersion
    checked: CheckedEstate

    @property
    def estate(self) -> Estate:
        return self.checked.estate

    @property
    def graph(self) -> EstateGraph:
        return self.checked.graph


def detect_format(text: str) -> EstateFormat:
    """JSON when the text starts with an object or a list (as the loader decides), else YAML."""
    return EstateFormat.JSON if text.lstrip().startswith(("{", "[")) else EstateFormat.YAML


def check_estate_text(
    text: str,
    *,
    source: str,
    name: str | None = None,
    format: EstateFormat | str | None = None,
) -> CheckedEstate:
    """Parse, validate and compile ``text``; :class:`EstateError` with every problem located otherwise.

    ``name``, when given, must be the name the text itself declares (``estate:``); ``format``, when given,
    must be the one the text is written in.
    """
    found = detect_format(text)
    if format is not None and EstateFormat(format) is not found:
        if found is EstateFormat.YAML:
            # The loader would read JSON-looking YAML as YAML; say plainly that the text is not JSON.
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise EstateError(
                    [Problem(f"format is json but the content is not JSON: {exc.msg}", source=source, line=exc.lineno)]
                ) from None
        raise EstateError(
            [Problem(f"format is {EstateFormat(format)} but the content is {found}", path=("format",), source=source)]
        )
    estate = parse_estate_text(text, source)
    graph = compile_estate(estate)
    if name is not None and name != estate.name:
        raise EstateError(
            [
                Problem(
                    f"the upload is named '{name}' but its content declares estate '{estate.name}'; "
                    "an estate is stored under the name it declares",
                    path=("name",),
                    source=source,
                )
            ]
        )
    # Warnings come without lines; the upload shows every one, so find the lines of the estate's and the graph's
    # (a where-group that matches too little) in one pass over the text.
    warnings = locate_problems([*estate.warnings, *graph.warnings], text)
    return CheckedEstate(estate, graph, tuple(warnings), found)


def decode_estate_bytes(raw: bytes, *, source: str) -> str:
    """An uploaded file's bytes as text (UTF-8, a leading byte-order mark allowed), as ``read_text`` reads a
    file from disk; an :class:`EstateError` naming the file and the first byte that is not UTF-8 otherwise."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EstateError([Problem(f"is not UTF-8 text (byte {exc.start})", source=source)]) from None


def upload_estate(
    engine: Engine,
    text: str,
    *,
    actor: str,
    at: datetime,
    source: str = "body",
    name: str | None = None,
    format: EstateFormat | str | None = None,
    actor_token: int | None = None,
) -> StoredEstate:
    """Check ``text`` and keep it as a version of its estate (audited as ``estate.upload``): current at once,
    or proposed when it weakens the estate of record (see the module docstring).

    Nothing is written unless the whole text holds.
    """
    checked = check_estate_text(text, source=source, name=name, format=format)
    return store_checked_estate(engine, text, checked, actor=actor, at=at, actor_token=actor_token)


def store_checked_estate(
    engine: Engine, text: str, checked: CheckedEstate, *, actor: str, at: datetime, actor_token: int | None = None
) -> StoredEstate:
    """Keep ``text``, already checked by :func:`check_estate_text` into ``checked``, as a version of its estate,
    judged against the estate of record (for a caller that checks before it opens the database: the CLI
    stores nothing, and creates no database, for a file that does not hold)."""
    with session_scope(engine) as session:
        return record_estate_text(
            session, text, checked.estate, checked.format, actor=actor, at=at, actor_token=actor_token, checked=checked
        )


def record_estate_text(
    session: Session,
    text: str,
    estate: Estate,
    format: EstateFormat,
    *,
    actor: str,
    at: datetime,
    actor_token: int | None = None,
    checked: CheckedEstate | None = None,
) -> StoredEstate:
    """Store ``text`` (``estate``, parsed) in ``session`` as a version judged against the estate of record: the
    one use case behind an upload and a rollout created from a text, so that no path makes a weaker text current.

    A text stored before keeps its version: accepted or proposed, it is returned as it is (an older version does
    not become current again); one only kept (an incident's) or rejected is judged again now.
    """
    # Judging and storing run alone: two uploads judged against the same holders could both claim an asset.
    # Every writer of the audit chain takes this lock first (store.db.advisory_lock), so it is the one to take.
    advisory_lock(session, LOCK_NAMESPACE_AUDIT)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    already = next((v for v in list_estate_versions(session, estate.name) if v.sha256 == digest), None)
    placeholder = checked or CheckedEstate(estate, compile_estate(estate), (), format)
    if already is not None and already.status in (ACCEPTED, PROPOSED):
        return StoredEstate(already, placeholder, created=False)
    diff = _judge(session, estate)
    status = PROPOSED if diff.is_weaker else ACCEPTED
    if already is None:
        version = add_estate_version(
            session,
            name=estate.name,
            content=text,
            format=format,
            created_by=actor,
            asset_count=len(estate.assets),
            service_count=len(estate.services),
            at=at,
            status=status,
            created_by_token=actor_token,
        )
    else:
        version = decide_estate_version(session, already.id, status, at=at)
        append_audit(
            session,
            actor=actor,
            action="estate.upload",
            subject=f"estate:{estate.name}",
            detail={"version": version.id, "sha256": digest, "status": status, "again": True},
            at=at,
        )
    if status == PROPOSED:
        append_audit(
            session,
            actor=actor,
            action="estate.propose",
            subject=f"estate:{estate.name}",
            detail={"version": version.id, "against": diff.against, "changes": diff.sentences()},
            at=at,
        )
    else:
        hold_assets(session, name=estate.name, version_id=version.id, asset_ids=[a.id for a in estate.assets])
    return StoredEstate(version, placeholder, created=already is None, diff=diff)


def _judge(session: Session, estate: Estate) -> EstateDiff:
    """How ``estate`` (a new version of its name) weakens the estate of record as it stands in ``session``."""
    current = current_estate_version(session, estate.name)
    current_estate = parse_estate_text(current.content, f"{current.name}@{current.id}") if current else None
    holders = asset_holders(session, [a.id for a in estate.assets])
    return diff_estates(current_estate, estate, holders, against=current.id if current else None)


def estate_proposals(engine: Engine, name: str) -> list[Proposal]:
    """The proposed versions of estate ``name``, oldest first, each with how it weakens the current one now."""
    with session_scope(engine, readonly=True) as session:
        found = [v for v in list_estate_versions(session, name) if v.status == PROPOSED]
        return [Proposal(v, _judge(session, parse_estate_text(v.content, f"{v.name}@{v.id}"))) for v in found]


def approve_estate_version(engine: Engine, name: str, version_id: int, *, actor: Actor, at: datetime) -> Proposal:
    """Make proposed version ``version_id`` of ``name`` current, taking the assets it claims (audited as
    ``estate.approve`` with the changes as judged now). Not by the person who proposed it (403), nor by one whose
    token that person issued or who issued theirs; 409 unless it is proposed."""
    with session_scope(engine) as session:
        advisory_lock(session, LOCK_NAMESPACE_AUDIT)  # see record_estate_text
        version = _proposed(session, name, version_id)
        refuse_same_person(
            session,
            Actor(version.created_by, version.created_by_token),
            actor,
            what=f"version {version_id} of estate '{name}'",
        )
        estate = parse_estate_text(version.content, f"{version.name}@{version.id}")
        diff = _judge(session, estate)
        accepted = decide_estate_version(session, version_id, ACCEPTED, at=at, by=actor.name)
        hold_assets(session, name=name, version_id=version_id, asset_ids=[a.id for a in estate.assets])
        append_audit(
            session,
            actor=actor.name,
            action="estate.approve",
            subject=f"estate:{name}",
            detail={"version": version_id, "proposed_by": version.created_by, "changes": diff.sentences()},
            at=at,
        )
    return Proposal(accepted, diff)


def reject_estate_version(engine: Engine, name: str, version_id: int, *, actor: Actor, at: datetime) -> EstateVersion:
    """Refuse proposed version ``version_id`` of ``name`` (audited as ``estate.reject``): it never becomes current
    (uploading its text again proposes it again). 409 unless it is proposed."""
    with session_scope(engine) as session:
        version = _proposed(session, name, version_id)
        rejected = decide_estate_version(session, version_id, REJECTED, at=at, by=actor.name)
        append_audit(
            session,
            actor=actor.name,
            action="estate.reject",
            subject=f"estate:{name}",
            detail={"version": version_id, "proposed_by": version.created_by},
            at=at,
        )
    return rejected


def _proposed(session: Session, name: str, version_id: int) -> EstateVersion:
    version = get_estate_version(session, version_id)
    if version.name != name:
        raise NotFoundError(f"estate version {version_id} is a version of {version.name!r}, not of {name!r}")
    if version.status != PROPOSED:
        raise ConflictError(f"version {version_id} of estate '{name}' is {version.status}, not proposed")
    return version


def require_current_of_record(session: Session, version: EstateVersion, estate: Estate) -> None:
    """ConflictError (409) naming what differs unless ``version`` is the current version of record of its estate.

    What a rollout is planned on: a proposed version is not current until a second person approves it, and an
    older one would judge the two-person rule on tiers the estate of record no longer has.
    """
    current = current_estate_version(session, version.name)
    if current is not None and current.id == version.id:
        return
    if version.status == PROPOSED:
        diff = _judge(session, estate)
        raise ConflictError(
            f"version {version.id} of estate '{version.name}' is proposed, awaiting a second person's approval, "
            f"so it is not the estate of record: {'; '.join(diff.sentences())}. Approve it first "
            f"(ringfence estate approve {version.name} {version.id}), or plan on the current version"
        )
    if current is None:
        raise ConflictError(f"estate '{version.name}' has no current version of record to plan a rollout on")
    diff = diff_estates(parse_estate_text(current.content, f"{current.name}@{current.id}"), estate, {})
    differs = "; ".join(diff.sentences()) or "it differs from the current one"
    raise ConflictError(
        f"version {version.id} of estate '{version.name}' is not its current version of record (version "
        f"{current.id} is): {differs}. Plan on the current version"
    )


def require_held_targets(session: Session, version: EstateVersion, targets: Sequence[str]) -> None:
    """ConflictError (409) unless every one of ``targets`` is held by ``version`` (the estate of record)."""
    holders = asset_holders(session, list(targets))
    elsewhere = sorted(
        f"'{asset}' (held by estate '{holders[asset][0]}')" if asset in holders else f"'{asset}' (held by none)"
        for asset in targets
        if holders.get(asset, ("", -1))[1] != version.id
    )
    if elsewhere:
        shown = ", ".join(elsewhere[:5]) + (f" and {len(elsewhere) - 5} more" if len(elsewhere) > 5 else "")
        raise ConflictError(
            f"estate '{version.name}' (version {version.id}) is not the estate of record of {shown}: "
            "a rollout targets only assets its estate holds"
        )


def list_estates(engine: Engine) -> list[EstateSummary]:
    """Every estate name with its current version of record (its newest when none is current), sorted by name.

    A name with only versions kept for an incident is listed too, at its newest."""
    with session_scope(engine, readonly=True) as session:
        versions = list_estate_versions(session)
    by_name: dict[str, list[EstateVersion]] = {}
    for version in versions:
        by_name.setdefault(version.name, []).append(version)
    summaries = []
    for name, found in sorted(by_name.items()):
        accepted = [v for v in found if v.status == ACCEPTED]
        # The accepted version accepted last is current (as store.estates.current_estate_version orders them).
        current = max(accepted, key=lambda v: (v.accepted_at or v.created_at, v.id)) if accepted else found[-1]
        summaries.append(EstateSummary(name, current, len(found), sum(v.status == PROPOSED for v in found)))
    return summaries


def estate_versions(engine: Engine, name: str) -> list[EstateVersion]:
    """The versions of estate ``name``, oldest first; NotFoundError when it was never uploaded."""
    with session_scope(engine, readonly=True) as session:
        found = list_estate_versions(session, name)
    if not found:
        raise NotFoundError(f"no estate named {name!r} has been uploaded")
    return found


def estate_version(engine: Engine, name: str, version_id: int | None = None) -> EstateVersion:
    """Version ``version_id`` of estate ``name``, or its current version of record when ``version_id`` is None."""
    with session_scope(engine, readonly=True) as session:
        if version_id is None:
            return latest_estate_version(session, name)
        version = get_estate_version(session, version_id)
    if version.name != name:
        raise NotFoundError(f"estate version {version_id} is a version of {version.name!r}, not of {name!r}")
    return version


def load_sample_estate(engine: Engine, *, at: datetime) -> EstateVersion | None:
    """Keep the bundled sample estate as the first version when the database has no estate yet.

    Returns the version stored, or None when there was an estate already (nothing is changed then).
    Several workers starting at once store it once: the same text is the same version.
    """
    with session_scope(engine, readonly=True) as session:
        if list_estate_versions(session):
            return None
    path = sample_estate_path()
    return upload_estate(engine, read_text(path), actor=SAMPLE_ACTOR, at=at, source=str(path)).version


class CompiledEstates:
    """The last few estate versions, parsed and compiled, by version id (least recently used goes first).

    Thread-safe: the API answers requests on a thread pool. Two threads asking for the same version at
    once may both compile it; the result is the same and one of them is kept.
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError("a cache of compiled estates holds at least one")
        self.size = size
        self._loaded: OrderedDict[int, LoadedEstate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Engine, name: str, version_id: int | None = None) -> LoadedEstate:
        """Version ``version_id`` (default the current one of record) of estate ``name``, compiled."""
        version = estate_version(engine, name, version_id)
        with self._lock:
            loaded = self._loaded.get(version.id)
            if loaded is not None:
                self._loaded.move_to_end(version.id)
                return loaded
        suffix = "json" if version.format is EstateFormat.JSON else "yaml"
        checked = check_estate_text(version.content, source=f"{version.name}@{version.id}.{suffix}")
        loaded = LoadedEstate(version, checked)
        with self._lock:
            self._loaded[version.id] = loaded
            self._loaded.move_to_end(version.id)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)


__all__ = [
    "SAMPLE_ACTOR",
    "AssetMove",
    "CheckedEstate",
    "CompiledEstates",
    "EstateDiff",
    "EstateSummary",
    "LoadedEstate",
    "Proposal",
    "RequirementDropped",
    "StoredEstate",
    "TierChange",
    "approve_estate_version",
    "check_estate_text",
    "decode_estate_bytes",
    "detect_format",
    "diff_estates",
    "estate_proposals",
    "estate_version",
    "estate_versions",
    "list_estates",
    "load_sample_estate",
    "record_estate_text",
    "reject_estate_version",
    "require_current_of_record",
    "require_held_targets",
    "store_checked_estate",
    "upload_estate",
]
