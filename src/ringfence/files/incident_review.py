"""The post-incident review as a document: one self-contained HTML page, or Markdown for a ticket.

The review itself (what was down, for how long, which RTOs were met) is :func:`ringfence.core.
incident_review.review_incident`'s; this module only renders it, from ``templates/incident_review.{html,md}.j2``.
"""

from __future__ import annotations

import re
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
    # HTML: every value is text, never markup (autoescaped). Markdown: every value from a person or a file goes
    # through `md` (text) or `code` (an id), so the document renders to no element its author did not write.
    return template_environment(html=html, filters={"when": _when, "md": markdown_text, "code": markdown_code})


def _when(at: datetime | None) -> str:
    if at is None:
        return "—"
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


# Every ASCII character CommonMark or GitHub's tables give a meaning to inside a line: emphasis, code, links and
# images, raw HTML and entities, table cells, strikethrough, a heading's closing hashes. Each is backslash-escaped,
# which CommonMark defines for any ASCII punctuation, so the reader sees the character and no renderer sees markup.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>&|~!#])")
# What starts a block (list, heading, quote, thematic break, setext underline) when it opens a line: a value that
# opens a line (the summary after "> ") must not turn into one.
_BLOCK_START = re.compile(r"^([-+=]|\d+[.)])")
# An id shown as code must be made of these alone: no backtick could end the code span and no pipe split a cell.
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:/@+=-]+$")


def markdown_text(value: object) -> str:
    """``value`` as Markdown text that renders to exactly that text, on one line, safe inside a table cell.

    Line breaks collapse to spaces (a value cannot start a block or end a table row); markup characters are
    escaped, including ``<`` and ``&`` so raw HTML and entities are text.
    """
    text = _INLINE_MARKUP.sub(r"\\\1", " ".join(str(value).split()))
    return _BLOCK_START.sub(lambda m: m.group(1)[:-1] + "\\" + m.group(1)[-1], text)


def markdown_code(value: object) -> str:
    """An id as a code span, when it is plain enough to be one; any other value as escaped text.

    Inside a code span backslash escapes do not apply, so a backtick in the value would close the span and
    what follows would be Markdown again: such a value is shown as text (:func:`markdown_text`) instead.
    """
    text = str(value)
    return f"`{text}`" if _PLAIN_ID.match(text) else markdown_text(text)


__all__ = [
    "REVIEW_HTML_TEMPLATE",
    "REVIEW_MARKDOWN_TEMPLATE",
    "markdown_code",
    "markdown_text",
    "render_review_html",
    "render_review_markdown",
]
