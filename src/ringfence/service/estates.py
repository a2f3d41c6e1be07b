"""Estate use cases: check an uploaded estate, keep it as a new version, list and read versions back.

Versions are kept, so a bad upload never replaces the last good estate: the text is checked completely
(parsed, every reference resolved, the graph compiled) before anything is written, and a text that fails
stores nothing. The current version of an estate is its newest one. The same text uploaded again is the
version already stored (versions are deduplicated by SHA-256): it does not become current again, so to
work on an older estate name its version (``?version=`` in the API).

:class:`CompiledEstates` keeps the compiled graphs of the last few versions in memory: a version never
changes once stored, so a compiled graph stays right for as long as the process lives.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from ringfence.core.errors import EstateError, NotFoundError, Problem
from ringfence.core.estate import Estate, locate_problems, parse_estate_text
from ringfence.core.graph import EstateGraph, compile_estate
from ringfence.files.disk import read_text, sample_estate_path
from ringfence.store.db import session_scope
from ringfence.store.estates import add_estate_version, get_estate_version, latest_estate_version, list_estate_versions
from ringfence.store.records import EstateFormat, EstateVersion

SAMPLE_ACTOR = "ringfence (sample estate)"
"""Who the audit log says loaded the bundled sample estate."""


@dataclass(frozen=True)
class CheckedEstate:
    """An estate text that holds: the estate, its compiled graph, its warnings (with lines) and its format."""

    estate: Estate
    graph: EstateGraph
    warnings: tuple[Problem, ...]
    format: EstateFormat


@dataclass(frozen=True)
class StoredEstate:
    """An uploaded estate as kept: its version (``created`` False when the same text was already there)."""

    version: EstateVersion
    checked: CheckedEstate
    created: bool


@dataclass(frozen=True)
class EstateSummary:
    """One estate name: its current (newest) version and how many versions it has."""

    name: str
    latest: EstateVersion
    versions: int


@dataclass(frozen=True)
class LoadedEstate:
    """A stored version, parsed and compiled."""

    version: EstateVersion
    checked: CheckedEstate

    @property
    def estate(self) -> Estate:
        return self.checked.estate

    @property
    def graph(self) -> EstateGraph:
        return self.checked.graph


def detect_format(text: str) -> EstateFormat:
    """JSON when the text starts with an object or a list (as the loader decides), else YAML."""
    return EstateFormat.JSON if text.lstrip().startswith(("{", "[")) else EstateFormat.YAML


def check_estate_text(
    text: str,
    *,
    source: str,
    name: str | None = None,
    format: EstateFormat | str | None = None,
) -> CheckedEstate:
    """Parse, validate and compile ``text``; :class:`EstateError` with every problem located otherwise.

    ``name``, when given, must be the name the text itself declares (``estate:``); ``format``, when given,
    must be the one the text is written in.
    """
    found = detect_format(text)
    if format is not None and EstateFormat(format) is not found:
        if found is EstateFormat.YAML:
            # The loader would read JSON-looking YAML as YAML; say plainly that the text is not JSON.
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise EstateError(
                    [Problem(f"format is json but the content is not JSON: {exc.msg}", source=source, line=exc.lineno)]
                ) from None
        raise EstateError(
            [Problem(f"format is {EstateFormat(format)} but the content is {found}", path=("format",), source=source)]
        )
    estate = parse_estate_text(text, source)
    graph = compile_estate(estate)
    if name is not None and name != estate.name:
        raise EstateError(
            [
                Problem(
                    f"the upload is named '{name}' but its content declares estate '{estate.name}'; "
                    "an estate is stored under the name it declares",
                    path=("name",),
                    source=source,
                )
            ]
        )
    # Warnings come without lines; the upload shows every one, so find the lines of the estate's and the graph's
    # (a where-group that matches too little) in one pass over the text.
    warnings = locate_problems([*estate.warnings, *graph.warnings], text)
    return CheckedEstate(estate, graph, tuple(warnings), found)


def decode_estate_bytes(raw: bytes, *, source: str) -> str:
    """An uploaded file's bytes as text (UTF-8, a leading byte-order mark allowed), as ``read_text`` reads a
    file from disk; an :class:`EstateError` naming the file and the first byte that is not UTF-8 otherwise."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EstateError([Problem(f"is not UTF-8 text (byte {exc.start})", source=source)]) from None


