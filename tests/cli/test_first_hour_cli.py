"""The paths a newcomer walks in the first hour: where state lives, help, tables at 80 columns, and bad input.

Every test runs the real ``ringfence`` (a separate process, or its ``main`` in this one for the help pages).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from ringfence.files.disk import sample_estate_path

from .conftest import RINGFENCE

ESTATE = sample_estate_path()
SCENARIOS = ESTATE.parent / "scenarios"


def run(
    *args: str | Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    columns: int | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``ringfence ARGS`` with the environment given (over this one), captured, never raising on exit status."""
    assert RINGFENCE is not None
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    environment.update(env or {})
    if columns is not None:
        environment["COLUMNS"] = str(columns)
    return subprocess.run(
        [RINGFENCE, *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def without_home(tmp_path: Path, **more: str) -> dict[str, str]:
    """An environment with no RINGFENCE_HOME nor database URL, whose user home is a folder of the test."""
    env = {"HOME": str(tmp_path / "user"), "RINGFENCE_HOME": "", "RINGFENCE_DATABASE_URL": "", "XDG_DATA_HOME": ""}
    env.update(more)
    return env


# ------------------------------------------------------------------------------------------ one home for state


def test_a_token_made_in_one_folder_is_known_in_another(tmp_path: Path) -> None:
    env = without_home(tmp_path, XDG_DATA_HOME=str(tmp_path / "xdg"))
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    made = run("token", "create", "alice", "--role", "admin", "--json", cwd=here, env=env)
    assert made.returncode == 0, made.stderr
    listed = run("token", "list", "--json", cwd=there, env=env)
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["alice"]
    database = tmp_path / "xdg" / "ringfence" / "ringfence.db"
    assert database.is_file()
    # Nothing in the folders the commands ran in (the old default was ./.ringfence).
    assert not list(here.iterdir())
    assert not list(there.iterdir())
    # The write names its database on stderr; stdout stays the one JSON document.
    assert f"database: {database}" in made.stderr
    assert json.loads(made.stdout)["name"] == "alice"


def test_without_xdg_data_home_the_home_is_under_local_share(tmp_path: Path) -> None:
    made = run("token", "create", "alice", "--role", "admin", cwd=tmp_path, env=without_home(tmp_path))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "user" / ".local" / "share" / "ringfence" / "ringfence.db").is_file()


def test_ringfence_home_wins_over_xdg_and_the_database_flag_over_both(tmp_path: Path) -> None:
    env = without_home(tmp_path, XDG_DATA_HOME=str(tmp_path / "xdg"), RINGFENCE_HOME=str(tmp_path / "rf"))
    assert run("token", "create", "alice", "--role", "admin", env=env, cwd=tmp_path).returncode == 0
    assert (tmp_path / "rf" / "ringfence.db").is_file()
    assert not (tmp_path / "xdg").exists()
    url = f"sqlite:///{tmp_path / 'named.db'}"
    named = run("token", "create", "bob", "--database", url, env=env, cwd=tmp_path)
    assert named.returncode == 0, named.stderr
    assert f"database: {tmp_path / 'named.db'}" in named.stderr
    listed = run("token", "list", "--json", env=env, cwd=tmp_path)
    assert [t["name"] for t in json.loads(listed.stdout)["tokens"]] == ["alice"]


def test_commands_that_write_name_their_database_and_readers_do_not(tmp_path: Path) -> None:
    env = {"RINGFENCE_HOME": str(tmp_path / "home"), "RINGFENCE_ACTOR": "tester"}
    database = tmp_path / "home" / "ringfence.db"
    declared = run("incident", "declare", "--estate", ESTATE, "--fail", "supplier:advanced", "--json", env=env)
    assert declared.returncode == 0, declared.stderr
    assert declared.stderr.splitlines() == [f"database: {database}"]
    json.loads(declared.stdout)  # still exactly one document on stdout
    noted = run("incident", "note", "inc-000001", "called the supplier", env=env)
    assert f"database: {database}" in noted.stderr
    assert "(2 events)" in noted.stdout
    shown = run("incident", "list", env=env)
    assert shown.returncode == 0
    assert "database:" not in shown.stderr


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``ringfence serve`` on a free port with an empty home; stopped after the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert RINGFENCE is not None
    env = dict(os.environ, RINGFENCE_HOME=str(tmp_path / "home"), RINGFENCE_DATABASE_URL="")
    server = subprocess.Popen(
        [RINGFENCE, "serve", "--port", str(port), "--no-controller"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield server, port
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()


def test_serve_says_where_its_database_is_and_how_to_make_the_first_admin_token(
    serving: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    server, port = serving
    assert server.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any("--role admin" in line for line in lines):
        line = server.stderr.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
    text = "\n".join(lines)
    assert f"http://127.0.0.1:{port}/" in text
    assert f"database: {tmp_path / 'home' / 'ringfence.db'}" in text
    assert "ringfence token create YOUR-NAME --role admin" in text


def test_the_test_suite_keeps_out_of_the_users_home() -> None:
    # tests/conftest.py points RINGFENCE_HOME at a throw-away folder for every test and every ringfence it runs.
    home = Path(os.environ["RINGFENCE_HOME"])
    assert not home.is_relative_to(Path.home() / ".local")
    assert "ringfence-home" in home.name


# ------------------------------------------------------------------------------------------ help and version


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ringfence {version('ringfence')}"


def _command_paths() -> list[tuple[str, ...]]:
    import typer.main

    from ringfence.cli.main import _register, app

    _register()
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(dict(getattr(command, "commands", None) or {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(p) or "ringfence")
def test_help_speaks_no_python(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ringfence.cli.main import main

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys, "argv", ["ringfence", *path, "--help"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code in (0, None)
    text = capsys.readouterr().out
    assert "Usage: ringfence" in text
    for python in ("<bool>", "<str>", "<int", "<float", "<path>", "<list[", "{"):
        assert python not in text, f"{python!r} in the help of {' '.join(path)}:\n{text}"
    # --json, where a command has it, says what it does.
    for line in text.splitlines():
        if "--json" in line:
            assert re.search(r"--json\s+\S", line), f"--json undescribed in {' '.join(path)}:\n{text}"


def test_help_shows_value_kinds_and_argument_names() -> None:
    text = run("continuity", "pack", "--help", columns=100).stdout
    assert "Usage: ringfence continuity pack [OPTIONS] ESTATE_FILE" in text
    assert re.search(r"--out\s+PATH", text)
    assert re.search(r"--service\s+TEXT", text)
    restore = run("incident", "restore", "--help", columns=100).stdout
    assert "INCIDENT_ID ITEMS..." in restore


# ------------------------------------------------------------------------------------------ tokens


def test_token_list_is_a_table_with_a_header_and_json_too(tmp_path: Path) -> None:
    env = {"RINGFENCE_HOME": str(tmp_path / "home")}
    assert run("token", "list", env=env).stdout.startswith("No tokens.")
    assert run("token", "create", "alice", "--role", "admin", env=env).returncode == 0
    agent = run("token", "create", "ws", "--role", "agent", "--asset", "core-city-1", "--estate", ESTATE, env=env)
    assert agent.returncode == 0, agent.stderr
    lines = run("token", "list", env=env).stdout.splitlines()
    assert lines[0].split() == ["id", "role", "name", "asset"]
    rows = [line.split() for line in lines[2:]]
    assert rows == [["1", "admin", "alice"], ["2", "agent", "ws", "core-city-1"]]
    # Aligned: each column starts at the same place on every line.
    assert lines[2].index("admin") == lines[3].index("agent") == lines[0].index("role")
    listed = json.loads(run("token", "list", "--json", env=env).stdout)
    assert listed == {
        "tokens": [
            {"id": 1, "name": "alice", "role": "admin", "asset": None},
            {"id": 2, "name": "ws", "role": "agent", "asset": "core-city-1"},
        ]
    }


def test_an_agent_token_for_an_unknown_asset_is_refused_unless_forced(tmp_path: Path) -> None:
    env = {"RINGFENCE_HOME": str(tmp_path / "home")}
    nowhere = run("token", "create", "a", "--role", "agent", "--asset", "does-not-exist", env=env)
    assert nowhere.returncode == 2
    assert "does-not-exist" in nowhere.stderr
    assert "--force" in nowhere.stderr
    not_in_file = run(
        "token", "create", "a", "--role", "agent", "--asset", "does-not-exist", "--estate", ESTATE, env=env
    )
    assert not_in_file.returncode == 2
    assert not_in_file.stderr.count("\n") == 1
    assert "'does-not-exist'" in not_in_file.stderr
    assert str(ESTATE) in not_in_file.stderr
    # A prefix of a real id is in the text but is no asset: the estate is parsed, not just searched.
    prefix = run("token", "create", "a", "--role", "agent", "--asset", "core-city", "--estate", ESTATE, env=env)
    assert prefix.returncode == 2, prefix.stdout
    assert json.loads(run("token", "list", "--json", env=env).stdout)["tokens"] == []
    forced = run("token", "create", "a", "--role", "agent", "--asset", "does-not-exist", "--force", env=env)
    assert forced.returncode == 0, forced.stderr


def test_an_agent_token_is_checked_against_the_stored_estates(tmp_path: Path) -> None:
    from ringfence.core.clock import utc_now
    from ringfence.service.estates import upload_estate
    from ringfence.store.db import make_engine, upgrade

    database = tmp_path / "home" / "ringfence.db"
    database.parent.mkdir()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    upload_estate(engine, ESTATE.read_text(encoding="utf-8"), actor="tester", at=utc_now())
    engine.dispose()
    env = {"RINGFENCE_HOME": str(tmp_path / "home")}
    refused = run("token", "create", "a", "--role", "agent", "--asset", "core-city-9", env=env)
    assert refused.returncode == 2
    assert "'core-city-9'" in refused.stderr
    assert "city-general" in refused.stderr
    known = run("token", "create", "a", "--role", "agent", "--asset", "core-city-1", "--json", env=env)
    assert known.returncode == 0, known.stderr
    assert json.loads(known.stdout)["asset"] == "core-city-1"


# ------------------------------------------------------------------------------------------ output paths


@pytest.fixture
def obstacles(tmp_path: Path) -> Path:
    """A folder holding a folder ``adir`` and a file ``afile``."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("in the way\n", encoding="utf-8")
    return tmp_path


WRITERS = {
    "generate": (("generate", "-n", "60", "--out"), "file"),
    "import csv": (("import", "csv", "{csv}", "--out"), "file"),
    "recover": (("recover", str(ESTATE), "--fail", "supplier:advanced", "--export"), "file"),
    "drill": (("drill", str(ESTATE), str(SCENARIOS / "vsphere-7u3.yaml"), "--report"), "file"),
    "incident review": (("incident", "review", "inc-000001", "--out"), "file"),
    "continuity pack": (("continuity", "pack", str(ESTATE), "--service", "epr", "--out"), "folder"),
    "agent": (
        (
            "agent",
            "--server",
            "http://127.0.0.1:9",
            "--asset",
            "a",
            "--apply",
            "true",
            "--rollback",
            "true",
            "--token",
            "t",
            "--state",
        ),
        "file",
    ),
}


@pytest.mark.parametrize("command", sorted(WRITERS))
@pytest.mark.parametrize("obstacle", ["a folder", "under a file", "cannot be made"])
def test_an_output_path_that_cannot_be_written_is_one_sentence_and_exit_2(
    obstacles: Path, command: str, obstacle: str
) -> None:
    args, wants = WRITERS[command]
    csv = obstacles / "assets.csv"
    csv.write_text("id,kind\nh1,host\n", encoding="utf-8")
    if obstacle == "a folder":
        target = obstacles / ("afile" if wants == "folder" else "adir")  # the wrong kind of thing
    elif obstacle == "under a file":
        target = obstacles / "afile" / "sub" / ("out" if wants == "folder" else "out.html")
    else:
        target = Path("/proc/ringfence-test/out.html")  # no one, not even root, makes folders in /proc
    flag = args[-1]
    given = [a.replace("{csv}", str(csv)) for a in args]
    done = run(*given, target, cwd=obstacles, env={"RINGFENCE_HOME": str(obstacles / "home")}, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert flag in done.stderr
    assert str(target) in done.stderr
    assert (obstacles / "afile").read_text(encoding="utf-8") == "in the way\n"
    assert not list((obstacles / "adir").iterdir())


def test_a_missing_folder_on_the_way_is_made(tmp_path: Path) -> None:
    report = tmp_path / "new" / "folders" / "recovery.md"
    done = run("recover", ESTATE, "--fail", "supplier:advanced", "--export", report)
    assert done.returncode == 0, done.stderr
    assert report.read_text(encoding="utf-8").startswith("# Recovery plan")


# ------------------------------------------------------------------------------------------ the agent's server


@pytest.mark.parametrize(
    ("server", "fix"),
    [
        ("localhost:8531", "--server http://localhost:8531"),
        ("ftp://localhost:8531", "--server http://localhost:8531"),
        ("http://", "--server http://localhost:8321"),
    ],
)
def test_an_agent_server_without_http_is_refused_at_once(server: str, fix: str) -> None:
    started = time.monotonic()
    done = run(
        "agent",
        "--server",
        server,
        "--asset",
        "a",
        "--apply",
        "true",
        "--rollback",
        "true",
        "--token",
        "t",
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert fix in done.stderr
    assert done.stderr.count("\n") == 1
    assert time.monotonic() - started < 20


# ------------------------------------------------------------------------------------------ 80 columns


def _cut_words(text: str) -> list[str]:
    return [line for line in text.splitlines() if "…" in line]


@pytest.mark.parametrize("scenario", sorted(p.name for p in SCENARIOS.glob("*.yaml")))
def test_drill_table_keeps_every_word_whole_at_80_columns(scenario: str) -> None:
    done = run("drill", ESTATE, SCENARIOS / scenario, columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("strategy"))
    words = " ".join(lines[header - 1 : header + 1]).split()
    for word in ("strategy", "exposed", "failed", "services", "down", "stopped", "detected", "data", "lost", "ended"):
        assert word in words, (word, done.stdout)
    rows = lines[header + 2 : header + 12]
    assert not _cut_words("\n".join(rows)), "\n".join(rows)
    assert any("completed" in row or "halted" in row for row in rows)


def test_incident_table_keeps_service_ids_whole_at_80_columns(tmp_path: Path) -> None:
    env = {"RINGFENCE_HOME": str(tmp_path / "home")}
    assert run("incident", "declare", "--estate", ESTATE, "--fail", "supplier:advanced", env=env).returncode == 0
    shown = run("incident", "show", "inc-000001", env=env, columns=80).stdout
    assert "community-records" in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    listed = run("incident", "list", env=env, columns=80).stdout
    assert re.search(r"inc-000001\s+open\s+\d{4}-\d\d-\d\d \d\d:\d\d", listed), listed


def test_spof_and_concentration_keep_ids_and_headers_whole_at_80_columns() -> None:
    spof = run("spof", ESTATE, "--tier", "2", "--limit", "10", columns=80)
    assert spof.returncode == 0, spof.stderr
    assert all(len(line) <= 80 for line in spof.stdout.splitlines())
    assert "software:crowdstrike/falcon" in spof.stdout
    assert "active-directory," in spof.stdout
    assert "…" not in spof.stdout.replace("… and", "")  # the closing "… and N more" line is no cut word
    concentration = run("concentration", ESTATE, columns=80).stdout
    assert "life-critical" in concentration
    assert re.search(r"│ crowdstrike\s+│", concentration)
    # Every id whole: short tier headings leave the services their room (it was "community-record/s").
    assert "community-records," in concentration
    assert "desktop-management," in concentration
    assert "…" not in concentration


def test_a_table_wider_than_the_screen_wraps_between_words() -> None:
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    from ringfence.cli.output import fit_table

    console = Console(file=StringIO(), width=80)
    table = Table()
    table.add_column("failure")
    table.add_column("services down")
    table.add_column("what to do")
    table.add_row("software:crowdstrike/falcon", "active-directory, " * 6, "stage every update through rings " * 4)
    fit_table(table, console)
    assert table.columns[0].width == len("software:crowdstrike/falcon")
    assert all(c.width is not None and c.width >= len("active-directory,") for c in table.columns[1:])
    console.print(table)
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "software:crowdstrike/falcon" in printed
    assert "active-directory," in printed
    assert all(len(line) <= 80 for line in printed.splitlines())
