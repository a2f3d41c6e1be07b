"""How the rollout page names rings, from whatever a stored plan says about its canary phase."""

from __future__ import annotations

import pytest

from ringfence.web.views.rollouts import ring_names


@pytest.mark.parametrize(
    ("plan", "names"),
    [
        # Plans that count their canary waves.
        ({"rings": [["a"], ["b"], ["c"]], "canary_rings": 1}, ["canary", "ring 1", "ring 2"]),
        ({"rings": [["a"], ["b"], ["c"], ["d"]], "canary_rings": 2}, ["canary", "canary wave 2", "ring 2", "ring 3"]),
        ({"rings": [["a"], ["b"]], "canary_rings": 0}, ["ring 0", "ring 1"]),
        # Plans that mark each canary ring; only the leading ones are the canary phase.
        (
            {"rings": [{"assets": ["a"], "canary": True}, {"assets": ["b"], "canary": True}, {"assets": ["c"]}]},
            ["canary", "canary wave 2", "ring 2"],
        ),
        ({"rings": [{"canary": False}, {"canary": True}]}, ["ring 0", "ring 1"]),
        # Plans that say nothing, or nonsense: numbers, never a guess.
        ({"rings": [["a"], ["b"]]}, ["ring 0", "ring 1"]),
        ({"rings": [["a"], ["b"]], "canary_rings": True}, ["ring 0", "ring 1"]),
        ({"rings": [["a"], ["b"]], "canary_rings": "2"}, ["ring 0", "ring 1"]),
        ({"rings": "oops"}, ["ring 0", "ring 1"]),
        ({}, ["ring 0", "ring 1"]),
    ],
)
def test_ring_names(plan: dict[str, object], names: list[str]) -> None:
    assert ring_names(plan, len(names)) == names
