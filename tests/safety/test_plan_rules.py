"""Rules 1–5 on estates built to make coverage and redundancy collide (see ``strategies.py``).

The rings come from the real strategy (``plan_strategy("ringfence", …)``, what a rollout stores); the referee
(``checker.plan_violations``) reads groups, tiers and strata from the estate document through the oracle alone.
"""

from __future__ import annotations

from hypothesis import event, given, seed

from ringfence.core.estate import parse_estate_document
from ringfence.core.graph import compile_estate
from ringfence.core.planner import plan_rings
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.update import Update

from .checker import Facts, plan_violations
from .conftest import SEED, hunt
from .strategies import EstateCase, adversarial_estates


@seed(SEED)
@hunt(2000)
@given(adversarial_estates(max_targets=12))
def test_every_plan_holds_rules_1_to_5_however_the_rules_collide(case: EstateCase) -> None:
    graph = compile_estate(parse_estate_document(case.document))
    update = Update.model_validate(case.update)
    plan = plan_rings(graph, update)
    stored = plan_strategy("ringfence", graph, update)
    facts = Facts.read(case.document, case.update)
    problems = plan_violations(facts, stored.rings, stored.canary_rings, plan.warnings)
    assert not problems, "\n".join(problems)
    # What the rollout stores is what was planned: the same rings, canary phase and groups.
    assert stored.rings == tuple(r.assets for r in plan.rings)
    assert stored.canary_rings == plan.canary_rings
    assert all(r.canary for r in plan.rings[: plan.canary_rings])
    assert not any(r.canary for r in plan.rings[plan.canary_rings :])
    with_slack = {(g.k, g.members) for g in facts.groups}
    assert {(g.k, frozenset(g.members)) for g in stored.groups} == with_slack
    event(f"{plan.canary_rings} canary wave(s)")
    if any(g.exempt for g in facts.groups):
        event("a group without slack")
