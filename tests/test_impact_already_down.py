"""A blast radius names what was down before the failure, so the failure is not blamed for it.

"Already down" is what the estate's own rules hold down with nothing failed: the owner of a group that can never
be met (a where-group matching fewer than K assets), and everything that needs it. Held against the brute-force
oracle on random estates, and on a hand-worked estate.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import oracle
from ringfence.core.documents import impact_document
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.core.impact import compute_blast_radius
from test_graph_properties import PROPERTY, RAW_FAILURE, build, estate_documents, failure_ref

# vm-2 needs 2 hosts of cluster d and only h4 is one: vm-2, and the service `old` that needs it, are down before
# anything fails. ehr needs vm-1, which needs 2 of the three hosts of cluster c.
WHERE_TOO_FEW = """\
apiVersion: ringfence/v1
estate: where-groups
services:
  - {id: ehr, tier: 1, requires: [vm-1]}
  - {id: old, tier: 4, requires: [vm-2]}
assets:
  - {id: h1, kind: host, attrs: {cluster: c}}
  - {id: h2, kind: host, attrs: {cluster: c}}
  - {id: h3, kind: host, attrs: {cluster: c}}
  - {id: h4, kind: host, attrs: {cluster: d}}
  - {id: vm-1, kind: vm, requires: [{any: 2, where: "kind=host,attrs.cluster=c"}]}
  - {id: vm-2, kind: vm, requires: [{any: 2, where: "kind=host,attrs.cluster=d"}]}
"""


@pytest.fixture(scope="module")
def graph() -> EstateGraph:
    return compile_estate(parse_estate_text(WHERE_TOO_FEW, "where-groups.yaml"))


@pytest.mark.parametrize(
    ("refs", "taken_down"),
    [
        (["h1", "h2"], ["ehr"]),  # ehr is the failure's doing; old was down anyway
        (["h4"], []),  # vm-2 was down already: losing its only match changes nothing
        (["service:old"], []),  # failing what is already down takes nothing down
        (["where:kind=host"], ["ehr"]),
    ],
)
def test_the_radius_marks_what_was_down_before_the_failure(
    graph: EstateGraph, refs: list[str], taken_down: list[str]
) -> None:
    radius = compute_blast_radius(graph, refs)
    assert radius.already_down == {"old", "vm-2"}
    assert [s.id for s in radius.services_taken_down] == taken_down
    # Everything down is still listed (the contract's services_down and by_tier are the state after the failure).
    assert "old" in [s.id for s in radius.services_down]
    assert radius.by_tier[4] == 1


def test_the_json_document_lists_what_was_already_down_sorted(graph: EstateGraph) -> None:
    document = impact_document(compute_blast_radius(graph, ["h1", "h2"])).model_dump(mode="json")
    assert document["already_down"] == ["old", "vm-2"]
    assert [s["id"] for s in document["services_down"]] == ["ehr", "old"]


def test_an_estate_whose_rules_hold_nothing_down_has_nothing_already_down() -> None:
    whole = WHERE_TOO_FEW.replace("attrs.cluster=d", "attrs.cluster=c")
    radius = compute_blast_radius(compile_estate(parse_estate_text(whole)), ["h4"])
    assert radius.already_down == frozenset()
    assert radius.services_taken_down == radius.services_down


@PROPERTY
@given(doc=estate_documents(), data=st.data())
def test_already_down_is_the_oracles_down_set_with_nothing_failed(doc: dict[str, Any], data: st.DataObject) -> None:
    estate = build(doc)
    graph = compile_estate(estate)
    refs = [failure_ref(estate, raw) for raw in data.draw(st.lists(RAW_FAILURE, max_size=3), label="failures")]
    radius = compute_blast_radius(graph, refs)
    before = oracle.down_set(estate, set())
    after = oracle.down_after(estate, refs)
    assert radius.already_down == before & after
    assert [s.id for s in radius.services_taken_down] == oracle.services_in(estate, after - before)
