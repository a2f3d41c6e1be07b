"""The post-incident review as a document: one self-contained HTML page, or Markdown for a ticket.

The review itself (what was down, for how long, which RTOs were met) is :func:`ringfence.core.
incident_review.review_incident`'s; this module only renders it, from ``templates/incident_review.{html,md}.j2``.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache

from jinja2 import Environment

from ringfence.core.estate import TIER_NAMES
from ringfence.core.incident_review import IncidentReview
from ringfence.files.templating import template_environment

REVIEW_HTML_TEMPLATE = "incident_review.html.j2"
REVIEW_MARKDOWN_TEMPLATE = "incident_review.md.j2"


def render_review_html(review: IncidentReview) -> str:
    """The post-incident review as one self-contained HTML page (inline CSS, nothing fetched, prints on A4)."""
    return _environment(html=True).get_template(REVIEW_HTML_TEMPLATE).render(**_review_context(review))


def render_review_markdown(review: IncidentReview) -> str:
    """The post-incident review as Markdown, for the incident file or a ticket."""
    return _environment(html=False).get_template(REVIEW_MARKDOWN_TEMPLATE).render(**_review_context(review))


def _review_context(review: IncidentReview) -> dict[str, object]:
    return {
        "review": review,
        "incident": review.incident,
        "tier_names": TIER_NAMES,
    }


@cache
def _environment(*, html: bool) -> Environment:
    # HTML: every value is text, never markup (autoescaped). Markdown: cells are escaped by the `md` filter.
    return template_environment(html=html, filters={"when": _when, "md": _markdown_cell})


def _when(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def _markdown_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: no line breaks, pipes and markup characters escaped."""
    text = " ".join(str(value).split())
    for char in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        text = text.replace(char, "\\" + char)
    return text


__all__ = ["REVIEW_HTML_TEMPLATE", "REVIEW_MARKDOWN_TEMPLATE", "render_review_html", "render_review_markdown"]
