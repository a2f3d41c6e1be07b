"""``ringfence demo``: the tour a newcomer sees first, on the bundled sample estate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from ringfence.cli.main import app
from ringfence.cli.output import out


@app.command(rich_help_panel="Start here")
def demo(
    report: Annotated[Path, typer.Option(help="Where to write the drill report (HTML).")] = Path(
        "ringfence-demo-report.html"
    ),
) -> None:
    """Tour the bundled sample estate: check it, show its biggest risks, replay the known incidents."""
    from ringfence.cli import analysis
    from ringfence.files.disk import sample_estate_path

    estate = sample_estate_path()
    out.print(Rule(f"1. Check the sample estate ({estate.parent.name})"))
    analysis.check(estate, as_json=False, strict=False)
    out.print(Rule("2. Top single points of failure (tier 1 and 2 services)"))
    analysis.spof(estate, tier=2, as_json=False, limit=10)
    out.print(Rule("3. Supplier concentration"))
    analysis.concentration(estate, as_json=False)
    _drills(estate, report)
    out.print(Rule("7. Incident: advanced-2022 — a supplier behind NHS 111 and care records is lost"))
    from ringfence.cli.incidents import demo_incident

    demo_incident(estate, estate.parent / "incidents" / "advanced-2022.yaml")


def _drills(estate: Path, report: Path) -> None:
    """Replay every bundled incident drill on the sample estate and write one report."""
    from ringfence.cli.drills import demo_drills

    demo_drills(estate, sorted((estate.parent / "scenarios").glob("*.yaml")), report)
