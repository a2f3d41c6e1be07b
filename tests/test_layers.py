"""The layers of the package, checked over every module (docs/architecture.md, "Layers").

Every module gets its layer from where it lives (:data:`LAYER_OF`: a folder, or a top-level module), never
from a hand-kept list of files, so a new module is checked the day it is written. The rules:

1. the domain core imports no adapter and no I/O library, and calls no ``open()``;
2. each layer imports only the layers :data:`MAY_IMPORT` allows it (so ``web`` does not import the API's
   route modules, the store imports neither service nor drivers, nothing imports the CLI...);
3. ``store`` is the only package that touches the database: outside it no module imports the table classes
   (``ringfence.store.tables``) or SQLAlchemy's query builder; the ``Engine``/``Session`` types and
   SQLAlchemy's exceptions may pass through;
4. no import cycles among ringfence modules: none at load time, and none hidden behind an import inside a
   function either.

Where the code breaks a rule today, the offender is listed in a ``KNOWN_DEBT_*`` allow-list below with the
issue that tracks it. A new offender fails its test; so does a listed one that no longer offends, so the
lists only shrink: delete the entry with the fix.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ringfence"


class Layer(StrEnum):
    CORE = "core"
    """Pure: the model, the graph, planning, gates, the rollout state machine and reconcile, drills."""
    FILES = "files"
    """Reads and writes files: estate files, importers, the drill report, downtime packs."""
    STORE = "store"
    DRIVERS = "drivers"
    SERVICE = "service"
    API = "api"
    """The app, its dependencies, problem+json, schemas: what the dashboard shares with the API."""
    API_ROUTES = "api routes"
    WEB = "web"
    CLI = "cli"
    ENTRY = "entry"
    """``python -m ringfence``."""


# Where a module belongs: its own path if listed, else its top-level folder (a deeper folder when listed).
LAYER_OF: Mapping[str, Layer] = {
    "__init__.py": Layer.CORE,  # the package's version, nothing more
    "__main__.py": Layer.ENTRY,
    # The folders are the layers: core/ is pure (the model, planning, gates, the rollout state machine and
    # reconcile, the guard, drills; the driver protocol and the simulated world drills run on), adapters
    # around it.
    "core/": Layer.CORE,
    "files/": Layer.FILES,
    "examples/": Layer.FILES,
    "templates/": Layer.FILES,
    "store/": Layer.STORE,
    "drivers/": Layer.DRIVERS,
    "service/": Layer.SERVICE,
    "api/": Layer.API,
    "api/routes/": Layer.API_ROUTES,
    "web/": Layer.WEB,
    "cli/": Layer.CLI,
}

_ADAPTERS_BELOW_SERVICE = {Layer.CORE, Layer.FILES, Layer.STORE, Layer.DRIVERS}
MAY_IMPORT: Mapping[Layer, frozenset[Layer]] = {
    Layer.CORE: frozenset({Layer.CORE}),
    Layer.FILES: frozenset({Layer.CORE, Layer.FILES}),
    Layer.STORE: frozenset({Layer.CORE, Layer.STORE}),
    # The ansible driver reads inventories with the importer's own mapping; the agent driver reads what
    # agents reported through the store.
    Layer.DRIVERS: frozenset({Layer.CORE, Layer.FILES, Layer.STORE, Layer.DRIVERS}),
    Layer.SERVICE: frozenset({*_ADAPTERS_BELOW_SERVICE, Layer.SERVICE}),
    # The API and the dashboard call the service's use cases; reads of a list may go straight to the
    # store's repository functions inside a session_scope (never to SQL: see rule 3).
    Layer.API: frozenset({*_ADAPTERS_BELOW_SERVICE, Layer.SERVICE, Layer.API}),
    Layer.API_ROUTES: frozenset({*_ADAPTERS_BELOW_SERVICE, Layer.SERVICE, Layer.API, Layer.API_ROUTES}),
    # Not the API's route modules: a page and a route that need the same thing get it from the service.
    Layer.WEB: frozenset({Layer.CORE, Layer.FILES, Layer.STORE, Layer.SERVICE, Layer.API, Layer.WEB}),
    Layer.CLI: frozenset({*_ADAPTERS_BELOW_SERVICE, Layer.SERVICE, Layer.CLI}),
    Layer.ENTRY: frozenset({Layer.CORE, Layer.CLI}),
}

IO_LIBRARIES = {
    # databases, web, terminals, processes, networks, files, templates
    "sqlalchemy",
    "alembic",
    "psycopg",
    "sqlite3",
    "fastapi",
    "starlette",
    "uvicorn",
    "prometheus_client",
    "typer",
    "click",
    "rich",
    "httpx",
    "requests",
    "urllib",
    "http",
    "socket",
    "ssl",
    "subprocess",
    "signal",
    "ansible",
    "ansible_runner",
    "os",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "jinja2",
    "reportlab",
    "logging",
    # threads and wall clocks: the core takes its clock (``now``) as a parameter, so drills run in
    # simulated time and every decision can be replayed.
    "threading",
    "multiprocessing",
    "concurrent",
    "asyncio",
    "time",
}
IO_CALLS = {"open", "input", "print"}

DATABASE_TYPES_ONLY = {"sqlalchemy.engine", "sqlalchemy.orm", "sqlalchemy.exc"}
"""What of SQLAlchemy a module outside the store may import: the Engine and Session it is handed, and the
exceptions it catches. Not ``sqlalchemy`` itself (``select``, ``text``, ``func``): that is writing SQL."""
DATABASE_MODULES = {"sqlalchemy", "psycopg", "sqlite3", "ringfence.store.tables"}

# ----------------------------------------------------------------------------------- known debt (issue 13)
#
# Issue 13 ([architecture]) item 2. Each entry breaks a rule today and says how; each test fails for an
# offender not listed here AND for a listed entry that no longer offends (remove it with the fix), so these
# lists only shrink. Do not add to them to make a test pass: fix the import instead.

KNOWN_DEBT_DATABASE: Mapping[str, str] = {}

KNOWN_DEBT_LAYERS: Mapping[tuple[str, str], str] = {}

KNOWN_DEBT_LOAD_CYCLES: frozenset[frozenset[str]] = frozenset()
"""Cycles among module-level imports. (The importers package's bottom-of-file imports were one: the shared
helpers now live in ``importers.document``.)"""

KNOWN_DEBT_DEFERRED_CYCLES: Mapping[frozenset[str], str] = {
    # One entry per cycle: the set of modules that reach each other (a new import into the loop changes it).
}
"""Cycles that exist only through imports inside functions (which hide a two-way dependency). (The rollout and
incident services were one: both now read a stored rollout through ``service.rollout_view``.)"""


# ------------------------------------------------------------------------------------------------ the scan


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen from the module that makes it."""

    source: str
    target: str
    """A ringfence module (resolved: ``from ringfence.service import rollouts`` is ``ringfence.service.rollouts``)
    or the dotted name of another library's module."""
    line: int
    at_load: bool
    """Runs when the module is imported: at module level and not under ``if TYPE_CHECKING``."""
    type_only: bool
    binds_root: bool = False
    """``import a.b`` binds ``a`` itself in the importing module (and with it all of ``a``)."""


