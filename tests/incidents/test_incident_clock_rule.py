"""One stable rule for an incident's RTO verdict: the estimate is anchored at the declaration (or the latest
restore mark), not recomputed from the clock while the deadline stays fixed.

With no event, a verdict changes only once it must: past the deadline (breached), or once the steps after
the one in hand can no longer fit before the deadline even if the one in hand ended right now (at risk).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ringfence.core.durations import parse_duration
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.incident import (
    ClockStatus,
    Incident,
    expected_back,
    mark_restored,
    remaining_steps,
    rto_clocks,
    waiting_for,
)
from ringfence.core.incident_declaration import declare_incident
from test_recovery_properties import PROPERTY, RAW_FAILURES, STEP_TIMES, estate_documents, scenario

from .conftest import T0

DECLARED_AT = datetime(2022, 8, 4, 7, 0, tzinfo=UTC)
LIVE = (ClockStatus.ON_TRACK, ClockStatus.AT_RISK, ClockStatus.BREACHED)
TICK = 450
TICKS = 26 * 8


def declared(graph: EstateGraph, refs: list[str], step_seconds: int) -> Incident:
    failures = graph.resolve_failures(refs)
    return declare_incident(
        graph, failures, incident_id="inc-1", at=DECLARED_AT, actor="olga", step_seconds=step_seconds
    )


@pytest.mark.slow
@PROPERTY
@given(
    doc=estate_documents(),
    raws=RAW_FAILURES,
    step_time=st.sampled_from(STEP_TIMES),
    mark_after=st.one_of(st.none(), st.integers(0, 3 * 3600)),
    offset=st.integers(0, TICK - 1),
)
def test_with_no_event_a_verdict_holds_until_the_deadline_truly_cannot_be_met(
    doc: dict[str, Any],
    raws: list[tuple[str, int]],
    step_time: str,
    mark_after: int | None,
    offset: int,
) -> None:
    """Walked tick by tick (every 7 min 30 s, odd seconds in, for 26 hours): every pair of neighbours."""
    estate, refs, down = scenario(doc, raws)
    assume(down)  # failures that take nothing down declare no incident
    graph = compile_estate(estate)
    step_seconds = parse_duration(step_time)
    incident = declared(graph, refs, step_seconds)
    anchor = DECLARED_AT
    if mark_after is not None:
        # One restore mark (what can be restored first), then nothing: the estimate anchors at the mark.
        ready = [i.id for i in incident.still_down if not waiting_for(incident, i.id)]
        assume(ready)
        anchor = DECLARED_AT + timedelta(seconds=mark_after)
        incident = mark_restored(incident, ready, anchor, actor="olga")
    steps = remaining_steps(incident)
    moments = [anchor + timedelta(seconds=offset + n * TICK) for n in range(TICKS)]
    for earlier, later in zip([anchor, *moments], moments, strict=False):
        assert_held(incident, steps, step_seconds, anchor, earlier, later)


def assert_held(
    incident: Incident,
    steps: dict[str, int],
    step_seconds: int,
    anchor: datetime,
    earlier: datetime,
    later: datetime,
) -> None:
    before = {c.service: c for c in rto_clocks(incident, earlier)}
    after = {c.service: c for c in rto_clocks(incident, later)}
    for service, then in before.items():
        now = after[service]
        if then.status not in LIVE:
            assert now.status is then.status  # restored, or no RTO: no verdict to change
            continue
        assert then.deadline is not None
        step = steps[service]
        still_possible = later + timedelta(seconds=(step - 1) * step_seconds) <= then.deadline
        if still_possible:
            assert now.status is then.status, (service, step, then, now)
        # A verdict never improves with time alone.
        assert LIVE.index(now.status) >= LIVE.index(then.status), (service, then, now)
        # And it compares like with like: the moment it is expected back against its deadline.
        assert now.expected_at == expected_back(step, step_seconds, anchor, later)
        if now.status is not ClockStatus.BREACHED:
            assert (now.status is ClockStatus.AT_RISK) == (now.expected_at > then.deadline)


def test_a_second_after_declaring_nothing_flips(ward: EstateGraph) -> None:
    """The issue's case: declared with exactly enough time, a second later it was "at risk"."""
    # The ward's epr (RTO 4h) is at step 3: with 80-minute steps it is expected back exactly at its deadline.
    incident = declare_incident(
        ward,
        ward.resolve_failures(["asset:sql-epr-1"]),
        incident_id="inc-1",
        at=T0,
        actor="olga",
        step_seconds=80 * 60,
    )
    at_declaration = next(c for c in rto_clocks(incident, T0) if c.service == "epr")
    a_second_later = next(c for c in rto_clocks(incident, T0 + timedelta(seconds=1)) if c.service == "epr")
    assert at_declaration.status is a_second_later.status is ClockStatus.ON_TRACK
    assert at_declaration.expected_at == a_second_later.expected_at == T0 + timedelta(hours=4)
    # The time left and the time to restore run down together.
    assert (a_second_later.remaining, a_second_later.estimated) == (4 * 3600 - 1, 4 * 3600 - 1)
