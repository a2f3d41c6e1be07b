"""Data-driven plan cases: an estate and an update in, hand-worked rings out (tests/cases/plan/*.yaml).

Each case holds an estate (as the text of an estate file, so it goes through the real loader), an update,
and the expected plan: every ring (name, canary or not, assets, why), the warnings and the notes. The
independent checker of the property tests judges the same plan against rules 1-5 too, so a case whose
hand-worked answer broke a rule would be caught as well as a planner that strays from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ringfence.core.documents import plan_document
from ringfence.core.estate import parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.core.planner import plan_rings
from ringfence.core.update import Update
from test_planner_properties import check_plan

CASES_DIR = Path(__file__).parent / "cases" / "plan"
CASE_PATHS = sorted(CASES_DIR.glob("*.yaml"))
CASE_KEYS = {"description", "estate", "update", "rings", "warnings", "notes"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: a case is a mapping"
    assert set(data) == CASE_KEYS, f"{path.name}: keys {sorted(set(data) ^ CASE_KEYS)} missing or unknown"
    return data


def test_there_are_cases() -> None:
    assert len(CASE_PATHS) >= 4


@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_plan_case(path: Path) -> None:
    case = load(path)
    graph = compile_estate(parse_estate_text(case["estate"], path.name))
    update = Update.model_validate(case["update"])
    plan = plan_rings(graph, update)

    assert [{"name": r.name, "canary": r.canary, "assets": list(r.assets), "why": r.why} for r in plan.rings] == case[
        "rings"
    ]
    assert plan.canary_rings == sum(1 for r in case["rings"] if r["canary"])
    assert [
        {"kind": w.kind, "owners": list(w.owners), "members": list(w.members), "k": w.k} for w in plan.warnings
    ] == case["warnings"]
    assert list(plan.notes) == case["notes"]
    check_plan(yaml.safe_load(case["estate"]), update, plan)

    # The JSON carries the same: canary flags, whys, the count of canary rings, the notes.
    document = plan_document(plan).model_dump(mode="json")
    assert [(r["name"], r["canary"], r["why"]) for r in document["rings"]] == [
        (r["name"], r["canary"], r["why"]) for r in case["rings"]
    ]
    assert document["canary_rings"] == plan.canary_rings
    assert document["notes"] == case["notes"]