def module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["ringfence", *parts])


def read_package(root: Path = PACKAGE) -> dict[str, tuple[str, str]]:
    """Module name → (path relative to the package, source) for every module; migrations are Alembic's."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == "migrations" or "migrations" in relative.parts[:-1]:
            continue
        found[module_name(relative)] = (relative.as_posix(), path.read_text(encoding="utf-8"))
    return found


def layer_of(relative: str) -> Layer | None:
    """The layer of the module at ``relative``: its own entry, else its deepest listed folder."""
    if relative in LAYER_OF:
        return LAYER_OF[relative]
    parts = relative.split("/")[:-1]
    for depth in range(len(parts), 0, -1):
        folder = "/".join(parts[:depth]) + "/"
        if folder in LAYER_OF:
            return LAYER_OF[folder]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(source: str, tree: ast.Module, modules: Iterable[str], *, is_package: bool) -> list[Import]:
    """Every import in ``tree``, with ringfence targets resolved to modules of ``modules``."""
    known = set(modules)
    found: list[Import] = []

    def resolve(base: str, names: Iterable[str]) -> list[str]:
        # `from ringfence.service import rollouts` imports the submodule; `from ringfence.files.disk import x`
        # the module.
        targets = [f"{base}.{name}" for name in names if f"{base}.{name}" in known]
        return targets or [base]

    def visit(node: ast.AST, at_load: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            # A function's body runs when it is called, not when the module is imported.
            load = at_load and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for branch in child.body:
                    visit_one(branch, load, True)
                for branch in child.orelse:
                    visit_one(branch, load, type_only)
                continue
            visit_one(child, load, type_only)

    def visit_one(child: ast.AST, load: bool, typed: bool) -> None:
        targets: list[str] = []
        binds_root = isinstance(child, ast.Import)
        if isinstance(child, ast.Import):
            targets = [alias.name for alias in child.names if alias.asname is None or "." not in alias.name]
            # `import a.b as c` binds only a.b
            dotted_alias = [alias.name for alias in child.names if alias.asname is not None and "." in alias.name]
            for target in dotted_alias:
                found.append(Import(source, target, child.lineno, load and not typed, typed))
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                package = source if is_package else source.rpartition(".")[0]
                for _ in range(child.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{child.module}" if child.module else package
            else:
                base = child.module or ""
            targets = resolve(base, [alias.name for alias in child.names]) if base.startswith("ringfence") else [base]
        for target in targets:
            found.append(Import(source, target, getattr(child, "lineno", 0), load and not typed, typed, binds_root))
        if not isinstance(child, ast.Import | ast.ImportFrom):
            visit(child, load, typed)

    visit(tree, True, False)
    return found


@dataclass(frozen=True)
class Scan:
    layers: dict[str, Layer | None]
    imports: list[Import]
    trees: dict[str, ast.Module]


def scan(package: Mapping[str, tuple[str, str]]) -> Scan:
    trees = {name: ast.parse(text) for name, (_, text) in package.items()}
    imports: list[Import] = []
    for name, (relative, _) in package.items():
        imports += imports_of(name, trees[name], package, is_package=relative.endswith("__init__.py"))
    return Scan({name: layer_of(relative) for name, (relative, _) in package.items()}, imports, trees)


def _ringfence_target(found: Import, modules: Mapping[str, object]) -> str | None:
    """The ringfence module an import loads (the deepest that exists), or None for another library."""
    target = found.target
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target if target.startswith("ringfence") else None


def io_in_core(result: Scan) -> dict[str, set[str]]:
    """Core module → the I/O libraries it imports and the I/O builtins it calls."""
    found: dict[str, set[str]] = {}
    for each in result.imports:
        if result.layers[each.source] is Layer.CORE and each.target.split(".")[0] in IO_LIBRARIES:
            found.setdefault(each.source, set()).add(each.target.split(".")[0])
    for name, tree in result.trees.items():
        if result.layers[name] is not Layer.CORE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in IO_CALLS:
                found.setdefault(name, set()).add(f"{node.func.id}()")
    return found


def layer_breaches(result: Scan) -> set[tuple[str, str]]:
    """(module, ringfence module it imports) for every import its layer may not make (type-only ones too)."""
    breaches: set[tuple[str, str]] = set()
    for each in result.imports:
        target = _ringfence_target(each, result.layers)
        source_layer = result.layers[each.source]
        if target is None or source_layer is None:
            continue
        target_layer = result.layers[target]
        if target_layer is not None and target_layer not in MAY_IMPORT[source_layer]:
            breaches.add((each.source, target))
    return breaches


def database_touchers(result: Scan) -> dict[str, set[str]]:
    """Modules outside the store that import the table classes or SQLAlchemy beyond its types."""
    found: dict[str, set[str]] = {}
    for each in result.imports:
        if result.layers[each.source] is Layer.STORE or each.type_only:
            continue
        if each.target in DATABASE_TYPES_ONLY and not each.binds_root:
            continue
        root = each.target.split(".")[0]
        if each.target in DATABASE_MODULES or (root != "ringfence" and root in DATABASE_MODULES):
            found.setdefault(each.source, set()).add(each.target)
    return found


def cycles(result: Scan, *, at_load_only: bool) -> set[frozenset[str]]:
    """Sets of ringfence modules that import each other around a loop (strongly connected, two or more).

    Importing ``ringfence.a.b`` first runs ``ringfence/a/__init__.py``, so that counts as an edge too, except
    into a package the importer itself lives in (Python has run it already). Type-only imports never run.
    """
    edges: dict[str, set[str]] = {name: set() for name in result.layers}
    for each in result.imports:
        if each.type_only or (at_load_only and not each.at_load):
            continue
        target = _ringfence_target(each, result.layers)
        if target is None or target == each.source:
            continue
        edges[each.source].add(target)
        parent = target.rpartition(".")[0]
        while parent.count(".") >= 1 and not (each.source + ".").startswith(parent + "."):
            edges[each.source].add(parent)
            parent = parent.rpartition(".")[0]
    return _strongly_connected(edges)


def _strongly_connected(edges: Mapping[str, set[str]]) -> set[frozenset[str]]:
    """Tarjan's algorithm, iterative (the package is a few hundred modules; recursion would do, but needn't)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.add(frozenset(members))
    return found


