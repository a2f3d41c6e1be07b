"""``/v1/drills``: replay a faulty release on a stored estate, once per strategy, in simulated time.

Nothing is stored and nothing real is touched: a drill is the same controller on the simulated driver.
The answer is the ``ringfence drill --json`` document.
"""

from __future__ import annotations

from fastapi import APIRouter

from ringfence.api.deps import Compiled, EngineDep, Viewer
from ringfence.api.schemas import BundledScenario, DrillRequest, ScenarioList
from ringfence.core.documents import DrillDocument, drill_document
from ringfence.files.disk import examples_dir
from ringfence.service.drills import bundled_scenario_text, bundled_scenarios

router = APIRouter(prefix="/v1/drills", tags=["drills"])

SCENARIO_SOURCE = "scenario"
"""How a scenario sent as text is named in problems (``scenario:7: fault.after: …``)."""


@router.get("/scenarios", response_model=ScenarioList, summary="The bundled drill scenarios")
def list_scenarios(caller: Viewer) -> ScenarioList:
    root = examples_dir()
    return ScenarioList(
        scenarios=[
            BundledScenario(
                id=scenario.scenario,
                file=path.relative_to(root).as_posix(),
                description=scenario.description.strip() if scenario.description else None,
                release=scenario.update.release,
                content=text,
            )
            for path, text, scenario in bundled_scenarios()
        ]
    )


@router.post("", response_model=DrillDocument, summary="Run a drill")
def run_drill(body: DrillRequest, caller: Viewer, engine: EngineDep, cache: Compiled) -> DrillDocument:
    """Play the scenario (its text, or a bundled one by id) with each strategy and compare what it would cost."""
    from ringfence.core.drills import run_drill_text
    from ringfence.core.rollout.strategy import STRATEGIES

    if body.scenario is not None:
        text, source = body.scenario, SCENARIO_SOURCE
    else:
        text, source = bundled_scenario_text(body.bundled or "")
    graph = cache.get(engine, body.estate, body.version).graph
    strategies = tuple(body.strategies) if body.strategies else STRATEGIES
    # A fault that reaches none of this estate's targets is refused (422) at the scenario's fault.affects line.
    return drill_document(run_drill_text(graph, text, source, strategies))
