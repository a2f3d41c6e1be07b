"""Assurance on the server: each estate of record's assurance file and policy, stored, and the estate assessed.

``ringfence assess`` reads the files beside the estate; the server keeps them per estate of record
(``assurance_documents``), so the dashboard, the API and the notifier assess the estate the same way:

* an assurance file is checked against the estate's current version (every supplier, service and asset it names
  must be there) before it is stored; a policy file is checked alone. A file that does not hold stores nothing
  and says every problem with its line and field. Each store is audited (``assurance.store``, ``policy.store``);
* an estate without a stored policy is assessed with the bundled policy for an acute trust; one without an
  assurance file, with no evidence at all;
* the **evidence calendar** is what runs out in the months ahead: the same evaluation (:func:`~ringfence.core.
  assurance.assess`) with the policy's warning window stretched to the horizon, so every "expiring" and "due"
  finding up to the horizon comes with its day, and the expired ones ("expired", "too-old") with theirs. The
  findings as of today are that same report without the warnings the policy's own window does not reach: one
  evaluation serves both (a test holds the two equal).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

from sqlalchemy.engine import Engine

from ringfence.core.assurance import (
    DEFAULT_POLICY_FILE,
    AssessmentReport,
    Assurance,
    AssuranceError,
    Finding,
    Policy,
    assess,
    empty_assurance,
    parse_assurance_text,
    parse_policy_text,
)
from ringfence.core.errors import ConflictError, InputError, Problem, RingfenceError
from ringfence.files.disk import examples_dir, read_text
from ringfence.service.estates import CompiledEstates, LoadedEstate, estate_versions
from ringfence.store.assurance import (
    AssuranceDocument,
    AssuranceKind,
    add_assurance_document,
    estates_with_assurance,
    latest_assurance_document,
)
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope

log = logging.getLogger("ringfence.assurance")

"""The bundled policy an estate without one of its own is assessed with (in ``ringfence/examples``)."""

CALENDAR_DAYS = 366
"""How far ahead the evidence calendar looks: a year, the longest warning window a policy may set."""

RUNNING_OUT = frozenset({"expiring", "due"})
"""Findings of evidence that still holds and runs out on their day."""
RAN_OUT = frozenset({"expired", "too-old"})
"""Findings of evidence that ran out on their day (the last day it held)."""


@dataclass(frozen=True)
class StoredFile:
    """What a store did: the file as stored, and whether it differs from the one stored before."""

    document: AssuranceDocument
    changed: bool


@dataclass(frozen=True)
class AssessmentInputs:
    """What an estate is assessed with: its assurance and policy, parsed, and the stored files (None: not stored)."""

    assurance: Assurance
    policy: Policy
    assurance_file: AssuranceDocument | None
    policy_file: AssuranceDocument | None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """The files by their content: a key that means the same in every database a process serves."""
        return (
            None if self.assurance_file is None else self.assurance_file.sha256,
            None if self.policy_file is None else self.policy_file.sha256,
        )


@dataclass(frozen=True)
class CalendarItem:
    """A piece of evidence that runs out (or ran out) on ``day``: the last day it holds."""

    day: date
    finding: Finding
    has_expired: bool

    @property
    def subject(self) -> str:
        return self.finding.subject


@dataclass(frozen=True)
class AssuranceView:
    """An estate's assessment as of a day and its evidence calendar, from one evaluation."""

    inputs: AssessmentInputs
    report: AssessmentReport
    calendar: tuple[CalendarItem, ...]


# ------------------------------------------------------------------------------------------ storing


