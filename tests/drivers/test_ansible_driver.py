"""The ansible driver against real ansible-core and ansible-runner, on hosts that are local directories.

The fleet and playbooks are in ``ansible_fixtures``. No mocks: every result below comes from a real
``ansible-playbook`` run; the events summary is also tested on its own with events shaped as
ansible-runner writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.ansible_fixtures import (
    BROKEN_MODEL,
    HEALTH,
    INSTALLED,
    RELEASE,
    ROLLBACK,
    SLOW,
    SNAPSHOT,
    UPDATE,
    Fleet,
    build_fleet,
    host_name,
)
from ringfence.core.driver import Batch, Driver, OperationKind, OperationResult
from ringfence.core.errors import DriverError, InputError
from ringfence.core.gates import AssetStatus, FailureSignal
from ringfence.drivers.ansible import AnsibleDriver, HostOutcome, read_run_outcome
from ringfence.drivers.registry import load_driver
from ringfence.files.importers.ansible import asset_id_for_host

ROLLOUT = "r-000007"


def make_driver(fleet: Fleet, artifacts: Path, **options: str | None) -> AnsibleDriver:
    given: dict[str, str | None] = {
        "inventory": str(fleet.inventory),
        "update_playbook": str(UPDATE),
        "snapshot_playbook": str(SNAPSHOT),
        "rollback_playbook": str(ROLLBACK),
        "health_playbook": str(HEALTH),
        "artifacts_dir": str(artifacts),
        "forks": "10",
        "health_interval": "10m",
        "extravars": json.dumps({"broken_model": BROKEN_MODEL}),
    }
    given.update(options)
    driver = load_driver("ansible", **{k: v for k, v in given.items() if v is not None})
    assert isinstance(driver, AnsibleDriver)
    return driver


def batch(kind: OperationKind, *hosts: str, rollout: str = ROLLOUT) -> Batch:
    return Batch(rollout, kind, "acme/ward-agent", RELEASE, tuple(asset_id_for_host(h) for h in hosts))


def wait_for(driver: AnsibleDriver, work: Batch, seconds: float = 180) -> dict[str, OperationResult]:
    """Poll until every asset of ``work`` has a final result."""
    deadline = time.monotonic() + seconds
    while True:
        results = {r.asset_id: r for r in driver.poll(work)}
        if len(results) == len(work.assets) and all(r.is_final for r in results.values()):
            return results
        if time.monotonic() > deadline:
            pytest.fail(f"the ansible runs did not finish within {seconds}s: {results}")
        time.sleep(0.2)


def run_dirs(artifacts: Path, rollout: str = ROLLOUT) -> list[str]:
    return sorted(p.name for p in (artifacts / rollout).iterdir() if p.is_dir())


def run_pid(artifacts: Path, run: str) -> int:
    return int(json.loads((artifacts / ROLLOUT / run / "ringfence-pid.json").read_text())["pid"])


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return build_fleet(tmp_path / "fleet", 6, storage_faults=[host_name(1)], unreachable=[host_name(5)])


@pytest.fixture
def processes_of(tmp_path: Path) -> Iterator[list[Path]]:
    """Run directories whose leftover processes (a play the test interrupted) are killed after the test."""
    directories: list[Path] = []
    yield directories
    for directory in directories:
        for pid in _pids_mentioning(str(directory)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_until_a_task_runs(run_dir: Path, seconds: float = 60) -> None:
    """Until ansible-playbook has started a task on a host (its event is in the run's artifacts)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        events = run_dir / "job_events"
        if events.is_dir() and any('"runner_on_start"' in p.read_text() for p in events.glob("*.json")):
            return
        time.sleep(0.2)
    pytest.fail(f"no task started in {run_dir} within {seconds}s")


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _running(pid: int) -> bool:
    """Alive and not a zombie (an exited process its parent, here possibly init, has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


# ------------------------------------------------------------------------------------------ events → outcomes


def _event(kind: str, host: str | None = None, **data: object) -> dict[str, object]:
    event_data: dict[str, object] = dict(data)
    if host is not None:
        event_data["host"] = host
    return {"event": kind, "event_data": event_data}


def test_the_recap_decides_each_hosts_outcome_and_the_task_events_give_the_message() -> None:
    events = [
        _event("runner_on_ok", "a", task="install", res={"changed": True}),
        _event("runner_on_failed", "b", task="install", res={"msg": "non-zero return code", "stderr": "disk full"}),
        # A failure the play rescued: Ansible's recap shows no failure, so neither does the outcome.
        _event("runner_on_failed", "c", task="install", res={"msg": "flaky"}),
        _event("runner_on_failed", "d", task="probe", ignore_errors=True, res={"msg": "ignored"}),
        _event("runner_on_unreachable", "e", task="install", res={"msg": "Connection refused"}),
        _event("runner_on_ok", "a", task="name it", res={"ansible_facts": {"ringfence_restore_point": "snap-1"}}),
        _event(
            "playbook_on_stats",
            ok={"a": 2, "c": 1, "d": 1},
            changed={"a": 1},
            failures={"b": 1},
            dark={"e": 1},
            rescued={"c": 1},
            processed={"a": 1, "b": 1, "c": 1, "d": 1, "e": 1},
        ),
    ]
    outcome = read_run_outcome(events, ["a", "b", "c", "d", "e", "f"], status="failed", rc=2, finished_at=1.0)
    assert outcome.hosts["a"] == HostOutcome("a", "ok", "", 2, 1, "snap-1")
    assert outcome.hosts["b"].outcome == "failed"
    assert outcome.hosts["b"].message == "task 'install' failed: non-zero return code — disk full"
    assert outcome.hosts["c"].outcome == "ok"
    assert outcome.hosts["d"].outcome == "ok"
    assert outcome.hosts["e"] == HostOutcome("e", "unreachable", "unreachable at task 'install': Connection refused")
    assert outcome.hosts["f"].outcome == "missing"  # not in the recap: the play never ran on it


def test_without_a_recap_only_failures_seen_count_and_the_rest_is_missing() -> None:
    events = [
        _event("runner_on_ok", "a", task="install", res={}),
        _event("runner_on_failed", "b", task="install", res={"rc": 3}),
    ]
    outcome = read_run_outcome(events, ["a", "b"], status="timeout", rc=254, finished_at=1.0)
    assert outcome.hosts["a"].outcome == "missing"  # an ok task is no proof the play finished there
    assert outcome.hosts["b"] == HostOutcome("b", "failed", "task 'install' failed: exit status 3")


# ------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"inventory": None}, "needs --driver-option inventory=PATH"),
        ({"update_playbook": None}, "needs --driver-option update_playbook=PATH"),
        ({"snapshot_playbook": "/nowhere/snapshot.yml"}, "snapshot_playbook='/nowhere/snapshot.yml': there is no"),
        ({"forks": "many"}, "forks='many': expected a whole number"),
        ({"timeout": "10"}, "timeout='10': expected a duration"),
        ({"extravars": "{not json"}, "extravars='{not json': is not JSON"),
        ({"extravars": "[1, 2]"}, "expected a JSON object"),
        ({"extravars": '{"ringfence_version": "9"}'}, "ringfence sets the ringfence_* variables itself"),
    ],
)
def test_bad_options_are_refused_with_a_sentence(
    fleet: Fleet, tmp_path: Path, options: dict[str, str | None], says: str
) -> None:
    with pytest.raises(InputError, match=None) as raised:
        make_driver(fleet, tmp_path / "artifacts", **options)
    assert says in str(raised.value)


def test_an_inventory_ansible_cannot_read_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("all:\n  hosts: [not, a, mapping\n")
    fleet = Fleet(root=tmp_path, inventory=broken, models={})
    with pytest.raises(InputError) as raised:
        make_driver(fleet, tmp_path / "artifacts")
    assert str(raised.value).startswith(f"{broken}: ansible-inventory could not read the inventory")


def test_missing_abilities_raise_and_without_a_health_playbook_health_is_unknown(fleet: Fleet, tmp_path: Path) -> None:
    driver = make_driver(
        fleet, tmp_path / "artifacts", snapshot_playbook=None, rollback_playbook=None, health_playbook=None
    )
    assert isinstance(driver, Driver)
    assert driver.name == "ansible"
    with pytest.raises(DriverError) as raised:
        driver.start(batch(OperationKind.restore_point, host_name(0)))
    assert str(raised.value) == (
        "the ansible driver has no snapshot playbook configured, so it cannot take restore points"
    )
    with pytest.raises(DriverError, match="no rollback playbook configured, so it cannot roll back"):
        driver.start(batch(OperationKind.rollback, host_name(0)))
    assert driver.observe([asset_id_for_host(h) for h in fleet.hosts]) == {}
    assert driver.next_event_at() is None


# ------------------------------------------------------------------------------------------ operations


def test_each_host_gets_its_own_result_from_one_run_limited_to_the_batch(fleet: Fleet, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    driver = make_driver(fleet, artifacts)
    ok, corrupt, gone, other = host_name(0), host_name(1), host_name(5), host_name(2)
    work = Batch(
        ROLLOUT,
        OperationKind.restore_point,
        "acme/ward-agent",
        RELEASE,
        (asset_id_for_host(ok), asset_id_for_host(corrupt), asset_id_for_host(gone), "not-in-the-inventory"),
    )
    driver.start(work)
    results = wait_for(driver, work)
    run_dir = artifacts / ROLLOUT / "restore_point-01"

    taken = results[asset_id_for_host(ok)]
    assert taken.status == "succeeded"
    assert taken.ref == f"{ok}/snapshot@{ROLLOUT}"  # named by the playbook's ringfence_restore_point fact
    assert taken.detail == (
        f"restore point {taken.ref} taken and verified by snapshot.yml on {ok} (3 ok, 2 changed) (artifacts: {run_dir})"
    )
    failed = results[asset_id_for_host(corrupt)]
    assert failed.status == "failed"
    assert failed.ref is None
    assert failed.detail.startswith(
        f"snapshot.yml failed on {corrupt}: task 'Verify the restore point against the installed version' failed: "
    )
    unreachable = results[asset_id_for_host(gone)]
    assert unreachable.status == "failed"
    assert unreachable.detail.startswith(f"snapshot.yml: {gone} was unreachable at task 'Copy the installed version")
    assert unreachable.detail.endswith(f"(artifacts: {run_dir})")
    assert results["not-in-the-inventory"].detail == (
        f"asset 'not-in-the-inventory' is not a host of the inventory {fleet.inventory}, so no playbook can reach it"
    )

    # One run, limited to the batch's hosts: the others were never touched.
    assert run_dirs(artifacts) == ["restore_point-01"]
    assert sorted((run_dir / "limit").read_text().split()) == sorted([ok, corrupt, gone])
    assert (run_dir / "job_events").is_dir()
    assert (run_dir / "stdout").read_text()
    assert fleet.has_snapshot(ok)
    assert not fleet.has_snapshot(other)
    spec = json.loads((run_dir / "ringfence-run.json").read_text())
    assert spec["extravars"] == {
        "broken_model": BROKEN_MODEL,
        "ringfence_operation": "restore_point",
        "ringfence_product": "acme/ward-agent",
        "ringfence_version": RELEASE,
        "ringfence_rollout": ROLLOUT,
    }


@pytest.mark.slow
def test_an_operation_is_never_run_twice_in_a_rollout_even_by_a_new_driver(fleet: Fleet, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    host = host_name(0)
    work = batch(OperationKind.apply, host)
    first = make_driver(fleet, artifacts)
    first.start(work)
    first.start(work)  # the controller repeating its step: nothing new starts
    del first  # the controller process going away: the run carries on by itself

    second = make_driver(fleet, artifacts)
    results = wait_for(second, work)
    assert results[asset_id_for_host(host)].status == "succeeded"
    assert results[asset_id_for_host(host)].detail.startswith(f"update.yml installed the release on {host}")
    assert fleet.version(host) == RELEASE  # ringfence_version reached the playbook

    (fleet.host_dir(host) / "version").write_text("touched by hand\n")
    second.start(work)
    assert second.poll(work) == list(results.values())
    assert run_dirs(artifacts) == ["apply-01"]
    assert fleet.version(host) == "touched by hand"  # not installed again

    # Another rollout is another ledger: there the same host is updated.
    other = batch(OperationKind.apply, host, rollout="r-000008")
    second.start(other)
    assert wait_for(second, other)[asset_id_for_host(host)].status == "succeeded"
    assert fleet.version(host) == RELEASE


def test_a_run_over_its_timeout_fails_its_hosts(fleet: Fleet, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    driver = make_driver(fleet, artifacts, update_playbook=str(SLOW), timeout="2s")
    work = batch(OperationKind.apply, host_name(0), host_name(2))
    driver.start(work)
    results = wait_for(driver, work, seconds=90)
    for host in (host_name(0), host_name(2)):
        result = results[asset_id_for_host(host)]
        assert result.status == "failed"
        run_dir = artifacts / ROLLOUT / "apply-01"
        assert result.detail == f"slow.yml on {host}: did not finish within 2 s and was stopped (artifacts: {run_dir})"
    assert (artifacts / ROLLOUT / "apply-01" / "status").read_text() == "timeout"


def test_cancel_stops_the_play_and_fails_the_hosts_it_had_not_finished(
    fleet: Fleet, tmp_path: Path, processes_of: list[Path]
) -> None:
    artifacts = tmp_path / "artifacts"
    processes_of.append(artifacts)
    driver = make_driver(fleet, artifacts, update_playbook=str(SLOW), extravars='{"slow_seconds": 60}')
    work = batch(OperationKind.apply, host_name(0))
    driver.start(work)
    assert [r.status for r in driver.poll(work)] == ["running"]
    run_dir = artifacts / ROLLOUT / "apply-01"
    wait_until_a_task_runs(run_dir)
    run_process = run_pid(artifacts, "apply-01")
    [play] = [p for p in _pids_mentioning(str(run_dir)) if _parent(p) == run_process]
    assert "ansible-playbook" in _cmdline(play)
    started = time.monotonic()
    driver.cancel(work)
    assert time.monotonic() - started < 20
    # The play is stopped, not only ringfence's side of it. (A task already running on a host may run to
    # its end, in a worker of its own: Ansible cannot take back a command a host is executing.)
    assert not _running(play)
    assert not _running(run_process)
    [result] = driver.poll(work)
    assert result.status == "failed"
    assert result.detail.startswith(f"slow.yml on {host_name(0)}: cancelled before it finished")
    outcome = json.loads((artifacts / ROLLOUT / "apply-01" / "ringfence-outcome.json").read_text())
    assert outcome["status"] == "canceled"
    driver.cancel(work)  # again: nothing changes
    assert driver.poll(work) == [result]


def test_a_run_whose_process_died_fails_its_hosts_as_interrupted(
    fleet: Fleet, tmp_path: Path, processes_of: list[Path]
) -> None:
    artifacts = tmp_path / "artifacts"
    processes_of.append(artifacts)
    driver = make_driver(fleet, artifacts, update_playbook=str(SLOW), extravars='{"slow_seconds": 60}')
    work = batch(OperationKind.apply, host_name(0))
    driver.start(work)
    wait_until_a_task_runs(artifacts / ROLLOUT / "apply-01")
    os.kill(run_pid(artifacts, "apply-01"), signal.SIGKILL)  # e.g. the OOM killer, or a person
    deadline = time.monotonic() + 30
    while (results := driver.poll(work))[0].status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert results[0].status == "failed"
    assert "the run stopped before it finished (its process is gone" in results[0].detail
    assert "may be part-way through the playbook" in results[0].detail


# ------------------------------------------------------------------------------------------ health


@pytest.mark.slow
def test_observe_reports_health_and_reads_again_only_what_changed(fleet: Fleet, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    driver = make_driver(fleet, artifacts)
    healthy, sick, gone, later = host_name(0), host_name(2), host_name(5), host_name(1)
    (fleet.host_dir(sick) / "health").write_text("broken\n")
    asked = [asset_id_for_host(h) for h in (healthy, sick, gone)]

    readings = driver.observe(asked)
    assert readings[asset_id_for_host(healthy)].status is AssetStatus.healthy
    failed = readings[asset_id_for_host(sick)]
    assert (failed.status, failed.signal) == (AssetStatus.failed, FailureSignal.service_check_failed)
    assert failed.detail is not None
    assert failed.detail.startswith("health.yml: task 'The ward application's service answers' failed")
    lost = readings[asset_id_for_host(gone)]
    assert (lost.status, lost.signal) == (AssetStatus.failed, FailureSignal.heartbeat_lost)

    health_runs = artifacts / "health"
    assert len(list(health_runs.iterdir())) == 1
    # Within the interval, nothing changed: the same readings, no new run.
    assert driver.observe(asked) == readings
    assert len(list(health_runs.iterdir())) == 1

    # An update breaks a host: its next reading comes from a run started after the install, on it alone.
    (fleet.host_dir(sick) / "health").write_text("ok\n")
    update = batch(OperationKind.apply, later)
    driver.start(update)
    during = driver.observe([*asked, asset_id_for_host(later)])
    assert asset_id_for_host(later) not in during  # being updated: unknown, not healthy
    wait_for(driver, update)
    (fleet.host_dir(later) / "health").write_text("broken\n")
    after = driver.observe([*asked, asset_id_for_host(later)])
    runs = sorted(health_runs.iterdir())
    assert len(runs) == 2
    assert (runs[-1] / "limit").read_text().split() == [later]
    assert after[asset_id_for_host(later)].status is AssetStatus.failed
    assert after[asset_id_for_host(later)].seconds_after_install is not None
    # The others keep their reading from before (the interval has not passed): the sick host still reads
    # failed until the next periodic run, as a real health cache would.
    assert after[asset_id_for_host(sick)].status is AssetStatus.failed


@pytest.mark.slow
def test_a_rollback_gets_each_hosts_restore_point(fleet: Fleet, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    driver = make_driver(fleet, artifacts)
    host = host_name(4)  # the broken model
    assert fleet.models[host] == BROKEN_MODEL
    for kind in (OperationKind.restore_point, OperationKind.apply, OperationKind.rollback):
        work = batch(kind, host)
        driver.start(work)
        [result] = wait_for(driver, work).values()
        assert result.status == "succeeded", result.detail
        if kind is OperationKind.apply:
            assert (fleet.version(host), fleet.health(host)) == (RELEASE, "broken")
    assert (fleet.version(host), fleet.health(host)) == (INSTALLED, "ok")
    assert (fleet.host_dir(host) / "restored_from").read_text().strip() == f"{host}/snapshot@{ROLLOUT}"
