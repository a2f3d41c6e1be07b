"""The register of ICT third-party arrangements: one CSV row per supplier, in the spirit of DORA's register of
information.

A row says what the trust relies on the supplier for and what it knows of it:

* ``services supported``: every service that requires, directly or not, an asset the supplier supplies (as
  ``assess`` holds suppliers to a tier: :func:`ringfence.core.assurance.supported_services`) — redundancy does
  not take a service off the list;
* ``highest criticality``: the most critical tier among them (empty: it supports no service);
* ``assessments``: the latest assessment of each kind as of the day, ``kind:result:expiry`` (``none``: no
  expiry), joined by ``; `` (:func:`ringfence.core.assurance.latest_assessments`);
* ``exit plan``: ``yes`` or ``no``;
* ``share tier N``: the share of tier N's services its loss alone takes down
  (:func:`ringfence.core.impact.supplier_concentration`), a fraction to four places; empty when the estate has
  no tier-N service.

Cells are text from the estate and the assurance file: one starting with ``=``, ``+``, ``-``, ``@`` or a tab
would be read as a formula by a spreadsheet, so it is written after a ``'`` (OWASP's advice on CSV injection).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

from ringfence.core.assurance import Assurance, latest_assessments, supported_services
from ringfence.core.clinical import TIERS
from ringfence.core.graph import EstateGraph
from ringfence.core.impact import supplier_concentration

COLUMNS = (
    "supplier",
    "name",
    "services supported",
    "highest criticality",
    "assessments",
    "exit plan",
    *(f"share tier {t}" for t in TIERS),
    "services its loss takes down",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Arrangement:
    """One supplier arrangement: a row of the register."""

    supplier: str
    name: str
    services: tuple[str, ...]
    """Services supported, sorted by id."""
    tier: int | None
    """The most critical tier among ``services``; ``None`` when it supports none."""
    assessments: tuple[tuple[str, str, date | None], ...]
    """(kind, result, expiry) of the latest assessment of each kind, by kind."""
    has_exit_plan: bool
    share_by_tier: dict[int, float]
    services_down: tuple[str, ...]
    """What its loss alone takes down, sorted by id."""


def arrangements(graph: EstateGraph, assurance: Assurance, as_of: date) -> tuple[Arrangement, ...]:
    """Every supplier of the estate (declared or only named by an asset), sorted by id."""
    estate = graph.estate
    evidence = assurance.supplier_by_id
    rows = []
    for concentration in supplier_concentration(graph):
        supplier = estate.supplier_by_id[concentration.id]
        nodes = graph.resolve_failure(f"supplier:{supplier.id}").nodes
        supported = supported_services(graph, nodes)
        tiers = graph.service_tier[supported]
        held = latest_assessments(evidence.get(supplier.id), as_of)
        rows.append(
            Arrangement(
                supplier=supplier.id,
                name=supplier.label,
                services=tuple(sorted(graph.ids[i] for i in supported.tolist())),
                tier=int(tiers.min()) if tiers.size else None,
                assessments=tuple((str(k), str(a.result), a.expires) for k, a in sorted(held.items())),
                has_exit_plan=supplier.id in evidence and evidence[supplier.id].exit_plan is not None,
                share_by_tier=concentration.share_by_tier,
                services_down=tuple(sorted(s.id for s in concentration.services_down)),
            )
        )
    return tuple(rows)


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def render_register_csv(rows: tuple[Arrangement, ...]) -> str:
    """The register as CSV text (RFC 4180 quoting, ``\\r\\n`` line ends, a header row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        shares = [f"{row.share_by_tier[t]:.4f}" if t in row.share_by_tier else "" for t in TIERS]
        assessments = "; ".join(f"{k}:{r}:{e.isoformat() if e else 'none'}" for k, r, e in row.assessments)
        cells = [
            row.supplier,
            row.name,
            " ".join(row.services),
            "" if row.tier is None else str(row.tier),
            assessments,
            "yes" if row.has_exit_plan else "no",
            *shares,
            " ".join(row.services_down),
        ]
        writer.writerow([_cell(c) for c in cells])
    return buffer.getvalue()


__all__ = ["COLUMNS", "Arrangement", "arrangements", "render_register_csv"]