@pytest.fixture(scope="module")
def package() -> Scan:
    return scan(read_package())


def _debt_report(new: Iterable[object], gone: Iterable[object]) -> str:
    lines = [f"new offender: {item}" for item in sorted(map(str, new))]
    lines += [f"no longer offends, remove it from the allow-list: {item}" for item in sorted(map(str, gone))]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ the rules


def test_every_module_has_a_layer(package: Scan) -> None:
    """A new top-level module or folder must be given its layer before anything else can be said of it."""
    assert [name for name, layer in package.layers.items() if layer is None] == []


def test_the_core_imports_no_io_library_and_calls_no_open(package: Scan) -> None:
    assert io_in_core(package) == {}


def test_the_core_never_reads_the_wall_clock(package: Scan) -> None:
    """``core.clock.utc_now`` is there for the adapters; a core module takes the time it acts at as a parameter
    (``at``, ``now``, ``clock``), so drills run in simulated time. Only ``core.clock`` itself calls ``.now()``."""
    importers = {
        each.source
        for each in package.imports
        if package.layers[each.source] is Layer.CORE and each.target == "ringfence.core.clock"
    }
    callers = {
        name
        for name, tree in package.trees.items()
        if package.layers[name] is Layer.CORE and name != "ringfence.core.clock"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"now", "utcnow"}
    }
    assert (importers, callers) == (set(), set())


