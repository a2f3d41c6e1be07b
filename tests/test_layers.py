"""The domain core does no I/O: it imports nothing that talks to disks, networks, databases or processes."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ringfence"

CORE = [
    "errors.py",
    "allocation.py",
    "durations.py",
    "selectors.py",
    "estate.py",
    "graph.py",
    "impact.py",
    "update.py",
    "planner.py",
    "gates.py",
    "generate.py",
    "audit.py",
    "rollout/state.py",
    "drivers/base.py",
    "drivers/simulation.py",
    "rollout/controller.py",
    "rollout/memory.py",
    "rollout/reconcile.py",
    "rollout/strategy.py",
    "rollout/record.py",
    "rollout/guard.py",
    "recovery.py",
    "incident.py",
    "documents.py",
    "drills.py",
]
FORBIDDEN = {
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "uvicorn",
    "typer",
    "click",
    "rich",
    "httpx",
    "requests",
    "subprocess",
    "socket",
    "ansible",
    "ansible_runner",
    "psycopg",
    "sqlite3",
    "shutil",
    "tempfile",
    "jinja2",
}
FORBIDDEN_CALLS = {"open"}


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _calls(tree: ast.AST) -> set[str]:
    return {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


@pytest.mark.parametrize("module", [m for m in CORE if (PACKAGE / m).exists()])
def test_core_module_does_no_io(module: str) -> None:
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    assert not (_imports(tree) & FORBIDDEN), f"{module} imports {_imports(tree) & FORBIDDEN}"
    assert not (_calls(tree) & FORBIDDEN_CALLS), f"{module} calls {_calls(tree) & FORBIDDEN_CALLS}"


def test_core_imports_only_core() -> None:
    """A core module may import another ringfence module only if that one is core too."""
    core_modules = {"ringfence." + m.removesuffix(".py").replace("/", ".") for m in CORE}
    for module in CORE:
        path = PACKAGE / module
        if not path.exists():
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ringfence."):
                assert node.module in core_modules, f"{module} imports adapter {node.module}"


def test_the_scan_sees_a_violation(tmp_path: Path) -> None:
    """The scan itself can fail: an I/O import is caught."""
    tree = ast.parse("import subprocess\nfrom sqlalchemy import select\nopen('x')\n")
    assert {"subprocess", "sqlalchemy"} <= _imports(tree)
    assert "open" in _calls(tree)
