"""``/v1/drills``: replay a faulty release on a stored estate, once per strategy, in simulated time.

Nothing is stored and nothing real is touched: a drill is the same controller on the simulated driver.
The answer is the ``ringfence drill --json`` document.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter

from ringfence.api.deps import EngineDep, Viewer
from ringfence.api.routes.estates import Compiled
from ringfence.api.schemas import BundledScenario, DrillDocument, DrillRequest, ScenarioList
from ringfence.core.errors import NotFoundError
from ringfence.core.update import DrillScenario, parse_scenario_text
from ringfence.files.disk import examples_dir, read_text

router = APIRouter(prefix="/v1/drills", tags=["drills"])

SCENARIO_SOURCE = "scenario"
"""How a scenario sent as text is named in problems (``scenario:7: fault.after: …``)."""


@lru_cache(maxsize=1)
def bundled_scenarios() -> tuple[tuple[Path, str, DrillScenario], ...]:
    """The drill scenarios shipped with ringfence (``examples/*/scenarios/*.yaml``), by scenario id."""
    found = []
    for path in sorted(examples_dir().glob("*/scenarios/*.yaml")):
        text = read_text(path)
        found.append((path, text, parse_scenario_text(text, str(path))))
    return tuple(sorted(found, key=lambda item: item[2].scenario))


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
    from ringfence.core.drills import drill_document, run_drill_text
    from ringfence.core.rollout.strategy import STRATEGIES

    if body.scenario is not None:
        text, source = body.scenario, SCENARIO_SOURCE
    else:
        text, source = bundled_scenario_text(body.bundled or "")
    graph = cache.get(engine, body.estate, body.version).graph
    strategies = tuple(body.strategies) if body.strategies else STRATEGIES
    # A fault that reaches none of this estate's targets is refused (422) at the scenario's fault.affects line.
    return DrillDocument.model_validate(drill_document(run_drill_text(graph, text, source, strategies)))


def bundled_scenario_text(scenario_id: str) -> tuple[str, str]:
    """A bundled scenario's text and its name in problems (``city-general/scenarios/vsphere-7u3.yaml``)."""
    for path, text, scenario in bundled_scenarios():
        if scenario.scenario == scenario_id:
            return text, path.relative_to(examples_dir()).as_posix()
    known = ", ".join(s.scenario for _, _, s in bundled_scenarios()) or "none"
    raise NotFoundError(f"there is no bundled drill scenario {scenario_id!r}; the bundled ones are: {known}")
