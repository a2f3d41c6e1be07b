"""Each command loads only its own module; help still lists every command."""

from __future__ import annotations

import subprocess
import sys

import typer.main

from ringfence.cli.main import COMMAND_MODULES, _register, app


def _loaded_after(argv: list[str]) -> tuple[set[str], set[str]]:
    """The modules a fresh interpreter holds once ``ringfence ARGV`` has registered its commands, and
    the commands then registered."""
    code = (
        "import sys, typer.main\n"
        "from ringfence.cli.main import _register, app\n"
        f"_register({argv!r})\n"
        "print(' '.join(sorted(sys.modules)))\n"
        "print(' '.join(sorted(typer.main.get_group(app).commands)))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    modules, commands = run.stdout.splitlines()
    return set(modules.split()), set(commands.split())


def test_the_agent_loads_no_other_command_nor_the_analysis_stack() -> None:
    loaded, registered = _loaded_after(["agent", "--server", "http://127.0.0.1:1"])
    assert registered == {"agent"}
    assert "ringfence.cli.agent" in loaded
    commands = {m for m in loaded if m.startswith("ringfence.cli.")} - {"ringfence.cli.main"}
    assert commands == {"ringfence.cli.agent"}
    assert not {"numpy", "sqlalchemy", "ringfence.core.estate", "ringfence.core.graph"} & loaded


def test_help_and_unknown_commands_load_every_command() -> None:
    every = {f"ringfence.cli.{m}" for m in COMMAND_MODULES.values()}
    for argv in (["--help"], ["--help", "agent"], [], ["imapct"]):
        loaded, registered = _loaded_after(argv)
        assert every <= loaded, argv
        assert registered == set(COMMAND_MODULES), argv


def test_every_registered_command_is_in_the_map() -> None:
    # A command added to a module but not to COMMAND_MODULES would vanish when named: this catches it.
    _register()
    group = typer.main.get_group(app)
    assert set(group.commands) == set(COMMAND_MODULES)
    # And each name loads the module that registers it.
    for module in sorted(set(COMMAND_MODULES.values())):
        names = [name for name, of in COMMAND_MODULES.items() if of == module]
        _, registered = _loaded_after([names[0]])
        assert set(names) <= registered, module


def test_ringfence_agent_help_runs_alone() -> None:
    # With one command registered the app must stay a group: "agent" is the command, not an argument.
    run = subprocess.run(
        [sys.executable, "-m", "ringfence", "agent", "--help"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "--server" in run.stdout
    assert "--rollback" in run.stdout