def test_every_layer_imports_only_what_it_may(package: Scan) -> None:
    found = layer_breaches(package)
    known = set(KNOWN_DEBT_LAYERS)
    described = {
        pair: f"{pair[0]} ({package.layers[pair[0]]}) imports {pair[1]} ({package.layers[pair[1]]})"
        for pair in found | known
        if pair[0] in package.layers and pair[1] in package.layers
    }
    new, gone = found - known, known - found
    assert not new, _debt_report((described.get(p, p) for p in new), gone)
    assert not gone, _debt_report(new, gone)


def test_only_the_store_touches_the_database(package: Scan) -> None:
    found = database_touchers(package)
    new = {f"{name} imports {sorted(found[name])}" for name in set(found) - set(KNOWN_DEBT_DATABASE)}
    gone = set(KNOWN_DEBT_DATABASE) - set(found)
    assert not new, _debt_report(new, gone)
    assert not gone, _debt_report(new, gone)


def test_no_import_cycle_at_load_time(package: Scan) -> None:
    found = cycles(package, at_load_only=True)
    new, gone = found - KNOWN_DEBT_LOAD_CYCLES, KNOWN_DEBT_LOAD_CYCLES - found
    assert not new, _debt_report(map(sorted, new), map(sorted, gone))
    assert not gone, _debt_report(map(sorted, new), map(sorted, gone))


def test_no_import_cycle_hidden_inside_functions(package: Scan) -> None:
    found = cycles(package, at_load_only=False) - cycles(package, at_load_only=True)
    known = set(KNOWN_DEBT_DEFERRED_CYCLES)
    new, gone = found - known, known - found
    assert not new, _debt_report(map(sorted, new), map(sorted, gone))
    assert not gone, _debt_report(map(sorted, new), map(sorted, gone))


# ------------------------------------------------------------------------------- the scan itself can fail


