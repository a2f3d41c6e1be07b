"""Declared incidents use the measured time to restore where the estate's stored assurance file has one.

On the ward estate (see conftest), failing ``asset:sql-epr-1`` takes down five items in four steps:
sql-epr-1; epr-app-1, epr-app-2; epr (T1, RTO 4h); pharmacy (T2, RTO 1h). The stored assurance file measures the
first three steps (20m, 40m / 35m, 3h 10m) and not pharmacy. So epr, estimated at 3h (three steps of an hour: on
track), is measured at 4h 10m: past its 4h RTO, at risk, "measured" (the oldest test behind it); pharmacy's own
time is a guess of an hour, and so is its time to restore. On SQLite and PostgreSQL, through the service functions
the API and the CLI call, read back from the store.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.cli.incidents import print_incident
from ringfence.cli.output import out
from ringfence.core.assurance import measured_restores, parse_assurance_text
from ringfence.core.incident import ClockStatus, UnreadableIncident, rto_clocks
from ringfence.core.incident_review import review_incident
from ringfence.core.recovery import plan_recovery
from ringfence.files.incident_review import render_review_markdown
from ringfence.service import incidents
from ringfence.service.assurance import store_assurance
from ringfence.service.estates import CompiledEstates, upload_estate
from ringfence.service.tokens import Caller, Role
from ringfence.store.tables import IncidentRow
from ringfence.web.rendering import _ENV
from ringfence.web.views.incidents import incident_page

from .conftest import T0, WARD

ASSURANCE = """\
apiVersion: ringfence/v1
assurance: ward evidence
restore-tests:
  - {subject: sql-epr-1, date: 2022-06-15, time-to-restore: 20m}
  - {subject: epr-app-1, date: 2022-07-10, time-to-restore: 40m}
  - {subject: epr-app-2, date: 2022-07-12, time-to-restore: 35m}
  - {subject: epr, date: 2022-07-01, time-to-restore: 190m}
  - {subject: epr, date: 2022-09-01, time-to-restore: 10m}   # after the declaration: it did not exist yet
"""

EPR_BACK = (20 + 40 + 190) * 60
"""epr's time to restore, measured: the slowest item of each step up to its own."""


@pytest.fixture
def ward_with_evidence(db_engine: Engine) -> Engine:
    upload_estate(db_engine, WARD, actor="olga-operator", at=T0 - timedelta(days=30))
    loaded = CompiledEstates().get(db_engine, "ward")
    store_assurance(db_engine, loaded, ASSURANCE, actor="olga-operator", at=T0 - timedelta(days=1))
    return db_engine


def test_a_declared_incident_uses_the_measured_times_and_marks_the_guesses(ward_with_evidence: Engine) -> None:
    engine = ward_with_evidence
    declared = incidents.declare(engine, fail=["asset:sql-epr-1"], estate_name="ward", actor="olga-operator", at=T0)
    incident = incidents.get(engine, declared.id)  # as stored, read back
    assert incident == declared

    doc = incidents.incident_document(incident, T0)
    items = {i.id: i for i in doc.items}
    assert (items["epr"].takes, items["epr"].basis) == (190 * 60, "measured 2022-07-01")
    assert (items["epr"].restored_by, items["epr"].restored_by_basis) == (EPR_BACK, "measured 2022-06-15")
    assert (items["pharmacy"].takes, items["pharmacy"].basis) == (3600, "estimate")
    assert (items["pharmacy"].restored_by, items["pharmacy"].restored_by_basis) == (EPR_BACK + 3600, "estimate")
    assert (items["epr-app-2"].takes, items["epr-app-2"].basis) == (35 * 60, "measured 2022-07-12")

    # What `ringfence recover --assurance` says of the same estate, file and failure, step by step.
    graph = CompiledEstates().get(engine, "ward").graph
    plan = plan_recovery(
        graph,
        graph.resolve_failures(["asset:sql-epr-1"]),
        measured=measured_restores(parse_assurance_text(ASSURANCE, graph.estate), T0.date()),
    )
    for item in doc.items:
        seconds, measured_on = plan.restored_by(item.step)
        assert item.restored_by == seconds
        assert item.restored_by_basis == ("estimate" if measured_on is None else f"measured {measured_on}")

    clocks = {c.service: c for c in doc.clocks}
    epr, pharmacy = clocks["epr"], clocks["pharmacy"]
    # Estimated at three steps of an hour, epr would be on track; measured, it needs 4h 10m of its 4h.
    assert (epr.status, epr.estimated, epr.basis) == ("at_risk", EPR_BACK, "measured 2022-06-15")
    assert epr.expected_at == T0 + timedelta(seconds=EPR_BACK)
    assert epr.warning == "epr (tier 1): RTO of 4h at risk: 4h left, 4h 10m (measured 2022-06-15) to restore"
    assert (pharmacy.status, pharmacy.estimated, pharmacy.basis) == ("at_risk", EPR_BACK + 3600, "estimate")
    assert pharmacy.warning is not None
    assert "about 5h 10m to restore" in pharmacy.warning
    assert "measured restore times for 4 of 5 items" in doc.timeline[0].text

    # The page and the CLI table say it too.
    page = incident_page(engine, incident.id, Caller(1, "vera-viewer", Role.VIEWER), T0)
    live = _ENV.get_template("_incident_live.html.j2").render(
        i=page, refresh_seconds=5, caller=None, error="", notice=""
    )
    epr_row = re.search(r'<tr data-service="epr".*?</tr>', live, re.S)
    pharmacy_row = re.search(r'<tr data-service="pharmacy".*?</tr>', live, re.S)
    assert epr_row is not None
    assert pharmacy_row is not None
    assert '<span class="basis">measured 2022-06-15</span>' in epr_row.group()
    assert '<span class="basis estimate">estimate</span>' in pharmacy_row.group()
    assert re.search(r'data-item="epr".*?\(takes 3h 10m, measured 2022-07-01\)', live, re.S)
    assert re.search(r'data-item="pharmacy".*?\(takes 1h, estimate\)', live, re.S)
    with out.capture() as shown:
        print_incident(incident, T0)
    table = " ".join(shown.get().split())  # as wrapped at the width of the terminal
    assert "measured 2022-06-15" in table
    assert "Restore times: 4 of 5 items measured by a restore test; estimates of 1h a step for pharmacy." in table

    # Stable: a second later the verdict and the moment expected back are the same.
    later = {c.service: c for c in rto_clocks(incident, T0 + timedelta(seconds=1))}
    assert (later["epr"].status, later["epr"].expected_at) == (ClockStatus.AT_RISK, epr.expected_at)

    # Once sql-epr-1 is back (20 min in), the plan of what is still down is measured from its oldest test on.
    restored = incidents.restore(
        engine, incident.id, ["sql-epr-1"], actor="olga-operator", at=T0 + timedelta(minutes=20)
    )
    now = {c.service: c for c in rto_clocks(restored, T0 + timedelta(minutes=20))}
    assert now["epr"].expected_at == T0 + timedelta(seconds=EPR_BACK)
    assert now["epr"].measured_on == date(2022, 7, 1)
    assert now["pharmacy"].basis == "estimate"

    # The review says which times are guesses.
    review = review_incident(restored, T0 + timedelta(minutes=20))
    assert review.restore_times == (
        "Restore times: 4 of 5 items measured by a restore test; estimates of 1h a step for pharmacy. "
        "The expected time to restore of pharmacy is an estimate: a step before it was never measured."
    )
    assert "estimates of 1h a step for pharmacy" in render_review_markdown(review)

    # Closed: the clocks freeze, and no clock claims an estimate any more.
    closed = incidents.close(engine, incident.id, actor="olga-operator", at=T0 + timedelta(hours=1), reason="drill")
    assert all(c.basis is None for c in incidents.incident_document(closed, T0 + timedelta(days=1)).clocks)


