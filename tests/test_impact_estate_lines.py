"""Problems get their lines only when shown, and finding them reads no more of the text than it must.

``parse_estate_text`` leaves warnings without lines (``impact`` never shows them, and on a large estate with a
warning per service, locating them all once cost 28 times the read of the file); ``locate_problems`` gives the
lines of the problems it is handed. Its answers are held against a reference that composes the whole text with
PyYAML's node tree (what it did before), on YAML and on JSON written in several ways.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from ringfence.core.errors import EstateError, Problem
from ringfence.core.estate import locate_problems, parse_estate_text
from ringfence.core.generate import generate_estate
from ringfence.files.disk import dump_document

FieldPath = tuple[str | int, ...]


@functools.cache
def composed(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.CSafeLoader)


def reference_line(text: str, path: FieldPath) -> int | None:
    """The line of ``path`` (of its deepest part the text holds) from the whole composed node tree."""
    node = composed(text)
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                return line
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def paths_in(data: Any, prefix: FieldPath = ()) -> Iterator[FieldPath]:
    if prefix:
        yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from paths_in(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from paths_in(value, (*prefix, i))


DOCUMENT = json.loads(json.dumps(generate_estate(400, seed=3)))
WRITERS: dict[str, Callable[[Any], str]] = {
    "yaml": lambda d: dump_document(d, "estate.yaml"),
    "json, indented": lambda d: json.dumps(d, indent=2),
    "json, odd spacing": lambda d: json.dumps(d, indent="\t", separators=(" ,\n", " :\n ")),
    "json, leading blank lines": lambda d: "\n\n" + json.dumps(d, indent=1),
}
WRITINGS = {name: write(DOCUMENT) for name, write in WRITERS.items()}


@pytest.mark.parametrize("writing", sorted(WRITINGS))
def test_lines_equal_those_of_the_composed_node_tree(writing: str) -> None:
    text = WRITINGS[writing]
    every = list(paths_in(DOCUMENT))
    sample = random.Random(writing).sample(every, 200)
    # Paths the text holds only in part get the line of their deepest part, as before.
    sample += [("assets", 10**6), ("no-such-key",), ("services", 2, "nope", 3), ("assets", 5, "requires", 99)]
    located = locate_problems([Problem("p", path) for path in sample], text)
    assert [(p.path, p.line) for p in located] == [(path, reference_line(text, path)) for path in sample]


def test_json_on_one_line_puts_every_problem_on_line_1_without_reading_it() -> None:
    # The text breaks off after its first key: a reader would fail; one line needs no reading.
    text = json.dumps(DOCUMENT)[:40]
    located = locate_problems([Problem("p", ("assets", 399, "id")), Problem("q", ("services", 0))], text)
    assert [p.line for p in located] == [1, 1]


@pytest.mark.parametrize("writing", ["yaml", "json, indented"])
def test_the_text_after_the_last_path_looked_for_is_not_read(writing: str) -> None:
    text = WRITINGS[writing]
    # Break the text off well after services[3], into something no parser takes: its line is found all the same.
    broken = text[: text.index('"assets"' if writing != "yaml" else "\nassets:") + 30] + "\n]]] {{ :: [ - !!"
    with pytest.raises((ValueError, yaml.YAMLError)):
        (json.loads if writing != "yaml" else yaml.safe_load)(broken)
    [found] = locate_problems([Problem("p", ("services", 3, "tier"))], broken)
    assert found.line == reference_line(text, ("services", 3, "tier"))


def test_problems_already_located_or_without_a_path_are_kept_as_they_are() -> None:
    problems = [Problem("a", ("services", 0), line=99), Problem("b"), Problem("c", ("services", 0))]
    located = locate_problems(problems, WRITINGS["yaml"])
    assert located[:2] == problems[:2]
    assert located[2].line == reference_line(WRITINGS["yaml"], ("services", 0))


def test_parsing_leaves_warnings_unlocated_until_they_are_shown() -> None:
    no_rto = {**DOCUMENT, "services": [{k: v for k, v in s.items() if k != "rto"} for s in DOCUMENT["services"]]}
    text = json.dumps(no_rto, indent=2)
    estate = parse_estate_text(text, "estate.json")
    assert len(estate.warnings) == len(DOCUMENT["services"])
    assert all(w.line is None for w in estate.warnings)
    shown = locate_problems(estate.warnings, text)
    assert [w.line for w in shown] == [reference_line(text, w.path) for w in estate.warnings]
    assert str(shown[0]).startswith(f"estate.json:{shown[0].line}: services[0]: service '")


@pytest.mark.parametrize("writing", sorted(WRITINGS))
def test_errors_are_located_as_they_are_raised(writing: str) -> None:
    broken = json.loads(json.dumps(DOCUMENT))
    broken["assets"][7]["kind"] = "toaster"
    broken["assets"][300]["kind"] = "blender"
    text = WRITERS[writing](broken)
    with pytest.raises(EstateError) as raised:
        parse_estate_text(text, "estate")
    lines = {p.path: p.line for p in raised.value.problems}
    assert lines == {path: reference_line(text, path) for path in lines}
    assert set(lines) == {("assets", 7, "kind"), ("assets", 300, "kind")}
