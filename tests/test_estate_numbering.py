"""The numbering and requirement lists ``build_estate`` keeps for the graph give the graph it would build alone.

``build_estate`` finds every node's number (services, then assets) and the nodes that require something while it
checks ids and references, and hands both to ``compile_estate`` so that a large estate is not walked twice. An
estate made another way has neither, and the graph walks the models itself: both ways must give the same arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from hypothesis import given

from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from test_graph_properties import PROPERTY, build, estate_documents

_ARRAYS = (
    "dependents_ptr",
    "dependents",
    "hard_requirement_count",
    "group_owner",
    "group_k",
    "group_set",
    "group_size",
    "set_members_ptr",
    "set_members",
    "member_sets_ptr",
    "member_sets",
    "set_groups",
    "set_groups_ptr",
    "broken_owners",
    "service_tier",
)


def assert_same_graph(kept: EstateGraph, walked: EstateGraph) -> None:
    assert kept.ids == walked.ids
    assert kept.index == walked.index
    for name in _ARRAYS:
        assert np.array_equal(getattr(kept, name), getattr(walked, name)), name
    assert [w.message for w in kept.warnings] == [w.message for w in walked.warnings]
    assert np.array_equal(kept.baseline, walked.baseline)


def without_kept_walks(estate: Any) -> Any:
    return dataclasses.replace(estate, node_index=None, requirements=None, software_keys=None)


@PROPERTY
@given(doc=estate_documents())
def test_graph_from_the_kept_numbering_equals_the_walked_one(doc: dict[str, Any]) -> None:
    estate = build(doc)
    assert estate.node_index is not None
    assert estate.requirements is not None
    assert_same_graph(compile_estate(estate), compile_estate(without_kept_walks(estate)))


def test_kept_numbering_is_services_then_assets_and_only_nodes_that_require() -> None:
    text = """{"apiVersion": "ringfence/v1", "estate": "t",
      "services": [{"id": "ehr", "tier": 1, "requires": ["db", {"any": 1, "where": "kind=host"}]},
                   {"id": "idle", "tier": 4}],
      "assets": [{"id": "h1", "kind": "host"}, {"id": "h2", "kind": "host"},
                 {"id": "db", "kind": "vm", "requires": [{"any": 1, "of": ["h1", "h2"]}]}]}"""
    estate = parse_estate_text(text, "t.json")
    assert estate.node_index == {"ehr": 0, "idle": 1, "h1": 2, "h2": 3, "db": 4}
    assert estate.requirements is not None
    assert [n for n, _ in estate.requirements] == [0, 4]
    graph = compile_estate(estate)
    assert_same_graph(graph, compile_estate(without_kept_walks(estate)))
    assert graph.dependents.tolist() == [0]  # only ehr hard-requires (db)