def _decoded(raw: bytes | str, source: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError([Problem(f"is not UTF-8 text (byte {exc.start})", source=source)]) from None


def store_assurance(
    engine: Engine, loaded: LoadedEstate, raw: bytes | str, *, actor: str, at: datetime, source: str = "body"
) -> StoredFile:
    """Check an assurance file against the estate's current version ``loaded`` and keep it as the estate's
    assurance; :class:`~ringfence.core.assurance.AssuranceError` (nothing stored) when it does not hold."""
    text = _decoded(raw, source)
    assurance = parse_assurance_text(text, loaded.estate, source)
    return _store(engine, loaded.version.name, AssuranceKind.ASSURANCE, assurance.assurance, text, actor, at)


def store_policy(
    engine: Engine, estate: str, raw: bytes | str, *, actor: str, at: datetime, source: str = "body"
) -> StoredFile:
    """Check a policy file and keep it as estate ``estate``'s policy (the estate must have been uploaded)."""
    estate_versions(engine, estate)  # NotFoundError for an estate never uploaded
    text = _decoded(raw, source)
    policy = parse_policy_text(text, source)
    return _store(engine, estate, AssuranceKind.POLICY, policy.policy, text, actor, at)


def _store(
    engine: Engine, estate: str, kind: AssuranceKind, name: str, text: str, actor: str, at: datetime
) -> StoredFile:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with session_scope(engine) as session:
        before = latest_assurance_document(session, estate, kind)
        if before is not None and before.sha256 == digest:
            return StoredFile(before, changed=False)  # the same text again: nothing to store or audit
        document = add_assurance_document(
            session, estate=estate, kind=kind, name=name, content=text, created_by=actor, at=at
        )
        append_audit(
            session,
            actor=actor,
            action=f"{kind.value}.store",
            subject=f"estate:{estate}",
            detail={"id": document.id, "name": name, "sha256": digest},
            at=at,
        )
    return StoredFile(document, changed=True)


def stored_file(engine: Engine, estate: str, kind: AssuranceKind) -> AssuranceDocument | None:
    with session_scope(engine, readonly=True) as session:
        return latest_assurance_document(session, estate, kind)


def default_policy_text() -> str:
    return read_text(examples_dir() / DEFAULT_POLICY_FILE)


def assessed_estates(engine: Engine) -> list[str]:
    """The estates with an assurance file stored: those whose evidence can run out."""
    with session_scope(engine, readonly=True) as session:
        return estates_with_assurance(session)


# ------------------------------------------------------------------------------------------ assessing


def assessment_inputs(engine: Engine, loaded: LoadedEstate) -> AssessmentInputs:
    """The stored assurance and policy of ``loaded``'s estate, parsed against its current version.

    An assurance file stored against an earlier version that no longer holds (a supplier the estate dropped)
    is a :class:`ConflictError` naming its problems: the evidence must be brought up to date, not ignored."""
    name = loaded.version.name
    with session_scope(engine, readonly=True) as session:
        assurance_file = latest_assurance_document(session, name, AssuranceKind.ASSURANCE)
        policy_file = latest_assurance_document(session, name, AssuranceKind.POLICY)
    policy = _cached_policy(policy_file)
    if assurance_file is None:
        return AssessmentInputs(empty_assurance(), policy, None, policy_file)
    try:
        assurance = parse_assurance_text(assurance_file.content, loaded.estate, f"{name}/assurance")
    except AssuranceError as exc:
        raise ConflictError(
            f"the assurance file stored for estate '{name}' (#{assurance_file.id}, by {assurance_file.created_by}) "
            f"does not hold for its current version {loaded.version.id}: {exc.problems[0]}"
            + (f" (and {len(exc.problems) - 1} more problems)" if len(exc.problems) > 1 else "")
            + "; store a corrected assurance file"
        ) from None
    return AssessmentInputs(assurance, policy, assurance_file, policy_file)


_POLICIES: OrderedDict[str | None, Policy] = OrderedDict()
_POLICIES_LOCK = threading.Lock()


def _cached_policy(stored: AssuranceDocument | None) -> Policy:
    key = None if stored is None else stored.sha256
    with _POLICIES_LOCK:
        if key in _POLICIES:
            return _POLICIES[key]
    policy = (
        parse_policy_text(default_policy_text(), DEFAULT_POLICY_FILE)
        if stored is None
        else parse_policy_text(stored.content, f"{stored.estate}/policy")
    )
    with _POLICIES_LOCK:
        _POLICIES[key] = policy
        while len(_POLICIES) > 16:
            _POLICIES.popitem(last=False)
    return policy


def assess_with_calendar(
    loaded: LoadedEstate, inputs: AssessmentInputs, as_of: date, *, horizon_days: int = CALENDAR_DAYS
) -> AssuranceView:
    """The assessment of ``loaded`` as of ``as_of`` (what ``ringfence assess`` says) and the evidence that runs out
    up to ``horizon_days`` ahead, from one evaluation (see the module docstring)."""
    policy = inputs.policy
    wide = policy.model_copy(update={"warn_within": max(horizon_days, policy.warn_within)})
    found = assess(loaded.estate, loaded.graph, inputs.assurance, wide, as_of)
    warn_until = as_of + timedelta(days=policy.warn_within)
    findings = tuple(
        f for f in found.findings if not (f.problem in RUNNING_OUT and f.day is not None and f.day > warn_until)
    )
    report = replace(found, policy=policy.policy, findings=findings)
    calendar = tuple(
        sorted(
            (
                CalendarItem(f.day, f, has_expired=f.problem in RAN_OUT)
                for f in found.findings
                if f.day is not None and f.problem in RUNNING_OUT | RAN_OUT
            ),
            key=lambda item: (item.day, item.finding.tier, item.subject, item.finding.rule),
        )
    )
    return AssuranceView(inputs, report, calendar)


class AssuranceViews:
    """The last few :class:`AssuranceView` by (estate text, stored files, day): an evaluation of a large estate
    takes seconds, and the dashboard's pages and the notifier ask for the same one again and again. Thread-safe."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._found: OrderedDict[tuple[object, ...], AssuranceView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Engine, loaded: LoadedEstate, as_of: date) -> AssuranceView:
        inputs = assessment_inputs(engine, loaded)
        key = (loaded.version.name, loaded.version.sha256, *inputs.key, as_of)
        with self._lock:
            if key in self._found:
                self._found.move_to_end(key)
                return self._found[key]
        view = assess_with_calendar(loaded, inputs, as_of)
        with self._lock:
            self._found[key] = view
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return view


VIEWS = AssuranceViews()
"""The process's views, shared by the API, the dashboard and the notifier."""


def assessment_report(engine: Engine, loaded: LoadedEstate, as_of: date) -> AssessmentReport:
    """What ``ringfence assess`` says of the estate with its stored files, as of ``as_of``."""
    return VIEWS.get(engine, loaded, as_of).report


# ------------------------------------------------------------------------------------------ telling


NOTICE_DAYS = 30
"""Evidence is told of this many days before its last day, and again once it has run out."""
LATE_DAYS = 30
"""Evidence that ran out longer ago than this is not told of as newly expired (the first look at years of
history pages nobody); the dashboard shows it, and ``assess`` breaches on it."""


@dataclass(frozen=True)
class EvidenceNotice:
    """One piece of evidence to tell people of, at one threshold (``30d`` before, or ``expired``)."""

    estate: str
    item: CalendarItem
    threshold: str

    @property
    def key(self) -> str:
        """Unique per item and threshold: the outbox stores one delivery per key and channel, so it is sent once."""
        finding = self.item.finding
        ident = hashlib.sha256(f"{finding.subject}\n{finding.policy}\n{finding.rule}".encode()).hexdigest()[:20]
        return f"evidence:{self.estate[:200]}:{ident}:{self.item.day.isoformat()}:{self.threshold}"

    @property
    def reason(self) -> str:
        """What runs out, when, and what to do, in a sentence for the message."""
        finding, day = self.item.finding, self.item.day.isoformat()
        when = f"ran out after {day}" if self.item.has_expired else f"last day {day}"
        return f"{finding.subject} ({finding.rule}): {finding.evidence}; {when}. To do: {finding.action}"


def evidence_to_tell(engine: Engine, estates: CompiledEstates, as_of: date) -> list[EvidenceNotice]:
    """Every estate with a stored assurance file, assessed as of ``as_of``: the evidence to tell people of (see
    :func:`evidence_notices`). An estate that cannot be assessed (its stored assurance file no longer holds for its
    current version) is logged and skipped: the others are still told of."""
    found: list[EvidenceNotice] = []
    for name in assessed_estates(engine):
        try:
            loaded = estates.get(engine, name)
            found += evidence_notices(name, VIEWS.get(engine, loaded, as_of), as_of)
        except RingfenceError as exc:
            log.warning("evidence of estate %s not looked at: %s", name, exc)
    return found


def evidence_notices(estate: str, view: AssuranceView, as_of: date) -> list[EvidenceNotice]:
    """The calendar's items to tell people of as of ``as_of``: those whose last day is within
    :data:`NOTICE_DAYS`, and those that ran out within the last :data:`LATE_DAYS`."""
    found = []
    for item in view.calendar:
        if item.has_expired:
            if item.day >= as_of - timedelta(days=LATE_DAYS):
                found.append(EvidenceNotice(estate, item, "expired"))
        elif item.day <= as_of + timedelta(days=NOTICE_DAYS):
            found.append(EvidenceNotice(estate, item, f"{NOTICE_DAYS}d"))
    return found


__all__ = [
    "CALENDAR_DAYS",
    "DEFAULT_POLICY_FILE",
    "VIEWS",
    "AssessmentInputs",
    "AssuranceView",
    "AssuranceViews",
    "CalendarItem",
    "EvidenceNotice",
    "StoredFile",
    "assess_with_calendar",
    "assessed_estates",
    "assessment_inputs",
    "assessment_report",
    "default_policy_text",
    "evidence_notices",
    "evidence_to_tell",
    "store_assurance",
    "store_policy",
    "stored_file",
]