def _fake(**modules: str) -> Scan:
    """A package from module sources: keyword ``core__rollout__x`` is ``ringfence/core/rollout/x.py``, ``x__init`` is
    ``ringfence/x/__init__.py``."""
    package: dict[str, tuple[str, str]] = {}
    for key, text in modules.items():
        parts = ["__init__" if part == "init" else part for part in key.split("__")]
        relative = Path(*parts).with_suffix(".py")
        package[module_name(relative)] = (relative.as_posix(), text)
    for folder in {str(Path(r).parent) for r, _ in package.values()} - {"."}:
        package.setdefault(module_name(Path(folder) / "__init__.py"), (f"{folder}/__init__.py", ""))
    return scan(package)


TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"


def test_the_scan_sees_io_in_the_core() -> None:
    found = _fake(
        core__planner="import subprocess\nfrom sqlalchemy import select\n\ndef f():\n    open('x')\n",
        core__rollout__guard="def g():\n    import time\n",
        files__disk="import os\nopen('fine: an adapter')\n",
    )
    assert io_in_core(found) == {
        "ringfence.core.planner": {"subprocess", "sqlalchemy", "open()"},
        "ringfence.core.rollout.guard": {"time"},
    }


def test_the_scan_sees_a_layer_breach_and_resolves_submodules() -> None:
    found = _fake(
        core__gates="from ringfence.store import repo\n",
        store__repo="",
        service__rollouts="",
        web__views="from ringfence.api.routes import drills\nfrom ringfence.api import deps\n",
        api__deps="",
        api__routes__drills="",
        core__driver=TYPE_ONLY + "    from ringfence.service import rollouts\n",
    )
    assert layer_breaches(found) == {
        ("ringfence.core.gates", "ringfence.store.repo"),
        ("ringfence.web.views", "ringfence.api.routes.drills"),
        # a type-only import still ties the core to an adapter's types
        ("ringfence.core.driver", "ringfence.service.rollouts"),
    }


def test_the_scan_sees_sql_outside_the_store() -> None:
    found = _fake(
        service__tokens="import sqlalchemy as sa\nfrom sqlalchemy.engine import Engine\n",
        service__agents="from sqlalchemy.orm import Session\nfrom sqlalchemy.exc import OperationalError\n",
        drivers__agent="from ringfence.store.tables import RolloutRow\n",
        api__routes__metrics="import sqlalchemy.exc\n",
        store__tables="import sqlalchemy as sa\n",
        store__repo="from ringfence.store.tables import RolloutRow\n",
    )
    assert database_touchers(found) == {
        "ringfence.service.tokens": {"sqlalchemy"},
        "ringfence.drivers.agent": {"ringfence.store.tables"},
        # `import sqlalchemy.exc` binds `sqlalchemy` itself, and with it `sqlalchemy.text`
        "ringfence.api.routes.metrics": {"sqlalchemy.exc"},
    }


def test_the_scan_tells_load_time_cycles_from_hidden_ones() -> None:
    found = _fake(
        files__importers__init="from ringfence.files.importers.csv import import_csv\n",
        files__importers__csv="from ringfence.files.importers import capped\n",
        service__rollouts="def halt():\n    from ringfence.service import incidents\n",
        service__incidents="from ringfence.service import rollouts\n",
        core__graph=TYPE_ONLY + "    from ringfence.core import impact\n",
        core__impact="from ringfence.core import graph\n",
        drivers__init="from ringfence.core.driver import Driver\n",
        core__driver="from ringfence.core.errors import Problem\n",
        core__errors="",
    )
    # A package importing its own submodule is no cycle; a child importing its parent's names back is.
    assert cycles(found, at_load_only=True) == {
        frozenset({"ringfence.files.importers", "ringfence.files.importers.csv"})
    }
    assert cycles(found, at_load_only=False) == {
        frozenset({"ringfence.files.importers", "ringfence.files.importers.csv"}),
        frozenset({"ringfence.service.rollouts", "ringfence.service.incidents"}),
    }


def test_a_module_in_a_new_folder_has_no_layer_until_given_one() -> None:
    found = _fake(plugins__loader="", core__rollout__fresh="")
    assert found.layers["ringfence.plugins.loader"] is None
    assert found.layers["ringfence.core.rollout.fresh"] is Layer.CORE
