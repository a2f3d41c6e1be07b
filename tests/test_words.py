"""The small shared pieces: sentence helpers (core.words), the wall clock (core.clock), the atomic file writer
(files.disk) and the one Jinja environment (files.templating)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from ringfence.core.clock import utc_now
from ringfence.core.words import and_list, count, names
from ringfence.files.disk import write_bytes_atomic, write_text_atomic
from ringfence.files.templating import COMMON_FILTERS, printed_time, template_environment


@pytest.mark.parametrize(
    ("n", "noun", "plural", "said"),
    [
        (1, "service", None, "1 service"),
        (0, "service", None, "0 services"),
        (2, "failed ring", None, "2 failed rings"),
        (1204, "asset", None, "1,204 assets"),
        (3, "stratum", None, "3 strata"),
        (2, "more stratum", None, "2 more strata"),
        (1, "stratum", None, "1 stratum"),
        (2, "person", "people", "2 people"),
    ],
)
def test_count_says_the_number_and_the_noun_in_agreement(n: int, noun: str, plural: str | None, said: str) -> None:
    assert count(n, noun, plural) == said


def test_names_lists_the_first_few_and_counts_the_rest() -> None:
    assert names([]) == ""
    assert names(["a"]) == "a"
    assert names(["a", "b", "c", "d", "e"]) == "a, b, c, d, e"
    assert names(["a", "b", "c", "d", "e", "f", "g"]) == "a, b, c, d, e and 2 more"
    assert names(iter(["x", "y", "z"]), limit=2) == "x, y and 1 more"


def test_and_list_joins_every_part_as_a_sentence_does() -> None:
    assert and_list([]) == ""
    assert and_list(["a"]) == "a"
    assert and_list(["a", "b"]) == "a and b"
    assert and_list(["a", "b", "c"]) == "a, b and c"


def test_the_wall_clock_is_aware_utc() -> None:
    now = utc_now()
    assert now.tzinfo is UTC
    assert abs((datetime.now(UTC) - now).total_seconds()) < 60


def test_the_atomic_writer_leaves_the_whole_file_and_no_scratch(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "pack.pdf"
    write_bytes_atomic(target, b"%PDF-1.4 first")
    write_bytes_atomic(target, b"%PDF-1.4 second")
    write_text_atomic(tmp_path / "sheet.html", "<p>é</p>\n")
    assert target.read_bytes() == b"%PDF-1.4 second"
    assert (tmp_path / "sheet.html").read_bytes() == "<p>é</p>\n".encode()
    assert sorted(p.name for p in target.parent.iterdir()) == ["pack.pdf"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    write_text_atomic(target, "old")
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_every_environment_escapes_html_refuses_unknown_names_and_has_the_common_filters() -> None:
    env = template_environment()
    assert set(COMMON_FILTERS) <= set(env.filters)
    shown = env.from_string("{{ name }} {{ n | thousands }} {{ s | duration }} {{ none | duration }}").render(
        name="<b>", n=1204, s=7500, none=None
    )
    assert shown == "&lt;b&gt; 1,204 2h 5m —"
    with pytest.raises(UndefinedError, match="'missing' is undefined"):
        env.from_string("{{ missing }}").render()
    markdown = template_environment(html=False, filters={"shout": str.upper})
    assert markdown.from_string("{{ name | shout }}").render(name="<b>") == "<B>"


def test_printed_time_names_the_zone_when_there_is_one() -> None:
    assert printed_time(datetime(2022, 8, 4, 9, 30, tzinfo=UTC)) == "04 August 2022, 09:30 UTC"
    assert printed_time(datetime(2022, 8, 4, 9, 30)) == "04 August 2022, 09:30"
