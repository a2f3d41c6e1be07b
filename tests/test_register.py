"""The register of ICT third-party arrangements (``assess --register``), row by row against a brute force written
here from docs/assurance-format.md: ids and Python sets, the blast radius and shares from ``oracle``, "supports"
by a plain walk up what needs what, the latest assessment of each kind by sorting."""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import oracle
from ringfence.core.assurance import Assurance, parse_assurance_text
from ringfence.core.estate import Estate, parse_estate_document, parse_estate_text
from ringfence.core.graph import compile_estate
from ringfence.files.register import COLUMNS, arrangements, render_register_csv
from test_assurance_properties import AS_OF, PROPERTY, assurance_documents
from test_recovery_properties import estate_documents

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "src" / "ringfence" / "examples" / "city-general"


def brute_force_rows(estate: Estate, assurance: dict[str, Any], as_of: date) -> list[list[str]]:
    rules = oracle.rules_of(estate)
    needs: dict[str, set[str]] = {n.id: set(rules.hard[n.id]) for n in oracle.nodes(estate)}
    for node_id, groups in rules.groups.items():
        for group in groups:
            needs[node_id] |= group.members
    tiers = {s.id: s.tier for s in estate.services}
    present = sorted(set(tiers.values()))
    evidence = {s["id"]: s for s in assurance["suppliers"]}
    rows = []
    for supplier, down in oracle.supplier_concentration(estate).items():
        supplied = oracle.failed_by(estate, f"supplier:{supplier}")
        supported = []
        for service in tiers:
            # A breadth-first walk down what the service needs, hard and every group member.
            seen, frontier = {service}, [service]
            while frontier:
                frontier = [n for f in frontier for n in needs[f] if n not in seen]
                seen.update(frontier)
            if seen & supplied:
                supported.append(service)
        entry = evidence.get(supplier, {})
        latest: dict[str, dict[str, Any]] = {}
        for a in entry.get("assessments", []):
            if date.fromisoformat(a["date"]) > as_of:
                continue
            key = (a["date"], a.get("expires", "9999-99-99"), a["result"] == "met")
            known = latest.get(a["kind"])
            if known is None or key > (known["date"], known.get("expires", "9999-99-99"), known["result"] == "met"):
                latest[a["kind"]] = a
        shares = oracle.share_by_tier(estate, down)
        rows.append(
            [
                supplier,
                estate.supplier_by_id[supplier].label,
                " ".join(sorted(supported)),
                str(min(tiers[s] for s in supported)) if supported else "",
                "; ".join(f"{k}:{a['result']}:{a.get('expires', 'none')}" for k, a in sorted(latest.items())),
                "yes" if entry.get("exit-plan") else "no",
                *(f"{shares[t]:.4f}" if t in present else "" for t in (1, 2, 3, 4)),
                " ".join(sorted(down)),
            ]
        )
    return rows


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@PROPERTY
@given(data=st.data(), doc=estate_documents())
def test_every_row_is_what_a_brute_force_finds(data: st.DataObject, doc: dict[str, Any]) -> None:
    estate = parse_estate_document(doc, source="<hypothesis>")
    raw = data.draw(assurance_documents(estate))
    assurance = Assurance.model_validate(raw)
    text = render_register_csv(arrangements(compile_estate(estate), assurance, AS_OF))
    rows = read_csv(text)
    assert tuple(rows[0]) == COLUMNS
    assert rows[1:] == brute_force_rows(estate, raw, AS_OF)
    assert text.endswith("\r\n")


HOSTILE = """\
apiVersion: ringfence/v1
estate: hostile
suppliers:
  - {id: evil, name: "=HYPERLINK(\\"http://x\\",\\"click\\"), \\"quoted\\"\\nnext line"}
services:
  - {id: lab, tier: 1, requires: [app]}
assets:
  - {id: app, kind: vm, supplier: evil}
"""


def test_a_cell_is_never_a_formula_and_quotes_and_new_lines_survive() -> None:
    estate = parse_estate_text(HOSTILE, "hostile.yaml")
    assurance = parse_assurance_text("apiVersion: ringfence/v1\nassurance: a\n", estate, "a.yaml")
    rows = read_csv(render_register_csv(arrangements(compile_estate(estate), assurance, AS_OF)))
    assert rows[1][:6] == ["evil", "'" + estate.supplier_by_id["evil"].label, "lab", "1", "", "no"]
    assert rows[1][6] == "1.0000"


def test_the_assess_command_writes_the_register(tmp_path: Path) -> None:
    from cli.conftest import run_cli  # the suite's one way of running the console script

    out = tmp_path / "out" / "register.csv"
    result = run_cli("assess", SAMPLE_DIR / "estate.yaml", "--as-of", "2026-06-15", "--register", out, "--json")
    assert result.returncode == 1, result.stderr  # the sample breaches its policy; the register is still written
    rows = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in read_csv(out.read_text(encoding="utf-8"))[1:]}
    estate = parse_estate_text((SAMPLE_DIR / "estate.yaml").read_text(), "estate.yaml")
    assert sorted(rows) == sorted(s.id for s in estate.suppliers)
    # The sample's supplier without an exit plan says so.
    assert any(r["exit plan"] == "no" for r in rows.values())
    # An output path that cannot be written is refused in one sentence, exit 2, before any work.
    refused = run_cli("assess", SAMPLE_DIR / "estate.yaml", "--register", tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "--register" in refused.stderr
