"""On random estates, failures and measured times: an incident's clocks at declaration say what
``ringfence recover --assurance`` says — each item restored by the end of its step, with the same basis, and a
service at risk exactly when that end is past its RTO — and the verdict holds a second later."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

import oracle
from ringfence.core.clinical import is_rto_at_risk
from ringfence.core.graph import compile_estate
from ringfence.core.incident import ClockStatus, rto_clocks, time_basis
from ringfence.core.incident_declaration import declare_incident
from ringfence.core.recovery import MeasuredRestore, plan_recovery
from test_recovery_properties import PROPERTY, RAW_FAILURES, estate_documents, oracle_steps, scenario

from .conftest import T0


@PROPERTY
@given(
    doc=estate_documents(),
    raws=RAW_FAILURES,
    data=st.data(),
    step_seconds=st.sampled_from((60, 1800, 3600)),
)
def test_declared_clocks_are_the_measured_recovery_plan(
    doc: dict[str, Any], raws: list[tuple[str, int]], data: st.DataObject, step_seconds: int
) -> None:
    estate, refs, down = scenario(doc, raws)
    assume(down)
    assume(oracle_steps(down, oracle.rules_of(estate)) is not None)
    # Most down items measured (so whole steps, and runs of steps, are), on days a few apart.
    measured = {
        item: MeasuredRestore(
            data.draw(st.integers(1, 6 * 3600)), T0.date() - timedelta(days=data.draw(st.integers(0, 9)))
        )
        for item in sorted(down)
        if data.draw(st.integers(0, 4)) > 0
    }
    graph = compile_estate(estate)
    failures = graph.resolve_failures(refs)
    plan = plan_recovery(graph, failures, step_seconds=step_seconds, measured=measured)
    incident = declare_incident(
        graph, failures, incident_id="inc-1", at=T0, actor="p", step_seconds=step_seconds, measured=measured
    )

    for item in incident.items:
        assert (item.takes, item.measured_on) == (
            (measured[item.id].seconds, measured[item.id].day) if item.id in measured else (None, None)
        )
        assert incident.declared_restored_by[item.id] == plan.restored_by(item.step)

    later = {c.service: c for c in rto_clocks(incident, T0 + timedelta(seconds=1))}
    for clock in rto_clocks(incident, T0):
        seconds, measured_on = plan.restored_by(incident.item_by_id[clock.service].step)
        assert clock.expected_at == T0 + timedelta(seconds=seconds)
        assert clock.basis == time_basis(measured_on)
        if clock.rto is not None:
            assert (clock.status is ClockStatus.AT_RISK) == is_rto_at_risk(clock.rto, seconds)
        # Stable: a second later nothing has happened, so neither the moment expected back nor the verdict moves.
        assert (later[clock.service].expected_at, later[clock.service].basis) == (clock.expected_at, clock.basis)
        if clock.rto is not None and clock.rto > 1:
            assert later[clock.service].status is clock.status