def test_without_an_assurance_file_every_time_is_the_estimate_as_before(db_engine: Engine) -> None:
    upload_estate(db_engine, WARD, actor="olga-operator", at=T0 - timedelta(days=30))
    incident = incidents.declare(db_engine, fail=["asset:sql-epr-1"], estate_name="ward", actor="olga-operator", at=T0)
    doc = incidents.incident_document(incidents.get(db_engine, incident.id), T0)
    assert {(i.id, i.takes, i.basis, i.restored_by) for i in doc.items} == {
        (i.id, 3600, "estimate", 3600 * i.step) for i in doc.items
    }
    clocks = {c.service: c for c in doc.clocks}
    assert (clocks["epr"].status, clocks["epr"].estimated, clocks["epr"].basis) == ("on_track", 3 * 3600, "estimate")
    assert "measured" not in doc.timeline[0].text
    with Session(db_engine) as session:
        snapshot = session.get(IncidentRow, incident.id).snapshot  # type: ignore[union-attr]
    assert all("takes" not in i and "measured_on" not in i for i in snapshot["items"])  # the form stored before


def test_an_assurance_file_that_no_longer_holds_declares_with_estimates_and_says_why(
    ward_with_evidence: Engine,
) -> None:
    # An estate text without epr-app-2, which the stored assurance file names.
    without = WARD.replace(
        "  - {id: epr-app-2, kind: vm, site: north, supplier: acme, requires: [sql-epr-1]}\n", ""
    ).replace("of: [epr-app-1, epr-app-2]", "of: [epr-app-1]")
    incident = incidents.declare(
        ward_with_evidence, fail=["asset:sql-epr-1"], estate_text=without, actor="olga-operator", at=T0
    )
    assert all(i.takes is None for i in incident.items)
    assert "restore times are all estimates: the assurance file stored for estate 'ward'" in incident.events[0].text
    assert "epr-app-2" in incident.events[0].text


@pytest.mark.parametrize(("takes", "day"), [("3h", "2022-07-01"), (10**30, "2022-07-01"), (0, "2022-07-01"),
                                        (600, "July"), (600, None), (600, "missing")])  # fmt: skip
def test_a_poisoned_measured_time_marks_that_incident_unreadable_not_the_list(
    ward_with_evidence: Engine, takes: object, day: object
) -> None:
    engine = ward_with_evidence
    bad = incidents.declare(engine, fail=["asset:sql-epr-1"], estate_name="ward", actor="olga-operator", at=T0)
    good = incidents.declare(engine, fail=["asset:epr-app-1"], estate_name="ward", actor="olga-operator", at=T0)
    with Session(engine) as session, session.begin():
        row = session.get(IncidentRow, bad.id)
        assert row is not None
        items = [dict(i) for i in row.snapshot["items"]]
        items[0]["takes"] = takes
        if day == "missing":
            del items[0]["measured_on"]
        else:
            items[0]["measured_on"] = day
        row.snapshot = {**row.snapshot, "items": items}
    listed = {i.id: i for i in incidents.list_incidents(engine)}
    assert isinstance(listed[bad.id], UnreadableIncident)
    assert not isinstance(listed[good.id], UnreadableIncident)
    summaries = [incidents.incident_summary(i, T0) for i in listed.values()]
    assert [s.unreadable is not None for s in summaries] == [True, False]