def upload_estate(
    engine: Engine,
    text: str,
    *,
    actor: str,
    at: datetime,
    source: str = "body",
    name: str | None = None,
    format: EstateFormat | str | None = None,
) -> StoredEstate:
    """Check ``text`` and keep it as the newest version of its estate (audited as ``estate.upload``).

    Nothing is written unless the whole text holds.
    """
    checked = check_estate_text(text, source=source, name=name, format=format)
    return store_checked_estate(engine, text, checked, actor=actor, at=at)


def store_checked_estate(
    engine: Engine, text: str, checked: CheckedEstate, *, actor: str, at: datetime
) -> StoredEstate:
    """Keep ``text``, already checked by :func:`check_estate_text` into ``checked``, as its estate's newest
    version (for a caller that checks before it opens the database: the CLI stores nothing, and creates no
    database, for a file that does not hold)."""
    estate = checked.estate
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with session_scope(engine) as session:
        already = any(v.sha256 == digest for v in list_estate_versions(session, estate.name))
        version = add_estate_version(
            session,
            name=estate.name,
            content=text,
            format=checked.format,
            created_by=actor,
            asset_count=len(estate.assets),
            service_count=len(estate.services),
            at=at,
        )
    return StoredEstate(version, checked, created=not already)


def list_estates(engine: Engine) -> list[EstateSummary]:
    """Every estate name with its newest version, sorted by name."""
    with session_scope(engine, readonly=True) as session:
        versions = list_estate_versions(session)
    by_name: dict[str, list[EstateVersion]] = {}
    for version in versions:
        by_name.setdefault(version.name, []).append(version)
    return [EstateSummary(name, found[-1], len(found)) for name, found in sorted(by_name.items())]


def estate_versions(engine: Engine, name: str) -> list[EstateVersion]:
    """The versions of estate ``name``, oldest first; NotFoundError when it was never uploaded."""
    with session_scope(engine, readonly=True) as session:
        found = list_estate_versions(session, name)
    if not found:
        raise NotFoundError(f"no estate named {name!r} has been uploaded")
    return found


def estate_version(engine: Engine, name: str, version_id: int | None = None) -> EstateVersion:
    """Version ``version_id`` of estate ``name``, or its newest when ``version_id`` is None."""
    with session_scope(engine, readonly=True) as session:
        if version_id is None:
            return latest_estate_version(session, name)
        version = get_estate_version(session, version_id)
    if version.name != name:
        raise NotFoundError(f"estate version {version_id} is a version of {version.name!r}, not of {name!r}")
    return version


def load_sample_estate(engine: Engine, *, at: datetime) -> EstateVersion | None:
    """Keep the bundled sample estate as the first version when the database has no estate yet.

    Returns the version stored, or None when there was an estate already (nothing is changed then).
    Several workers starting at once store it once: the same text is the same version.
    """
    with session_scope(engine, readonly=True) as session:
        if list_estate_versions(session):
            return None
    path = sample_estate_path()
    return upload_estate(engine, read_text(path), actor=SAMPLE_ACTOR, at=at, source=str(path)).version


class CompiledEstates:
    """The last few estate versions, parsed and compiled, by version id (least recently used goes first).

    Thread-safe: the API answers requests on a thread pool. Two threads asking for the same version at
    once may both compile it; the result is the same and one of them is kept.
    """

    def __init__(self, size: int = 4) -> None:
        if size < 1:
            raise ValueError("a cache of compiled estates holds at least one")
        self.size = size
        self._loaded: OrderedDict[int, LoadedEstate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, engine: Engine, name: str, version_id: int | None = None) -> LoadedEstate:
        """Version ``version_id`` (default the newest) of estate ``name``, compiled."""
        version = estate_version(engine, name, version_id)
        with self._lock:
            loaded = self._loaded.get(version.id)
            if loaded is not None:
                self._loaded.move_to_end(version.id)
                return loaded
        suffix = "json" if version.format is EstateFormat.JSON else "yaml"
        checked = check_estate_text(version.content, source=f"{version.name}@{version.id}.{suffix}")
        loaded = LoadedEstate(version, checked)
        with self._lock:
            self._loaded[version.id] = loaded
            self._loaded.move_to_end(version.id)
            while len(self._loaded) > self.size:
                self._loaded.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        with self._lock:
            return len(self._loaded)


__all__ = [
    "SAMPLE_ACTOR",
    "CheckedEstate",
    "CompiledEstates",
    "EstateSummary",
    "LoadedEstate",
    "StoredEstate",
    "check_estate_text",
    "decode_estate_bytes",
    "detect_format",
    "estate_version",
    "estate_versions",
    "list_estates",
    "load_sample_estate",
    "store_checked_estate",
    "upload_estate",
]
