"""The drill scenarios shipped with ringfence, read once: what ``/v1/drills`` and the dashboard's drill page
both offer.

The scenarios live with the examples (``examples/*/scenarios/*.yaml``), installed with the package; they
never change while the process runs, so they are read and parsed once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ringfence.core.errors import NotFoundError
from ringfence.core.update import DrillScenario, parse_scenario_text
from ringfence.files.disk import examples_dir, read_text


@lru_cache(maxsize=1)
def bundled_scenarios() -> tuple[tuple[Path, str, DrillScenario], ...]:
    """The drill scenarios shipped with ringfence (``examples/*/scenarios/*.yaml``), by scenario id."""
    found = []
    for path in sorted(examples_dir().glob("*/scenarios/*.yaml")):
        text = read_text(path)
        found.append((path, text, parse_scenario_text(text, str(path))))
    return tuple(sorted(found, key=lambda item: item[2].scenario))


def scenario_ids() -> tuple[str, ...]:
    """The bundled drill scenarios, by id, in order."""
    return tuple(scenario.scenario for _, _, scenario in bundled_scenarios())


def bundled_scenario_text(scenario_id: str) -> tuple[str, str]:
    """A bundled scenario's text and its name in problems (``city-general/scenarios/vsphere-7u3.yaml``)."""
    for path, text, scenario in bundled_scenarios():
        if scenario.scenario == scenario_id:
            return text, path.relative_to(examples_dir()).as_posix()
    known = ", ".join(scenario_ids()) or "none"
    raise NotFoundError(f"there is no bundled drill scenario {scenario_id!r}; the bundled ones are: {known}")


__all__ = ["bundled_scenario_text", "bundled_scenarios", "scenario_ids"]
