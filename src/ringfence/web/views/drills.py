"""The drill page: a bundled scenario replayed on an estate, laid out with the drill report's own pieces."""

from __future__ import annotations

from dataclasses import dataclass

from ringfence.core.drills import DrillReport, run_drill_text
from ringfence.core.impact import TIERS
from ringfence.files.report import DrillView, drill_view
from ringfence.service.drills import bundled_scenario_text
from ringfence.service.estates import LoadedEstate
from ringfence.web.views.shared import Recent, Tier, tier


@dataclass(frozen=True)
class DrillPage:
    estate: str
    estate_version: int
    view: DrillView
    tiers: tuple[Tier, ...]


_DRILLS: Recent[tuple[str, str], DrillReport] = Recent(8)


def drill_page(loaded: LoadedEstate, scenario_id: str) -> DrillPage:
    """Replay bundled scenario ``scenario_id`` on the estate, laid out with the drill report's own pieces.

    A scenario whose fault reaches none of this estate's targets is refused with the API's sentence."""
    text, source = bundled_scenario_text(scenario_id)
    # A drill is a simulation with a fixed seed: one estate version and one scenario always give one report.
    report = _DRILLS.get((loaded.version.sha256, scenario_id), lambda: run_drill_text(loaded.graph, text, source))
    return DrillPage(loaded.version.name, loaded.version.id, drill_view(0, report), tuple(tier(t) for t in TIERS))
