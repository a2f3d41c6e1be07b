"""Drivers declare what they cannot do, and a rollout they cannot carry through is refused before it is
stored (``rollout create``: exit 2) or before it moves (``rollout start``: exit 2); the agent and ansible
drivers' own bounds make every operation they are asked about end.

Real drivers, a real SQLite database, real ``ansible-inventory`` and the real ``ringfence`` command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from drivers.ansible_fixtures import ROLLBACK, SNAPSHOT, UPDATE, Fleet, build_fleet, host_name
from ringfence.core.driver import (
    Batch,
    OperationKind,
    OperationResult,
    operations_for,
    refusal_for,
)
from ringfence.core.durations import parse_duration
from ringfence.core.errors import InputError
from ringfence.core.gates import AssetHealth
from ringfence.core.update import Update, parse_update_text
from ringfence.drivers.agent import MAX_TIMEOUT, NO_RESTORE_POINTS, AgentDriver
from ringfence.drivers.ansible import SPEC_FILE, STOP_GRACE_SECONDS, AnsibleDriver, Ledger, LedgerOperation, LedgerRun
from ringfence.drivers.registry import declared_class, driver_class, load_driver, require_driver_able
from ringfence.drivers.simulated import SimulatedDriver
from ringfence.files.importers.ansible import asset_id_for_host
from ringfence.store.db import make_engine, session_scope
from ringfence.store.rollouts import list_rollouts

RINGFENCE = str(Path(sys.executable).with_name("ringfence"))
T0 = datetime(2024, 11, 23, 12, 0, tzinfo=UTC)

ESTATE = """\
apiVersion: ringfence/v1
estate: small
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/agent, version: "1"}]}
"""


def update_text(rollback: str | None) -> str:
    lines = [
        "apiVersion: ringfence/v1",
        "update:",
        "  id: agent-2",
        "  product: acme/agent",
        '  version: "2"',
        "  rings: [1, '100%']",
        "  bake: 0s",
    ]
    if rollback is not None:
        lines.append(f"  rollback: {rollback}")
    return "\n".join(lines) + "\n"


def update(rollback: str | None) -> Update:
    return parse_update_text(update_text(rollback), "update.yaml")


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Bare:
    """A third-party driver that declares nothing: taken to honour everything (it may refuse at run time)."""

    name = "bare"

    def start(self, batch: Batch) -> None:
        return None

    def poll(self, batch: Batch) -> Sequence[OperationResult]:
        return ()

    def cancel(self, batch: Batch) -> None:
        return None

    def observe(self, asset_ids: Sequence[str]) -> Mapping[str, AssetHealth]:
        return {}

    def next_event_at(self) -> datetime | None:
        return None


# ------------------------------------------------------------------------------------------ declarations


def test_each_way_of_rolling_back_needs_its_operations() -> None:
    restore, apply, rollback = OperationKind.restore_point, OperationKind.apply, OperationKind.rollback
    assert operations_for(update("snapshot")) == (restore, apply, rollback)
    assert operations_for(update(None)) == (restore, apply, rollback)  # snapshot is the default
    assert operations_for(update("reinstall")) == (apply, rollback)
    assert operations_for(update("none")) == (apply,)


def test_the_agent_driver_refuses_snapshots_by_name_class_and_built(db_engine: Engine) -> None:
    built = AgentDriver(engine=db_engine)
    for driver in (driver_class("agent"), AgentDriver, built):
        assert refusal_for(driver, update("snapshot")) == NO_RESTORE_POINTS
        assert refusal_for(driver, update(None)) == NO_RESTORE_POINTS
        assert refusal_for(driver, update("reinstall")) is None
        assert refusal_for(driver, update("none")) is None
        # A rollout already rolling back needs only rollbacks, which agents do.
        assert refusal_for(driver, update("snapshot"), operations=[OperationKind.rollback]) is None
    assert NO_RESTORE_POINTS == "the agent driver cannot take restore points: agents reinstall; use rollback: reinstall"


@pytest.mark.parametrize("driver", ["simulated", SimulatedDriver, "teleport", Bare, Bare()])
@pytest.mark.parametrize("rollback", ["snapshot", "reinstall", "none"])
def test_simulated_unknown_and_silent_drivers_honour_everything(driver: object, rollback: str) -> None:
    if isinstance(driver, str):
        require_driver_able(driver, update(rollback))  # by name, through the registry: nothing to say
        found = declared_class(driver)
        if found is None:
            return  # not installed: named when it is built, not here
        driver = found
    assert refusal_for(driver, update(rollback)) is None  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    return build_fleet(tmp_path_factory.mktemp("fleet"), 3)


def ansible(fleet: Fleet, artifacts: Path, **options: str) -> AnsibleDriver:
    given = {"inventory": str(fleet.inventory), "update_playbook": str(UPDATE), "artifacts_dir": str(artifacts)}
    driver = load_driver("ansible", **given, **options)
    assert isinstance(driver, AnsibleDriver)
    return driver


def test_the_ansible_drivers_abilities_are_known_once_it_is_built(fleet: Fleet, tmp_path: Path) -> None:
    # Before its options are known nothing is certain: the class refuses nothing.
    for rollback in ("snapshot", "reinstall", "none"):
        assert refusal_for(driver_class("ansible"), update(rollback)) is None
    bare = ansible(fleet, tmp_path)
    snapshot_only = ansible(fleet, tmp_path, snapshot_playbook=str(SNAPSHOT))
    rollback_only = ansible(fleet, tmp_path, rollback_playbook=str(ROLLBACK))
    both = ansible(fleet, tmp_path, snapshot_playbook=str(SNAPSHOT), rollback_playbook=str(ROLLBACK))

    no_snapshot = (
        "the ansible driver has no snapshot playbook configured, so it cannot take restore points: "
        "give --driver-option snapshot_playbook=PATH, or use rollback: reinstall"
    )
    no_rollback = (
        "the ansible driver has no rollback playbook configured, so it cannot roll back: give --driver-option "
        "rollback_playbook=PATH (rollback: snapshot and rollback: reinstall both roll back through it)"
    )
    expected = {
        # (driver, rollback) → the refusal: the first operation the update needs that the driver cannot do.
        (bare, "snapshot"): no_snapshot,
        (bare, "reinstall"): no_rollback,
        (snapshot_only, "snapshot"): no_rollback,
        (snapshot_only, "reinstall"): no_rollback,
        (rollback_only, "snapshot"): no_snapshot,
        (rollback_only, "reinstall"): None,
        (both, "snapshot"): None,
        (both, "reinstall"): None,
    }
    for (driver, rollback), refusal in expected.items():
        assert refusal_for(driver, update(rollback)) == refusal, (driver.playbooks, rollback)
    for driver in (bare, snapshot_only, rollback_only, both):
        assert refusal_for(driver, update("none")) is None  # installs only: every ansible driver can


def test_a_refusal_names_the_rollback_field_and_its_line() -> None:
    text = update_text("snapshot")
    with pytest.raises(InputError) as raised:
        require_driver_able("agent", parse_update_text(text, "u.yaml"), source="u.yaml", text=text)
    [problem] = raised.value.problems
    assert (problem.source, problem.line, problem.field) == ("u.yaml", 8, "update.rollback")
    assert str(problem) == (f"u.yaml:8: update.rollback: {NO_RESTORE_POINTS} (the update says rollback: snapshot)")
    # Not written at all: snapshot is the default, and the sentence says so, at the update's line.
    text = update_text(None)
    with pytest.raises(InputError) as raised:
        require_driver_able("agent", parse_update_text(text, "u.yaml"), source="u.yaml", text=text)
    [problem] = raised.value.problems
    assert problem.line == 2
    assert problem.message.endswith("(the update says rollback: snapshot, the default)")
    require_driver_able("agent", update("reinstall"))  # nothing to say


# ------------------------------------------------------------------------------------------ bounds


def test_agent_timeouts_are_bounded(db_url: str) -> None:
    longest = load_driver("agent", database=db_url, install_timeout="7d")
    assert isinstance(longest, AgentDriver)
    assert longest.install_timeout == MAX_TIMEOUT
    for key, value in [
        ("install_timeout", "8d"),
        ("heartbeat_timeout", "99999999999999d"),
        ("install_timeout", "0s"),
    ]:
        with pytest.raises(InputError) as raised:
            load_driver("agent", database=db_url, **{key: value})
        assert str(raised.value) == (
            f"--driver-option: agent driver option {key}={value!r}: expected a duration above zero and at most 7d, "
            "such as 30s, 5m or 1h"
        )


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 10**30), st.sampled_from("smhd")),
        st.text(max_size=20),
    )
)
def test_any_agent_timeout_builds_within_bounds_or_is_refused_with_a_sentence(value: str) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = None
    engine = sa.create_engine("sqlite://")
    try:
        if seconds is None or not 0 < seconds <= 7 * 86400:
            with pytest.raises(InputError) as raised:
                AgentDriver(engine=engine, install_timeout=value)
            assert str(raised.value).startswith(f"--driver-option: agent driver option install_timeout={value!r}: ")
            return
        driver = AgentDriver(engine=engine, install_timeout=value)
        assert driver.install_timeout == seconds
        # The longest bound still makes dates a poll can compare.
        assert T0 + timedelta(seconds=driver.install_timeout) > T0
    finally:
        engine.dispose()


def test_ansible_durations_are_bounded(fleet: Fleet, tmp_path: Path) -> None:
    for key, value, says in [("timeout", "8d", "at most 7d"), ("health_interval", "2d", "at most 1d")]:
        with pytest.raises(InputError) as raised:
            ansible(fleet, tmp_path, **{key: value})
        assert str(raised.value) == f"--driver-option: ansible driver option {key}={value!r}: expected {says}"


def test_agents_asked_for_restore_points_fail_them_at_once(db_engine: Engine) -> None:
    driver = AgentDriver(engine=db_engine)
    asked = Batch("r-000001", OperationKind.restore_point, "acme/agent", "2", ("app-1", "app-2", "app-1"))
    assert list(driver.poll(asked)) == [
        OperationResult("app-1", "failed", NO_RESTORE_POINTS),
        OperationResult("app-2", "failed", NO_RESTORE_POINTS),
    ]


def test_an_agent_operation_ends_within_the_install_timeout_even_when_no_row_says_when_it_opened(
    db_engine: Engine,
) -> None:
    clock = Clock(T0)
    driver = AgentDriver(engine=db_engine, install_timeout="10m", clock=clock)
    # No rollout row holds these assets in flight (a rollout stored before, or moved on): the bound starts
    # when this driver first sees the batch.
    for kind, verb in ((OperationKind.apply, "install"), (OperationKind.rollback, "rollback")):
        asked = Batch(f"r-{kind.value}", kind, "acme/agent", "2", ("app-1",))
        assert [r.status for r in driver.poll(asked)] == ["running"]
        clock.advance(600)
        assert [r.status for r in driver.poll(asked)] == ["running"]  # not yet past it
        clock.advance(1)
        assert list(driver.poll(asked)) == [
            OperationResult("app-1", "failed", f"no {verb} result from the agent within 10 min of the batch opening")
        ]


@pytest.fixture
def hung() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_an_ansible_run_that_will_not_stop_is_killed_and_its_hosts_fail(
    fleet: Fleet, tmp_path: Path, hung: list[subprocess.Popen[bytes]]
) -> None:
    artifacts = tmp_path / "artifacts"
    driver = ansible(fleet, artifacts, timeout="1s")
    rollout, host = "r-000009", host_name(0)
    asset = asset_id_for_host(host)
    ledger = Ledger(artifacts / rollout / "ledger.json", rollout)
    run_dir = artifacts / rollout / "apply-01"
    run_dir.mkdir(parents=True)
    # A run that ignores SIGTERM (a hung play), started past its timeout and both grace periods.
    ignores_term = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
        "time.sleep(600)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", ignores_term, str(run_dir / SPEC_FILE)], start_new_session=True, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"  # it ignores SIGTERM from here on
    hung.append(process)
    started = time.time() - 1 - 2 * STOP_GRACE_SECONDS - 60
    ledger.runs["apply-01"] = LedgerRun("apply-01", OperationKind.apply, {asset: host}, started, pid=process.pid)
    ledger.record(OperationKind.apply, asset, LedgerOperation(host, "running", "apply-01"))
    ledger.save()
    asked = Batch(rollout, OperationKind.apply, "acme/ward-agent", "7.16.0", (asset,))

    [first] = driver.poll(asked)  # asked to stop (SIGTERM), which it ignores
    assert first.status == "running"
    assert process.poll() is None
    [second] = driver.poll(asked)
    assert second.status == "failed"
    assert second.detail == (
        f"update.yml on {host}: did not finish within 1 s and was stopped; still running 5 min past it, "
        f"it was killed (artifacts: {run_dir})"
    )
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert driver.poll(asked) == [second]  # final: reported as before
    assert json.loads((artifacts / rollout / "ledger.json").read_text())["runs"]["apply-01"]["settled"] is True


# ------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "estate.yaml").write_text(ESTATE)
    return tmp_path


def ringfence(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RINGFENCE_DATABASE_URL=f"sqlite:///{workspace / 'ringfence.db'}", COLUMNS="300")
    return subprocess.run(
        [RINGFENCE, *args], cwd=workspace, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def stored_rollouts(workspace: Path) -> list[tuple[str, str]]:
    engine = make_engine(f"sqlite:///{workspace / 'ringfence.db'}")
    try:
        with session_scope(engine, readonly=True) as session:
            return [(r.id, r.state.phase.value) for r in list_rollouts(session)]
    finally:
        engine.dispose()


def test_rollout_create_refuses_a_driver_that_cannot_and_stores_nothing(workspace: Path) -> None:
    (workspace / "update.yaml").write_text(update_text("snapshot"))
    done = ringfence(workspace, "rollout", "create", "estate.yaml", "update.yaml", "--driver", "agent")
    assert done.returncode == 2, done.stderr
    assert f"error: update.yaml:8: update.rollback: {NO_RESTORE_POINTS}" in done.stderr
    assert "Traceback" not in done.stderr
    assert stored_rollouts(workspace) == []
    # The dry run says the same: it shows what create would do.
    dry = ringfence(workspace, "rollout", "create", "estate.yaml", "update.yaml", "--driver", "agent", "--dry-run")
    assert dry.returncode == 2
    (workspace / "update.yaml").write_text(update_text("reinstall"))
    done = ringfence(workspace, "rollout", "create", "estate.yaml", "update.yaml", "--driver", "agent", "--json")
    assert done.returncode == 0, done.stderr
    assert stored_rollouts(workspace) == [(json.loads(done.stdout)["id"], "pending")]


def test_rollout_start_refuses_a_driver_built_without_the_playbook_and_moves_nothing(
    workspace: Path, fleet: Fleet
) -> None:
    (workspace / "update.yaml").write_text(update_text("snapshot"))
    # The class cannot tell before its options are known: created.
    done = ringfence(workspace, "rollout", "create", "estate.yaml", "update.yaml", "--driver", "ansible", "--json")
    assert done.returncode == 0, done.stderr
    rollout = json.loads(done.stdout)["id"]
    options = ["-o", f"inventory={fleet.inventory}", "-o", f"update_playbook={UPDATE}"]
    options += ["-o", f"rollback_playbook={ROLLBACK}", "-o", f"artifacts_dir={workspace / 'artifacts'}"]
    done = ringfence(workspace, "rollout", "start", rollout, *options)
    assert done.returncode == 2, done.stderr
    assert (
        f"error: rollout {rollout}: update.rollback: the ansible driver has no snapshot playbook configured, so it "
        "cannot take restore points: give --driver-option snapshot_playbook=PATH, or use rollback: reinstall "
        "(the update says rollback: snapshot)"
    ) in " ".join(done.stderr.split())
    assert stored_rollouts(workspace) == [(rollout, "pending")]
    log = json.loads(ringfence(workspace, "rollout", "log", rollout, "--json").stdout)["entries"]
    assert [e["action"] for e in log] == ["rollout.create"]
    assert not (workspace / "artifacts" / rollout).exists()  # no run, no ledger
