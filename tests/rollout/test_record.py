"""The stored plan's codec: what a rollout persists reads back the same, and plans stored before a field
existed read back as the rollout was created."""

from __future__ import annotations

import json

import pytest

from ringfence.core.driver import DRIVERS_OWN_HEALTH
from ringfence.core.errors import ConflictError
from ringfence.core.rollout.record import MemberNumbers, RedundancyGroup, StoredPlan

PLAN = StoredPlan(
    strategy="ringfence",
    gate_mode="statistical",
    rolls_back_on_halt=True,
    bake=600,
    driver="simulated",
    rings=(("ws-1", "srv-1"), ("ws-2", "ws-3", "srv-2")),
    canary_rings=1,
    tiers={"ws-1": 4, "srv-1": 3, "ws-2": 4, "ws-3": 4, "srv-2": 3},
    groups=(RedundancyGroup(owners=("files",), members=("srv-1", "srv-2"), k=1),),
    warnings=("srv-2 has no restore point",),
    health_source="heartbeats",
)


def test_a_plan_reads_back_as_it_was_stored() -> None:
    document = PLAN.to_document()
    assert document["health_source"] == "heartbeats"
    assert StoredPlan.from_document(document) == PLAN


def test_a_plan_judged_by_its_driver_says_so() -> None:
    plan = StoredPlan.from_document({**PLAN.to_document(), "health_source": DRIVERS_OWN_HEALTH})
    assert plan.health_source == "driver"
    assert plan.to_document()["health_source"] == "driver"


def test_a_plan_stored_before_health_sources_is_judged_by_its_driver() -> None:
    document = PLAN.to_document()
    del document["health_source"]
    assert StoredPlan.from_document(document, rollout_id="r-000001").health_source == "driver"
    # So were the plans that stored it as null.
    assert StoredPlan.from_document({**document, "health_source": None}).health_source == "driver"


NUMBERED = StoredPlan(
    **{
        **PLAN.__dict__,
        "groups": (
            RedundancyGroup(
                owners=("files",),
                members=("nas-9", "srv-1", "srv-2"),
                k=1,
                numbers=MemberNumbers((1, 4), ("nas-9",)),
            ),
        ),
    }
)


def test_a_groups_member_numbers_read_back_as_they_were_stored() -> None:
    (group,) = StoredPlan.from_document(json.loads(json.dumps(NUMBERED.to_document()))).groups
    assert group.numbers == MemberNumbers((1, 4), ("nas-9",))
    assert group.members == ("nas-9", "srv-1", "srv-2")


def test_a_plan_stored_before_member_numbers_reads_back_without_them() -> None:
    document = NUMBERED.to_document()
    for group in document["groups"]:
        del group["targets"], group["outside"]
    (group,) = StoredPlan.from_document(document).groups
    assert group.numbers is None  # the guard looks its members up by id


@pytest.mark.parametrize(
    ("targets", "outside"),
    [([1, 5], ["nas-9"]), ([1], ["nas-9"]), ([-1, 4], ["nas-9"]), ([4, 1], ["nas-9"])],
    ids=["beyond the targets", "fewer than the members", "negative", "descending"],
)
def test_member_numbers_that_cannot_be_the_members_are_a_plan_that_cannot_be_read(
    targets: list[int], outside: list[str]
) -> None:
    document = NUMBERED.to_document()
    document["groups"][0].update(targets=targets, outside=outside)
    with pytest.raises(ConflictError, match="r-000007 has a stored plan that cannot be read"):
        StoredPlan.from_document(document, rollout_id="r-000007")
