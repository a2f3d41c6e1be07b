"""The ``prometheus`` health source against a real Prometheus (Debian's binary) scraping exporters the tests own.

One Prometheus for the module, scraping one page per asset every second; each test flips the values of assets
of its own, so the tests do not depend on each other's order. What is checked: a healthy stratum passes its
gate; an updated asset whose ``up`` drops, whose error ratio rises or whose synthetic check fails fails its
gate against the not-yet-updated assets of its stratum; an asset without series is not judged (never passed);
a Prometheus that does not answer, or rejects a query, is a sentence (DriverError: the controller pauses),
never a crash or a pass; and a rollout with the simulated driver, judged by Prometheus, halts when the exporter
reports the updated canary unhealthy.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.prometheus_fixtures import (
    Exporter,
    RunningPrometheus,
    require_prometheus,
    running_prometheus,
    scrape_config,
    serving,
    wait_for,
)
from ringfence.core.errors import DriverError, InputError
from ringfence.core.estate import parse_estate_text
from ringfence.core.gates import AssetHealth, AssetStatus, GateOutcome, GatePolicy, StratumSample, judge_ring
from ringfence.core.graph import compile_estate
from ringfence.core.rollout.controller import Controller, start_rollout
from ringfence.core.rollout.memory import MemoryRolloutRepository
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.rollout.strategy import plan_strategy
from ringfence.core.simulation import SimulatedClock, SimulationDriver
from ringfence.core.update import Update
from ringfence.drivers.prometheus import CHECKS_ENV, URL_ENV, PrometheusHealth, read_checks
from ringfence.drivers.registry import DriverContext, build_health_source
from ringfence.service.driver_state import rollout_driver, rollout_health_source
from ringfence.store.db import make_engine

CONTROL = ("ws-1", "ws-2", "ws-3", "ws-4")
"""Not yet updated members of the stratum: healthy throughout."""
DOWN, ERRORS, SYNTHETIC, ROLLOUT = "ws-5", "ws-6", "ws-7", ("app-1", "app-2", "app-3", "app-4")
SILENT = "ws-9"
"""An asset no exporter serves: no series at all."""
SCRAPED = (*CONTROL, DOWN, ERRORS, SYNTHETIC, *ROLLOUT)

CHECKS = """\
checks:
  - name: up
    query: 'up{instance=~"{asset}(:[0-9]+)?"}'
    fail_when: "< 1"
    signal: heartbeat_lost
  - name: error rate
    query: >-
      sum by (instance) (rate(app_requests_total{code=~"5..", instance=~"{asset}"}[{window}]))
      / sum by (instance) (rate(app_requests_total{instance=~"{asset}"}[{window}]))
    window: 5s
    fail_when: "> 0.05"
  - name: synthetic check
    query: 'ringfence_test_healthy{instance=~"{asset}"}'
    fail_when: "< 1"
"""


@dataclass(frozen=True)
class Monitoring:
    prometheus: RunningPrometheus
    exporter: Exporter
    checks: Path

    def source(self, **options: str) -> PrometheusHealth:
        return PrometheusHealth(url=self.prometheus.url, checks=str(self.checks), **options)


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    binary = require_prometheus()
    tmp = tmp_path_factory.mktemp("prometheus")
    checks = tmp / "checks.yaml"
    checks.write_text(CHECKS)
    exporter = Exporter()
    for asset in SCRAPED:
        exporter.set(asset)
    with serving(exporter) as port, running_prometheus(binary, scrape_config(port, SCRAPED), tmp) as prometheus:
        found = Monitoring(prometheus, exporter, checks)
        source = found.source()
        # Two scrapes of every page at least: a rate needs two samples in its window.
        wait_for(
            lambda: (
                {a: h.status for a, h in source.observe(SCRAPED).items()} == dict.fromkeys(SCRAPED, AssetStatus.healthy)
            ),
            timeout=30,
            what="every scraped asset reading healthy",
        )
        yield found


def gate(updated: AssetHealth | None, asset: str, readings: Mapping[str, AssetHealth]) -> GateOutcome:
    """The ring's outcome when ``asset`` alone was updated and ``CONTROL`` was not."""
    health = updated or AssetHealth(asset, AssetStatus.unknown)
    control = tuple(readings.get(a) or AssetHealth(a, AssetStatus.unknown) for a in CONTROL if a != asset)
    sample = StratumSample(("host", "linux"), (health,), control)
    return judge_ring(0, [sample], GatePolicy()).outcome


def read_until(source: PrometheusHealth, assets: Sequence[str], asset: str, status: AssetStatus) -> AssetHealth:
    found: dict[str, AssetHealth] = {}

    def reads() -> bool:
        found.update(source.observe(assets))
        return asset in found and found[asset].status is status

    wait_for(reads, what=f"{asset} reading {status}")
    return found[asset]


def test_a_healthy_stratum_passes(monitoring: Monitoring) -> None:
    source = monitoring.source()
    readings = source.observe([*CONTROL, "ws-1"])
    assert set(readings) == set(CONTROL)  # each asked asset once, and only those asked
    assert {h.status for h in readings.values()} == {AssetStatus.healthy}
    assert gate(readings["ws-1"], "ws-1", {a: readings[a] for a in CONTROL if a != "ws-1"}) is GateOutcome.passed


def test_an_updated_asset_whose_up_drops_fails_its_gate(monitoring: Monitoring) -> None:
    source = monitoring.source()
    monitoring.exporter.set(DOWN, down=True)  # its page answers 503: Prometheus's `up` is 0
    reading = read_until(source, [DOWN, *CONTROL], DOWN, AssetStatus.failed)
    assert reading.signal is not None
    assert reading.signal.value == "heartbeat_lost"
    assert reading.detail is not None
    assert reading.detail.startswith("prometheus check 'up': up{")
    assert "= 0, failing when < 1" in reading.detail
    assert gate(reading, DOWN, source.observe(CONTROL)) is GateOutcome.failed


def test_an_updated_asset_whose_error_rate_rises_fails_its_gate(monitoring: Monitoring) -> None:
    source = monitoring.source()
    monitoring.exporter.set(ERRORS, errors=40)  # 40 of 100 requests fail: a ratio of 0.4 over 5 s
    reading = read_until(source, [ERRORS, *CONTROL], ERRORS, AssetStatus.failed)
    assert reading.signal is not None
    assert reading.signal.value == "service_check_failed"
    assert reading.detail is not None
    assert reading.detail.startswith("prometheus check 'error rate'")
    assert "failing when > 0.05" in reading.detail
    assert gate(reading, ERRORS, source.observe(CONTROL)) is GateOutcome.failed


def test_a_failed_synthetic_check_fails_and_a_check_can_be_narrowed(monitoring: Monitoring, tmp_path: Path) -> None:
    source = monitoring.source()
    monitoring.exporter.set(SYNTHETIC, healthy=False)
    reading = read_until(source, [SYNTHETIC], SYNTHETIC, AssetStatus.failed)
    assert reading.detail is not None
    assert "'synthetic check'" in reading.detail
    # A check that applies only to other assets says nothing about this one: judged on `up` alone, it is well.
    narrowed = tmp_path / "narrowed.yaml"
    narrowed.write_text(
        CHECKS.replace("  - name: synthetic check\n", '  - name: synthetic check\n    assets: "^app-"\n')
    )
    only_up = PrometheusHealth(url=monitoring.prometheus.url, checks=str(narrowed))
    assert only_up.observe([SYNTHETIC])[SYNTHETIC].status is AssetStatus.healthy


def test_no_series_is_not_judged_never_passed(monitoring: Monitoring) -> None:
    source = monitoring.source()
    readings = source.observe([SILENT, *CONTROL])
    assert SILENT not in readings  # unknown: no telemetry
    assert gate(readings.get(SILENT), SILENT, readings) is GateOutcome.inconclusive
    # Series for some checks but not all is no pass either: one check that finds nothing leaves it unknown.
    partial = PrometheusHealth(url=monitoring.prometheus.url, checks=str(monitoring.checks), batch="1")
    assert partial.checks.checks[0].name == "up"
    missing = monitoring.checks.parent / "missing.yaml"
    missing.write_text(CHECKS + "  - name: nothing\n    query: 'absent_metric{instance=~\"{asset}\"}'\n"
                       '    fail_when: "> 0"\n')  # fmt: skip
    assert PrometheusHealth(url=monitoring.prometheus.url, checks=str(missing)).observe(CONTROL) == {}


def test_assets_are_asked_in_batches(monitoring: Monitoring) -> None:
    one_each = monitoring.source(batch="1")
    readings = one_each.observe(CONTROL)
    assert {a: h.status for a, h in readings.items()} == dict.fromkeys(CONTROL, AssetStatus.healthy)


def test_a_prometheus_that_does_not_answer_is_a_sentence_never_a_pass(monitoring: Monitoring) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = PrometheusHealth(url=f"http://127.0.0.1:{port}", checks=str(monitoring.checks))
    with pytest.raises(DriverError, match=rf"^Prometheus at http://127.0.0.1:{port} could not be asked check 'up'"):
        refused.observe(CONTROL)
    # Accepts the connection, never answers: the timeout is the sentence.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hung = PrometheusHealth(url=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout="1s")
        with pytest.raises(DriverError, match=r"did not answer check 'up' within 1s"):
            hung.observe(CONTROL)
    # A query Prometheus rejects: its own words, not a pass.
    broken = monitoring.checks.parent / "broken.yaml"
    broken.write_text("checks:\n  - {name: broken, query: 'up{{', fail_when: '< 1'}\n")
    with pytest.raises(DriverError, match=r"answered check 'broken' with HTTP 400: .*parse error"):
        PrometheusHealth(url=monitoring.prometheus.url, checks=str(broken)).observe(CONTROL)


def test_options_checks_files_and_the_environment(monitoring: Monitoring, tmp_path: Path) -> None:
    # Its options come with --health-option (or the environment): the sentence names that flag, not the drivers'.
    with pytest.raises(InputError, match="the prometheus health source needs --health-option url="):
        PrometheusHealth()
    with pytest.raises(InputError, match="expected an http:// or https:// address"):
        PrometheusHealth(url="prometheus:9090")
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - {name: up, query: up, fail_when: 'below 1'}\n")
    with pytest.raises(InputError, match=r"bad.yaml:2: checks\[0\].fail_when: expected a comparison and a number") as e:
        read_checks(bad)
    assert "at least 1 item" not in str(e.value)  # the item's own mistake, not pydantic's count of what is left
    bad.write_text(
        "checks:\n  - {name: up, query: up, fail_when: '< 1'}\n  - {name: up, query: up, fail_when: '< 1'}\n"
    )
    with pytest.raises(InputError, match="up named more than once"):
        read_checks(bad)
    with pytest.raises(InputError, match="cannot read the checks file"):
        read_checks(tmp_path / "nowhere.yaml")
    # Where the server builds the source it passes no options: the environment names Prometheus and the checks.
    driver = SimulationDriver(clock=SimulatedClock())
    context = DriverContext(environ={URL_ENV: monitoring.prometheus.url, CHECKS_ENV: str(monitoring.checks)})
    built = build_health_source("prometheus", driver, context=context)
    assert isinstance(built, PrometheusHealth)
    assert [c.name for c in built.checks.checks] == ["up", "error rate", "synthetic check"]
    assert {h.status for h in built.observe(CONTROL).values()} == {AssetStatus.healthy}


# ------------------------------------------------------------------------------------------ end to end

ESTATE = """
apiVersion: ringfence/v1
estate: clinic
services:
  - {id: web, name: Clinic web, tier: 4, requires: [{any: 1, where: "kind=vm"}]}
assets:
  - {id: app-1, kind: vm, attrs: {os: linux}, software: [{product: acme/web, version: "1.0"}]}
  - {id: app-2, kind: vm, attrs: {os: linux}, software: [{product: acme/web, version: "1.0"}]}
  - {id: app-3, kind: vm, attrs: {os: linux}, software: [{product: acme/web, version: "1.0"}]}
  - {id: app-4, kind: vm, attrs: {os: linux}, software: [{product: acme/web, version: "1.0"}]}
"""
UPDATE = Update.model_validate(
    {"id": "web-2", "product": "acme/web", "version": "2.0", "bake": "10m", "rings": [1, "100%"],
     "rollback": "reinstall"}
)  # fmt: skip


def test_a_rollout_judged_by_prometheus_halts_when_the_updated_canary_turns_unhealthy(monitoring: Monitoring) -> None:
    clock = SimulatedClock()
    driver = SimulationDriver(clock=clock, timing=UPDATE.timing)  # installs well: the simulated world sees no fault
    context = DriverContext(
        environ={URL_ENV: monitoring.prometheus.url, CHECKS_ENV: str(monitoring.checks)}, update=UPDATE
    )
    health = build_health_source("prometheus", driver, context=context)
    repository = MemoryRolloutRepository()
    strategy = plan_strategy("ringfence", compile_estate(parse_estate_text(ESTATE, "e")), UPDATE)
    repository.add("r-1", UPDATE, strategy, at=clock())
    start_rollout(repository, "r-1", actor="alice", at=clock())
    broken: set[str] = set()

    def wait_until(at: object) -> None:
        clock.advance_to(at)  # type: ignore[arg-type]
        # The release breaks what it is installed on, as the trust's synthetic check sees it: wait (in real time)
        # until Prometheus has scraped it, since the rollout moves in simulated time.
        for asset in set(driver.world.exposed()) - broken:
            broken.add(asset)
            monitoring.exporter.set(asset, healthy=False)
            read_until(health, [asset], asset, AssetStatus.failed)  # type: ignore[arg-type]

    report = Controller(repository, driver, clock, health=health).run_until_settled("r-1", wait_until=wait_until)
    assert report.phase is not RolloutPhase.COMPLETED
    halt = next(t for t in repository.transitions("r-1") if t.to_phase is RolloutPhase.HALTED)
    assert "ring 0 failed" in halt.reason, halt.reason
    assert "1 of 1 updated failed a service check" in halt.reason, halt.reason
    assert len(broken) == 1  # the canary only: the ring after it never opened
    assert driver.world.down() == ()


# ------------------------------------------------------------------ options kept with the rollout (--health-option)

UPDATE_FILE = """\
apiVersion: ringfence/v1
update: {id: web-2, product: acme/web, version: "2.0", bake: 10m, rings: [1, "100%"], rollback: reinstall}
"""


def cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The environment names no Prometheus: what judges the rollout can only come from the options kept with it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_PROMETHEUS_")}
    env.update(RINGFENCE_DATABASE_URL=f"sqlite:///{workspace / 'ringfence.db'}", COLUMNS="300")
    return subprocess.run(
        [str(Path(sys.executable).with_name("ringfence")), *args],
        cwd=workspace,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_rollout_keeps_its_prometheus_options_and_is_judged_by_them(monitoring: Monitoring, tmp_path: Path) -> None:
    (tmp_path / "estate.yaml").write_text(ESTATE)
    (tmp_path / "update.yaml").write_text(UPDATE_FILE)
    created = cli(
        tmp_path, "rollout", "create", "estate.yaml", "update.yaml", "--health-source", "prometheus",
        "--health-option", f"url={monitoring.prometheus.url}", "--health-option", f"checks={monitoring.checks}",
        "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    rollout_id = json.loads(created.stdout)["id"]
    engine = make_engine(f"sqlite:///{tmp_path / 'ringfence.db'}")
    try:
        driver = rollout_driver(engine, rollout_id, {})
        # Built as the server's loop, a worker and `rollout start` build it, with no RINGFENCE_PROMETHEUS_* set.
        with pytest.MonkeyPatch.context() as patch:
            for variable in (URL_ENV, CHECKS_ENV):
                patch.delenv(variable, raising=False)
            health = rollout_health_source(engine, rollout_id, driver)
    finally:
        engine.dispose()
    assert isinstance(health, PrometheusHealth)
    assert health.url == monitoring.prometheus.url
    assert [c.name for c in health.checks.checks] == ["up", "error rate", "synthetic check"]
    readings = health.observe(list(CONTROL))
    assert {a: h.status for a, h in readings.items()} == dict.fromkeys(CONTROL, AssetStatus.healthy)


def test_bad_health_options_are_exit_2_and_store_nothing(monitoring: Monitoring, tmp_path: Path) -> None:
    (tmp_path / "estate.yaml").write_text(ESTATE)
    (tmp_path / "update.yaml").write_text(UPDATE_FILE)
    (tmp_path / "bad-checks.yaml").write_text("checks:\n  - name: up\n    query: up\n    fail_when: sometimes\n")
    base = ("rollout", "create", "estate.yaml", "update.yaml")
    url = f"url={monitoring.prometheus.url}"
    for args, said in (
        (("--health-source", "prometheus", "--health-option", url, "--health-option", "colour=blue"), "colour"),
        (("--health-source", "prometheus", "--health-option", url, "--health-option", "checks=bad-checks.yaml"),
         "bad-checks.yaml:4: checks[0].fail_when"),
        (("--health-source", "prometheus", "--health-option", "url=ftp://x"), "expected an http:// or https://"),
        (("--health-source", "prometheus", "--health-option", url, "--health-option", "timeout=9999d"),
         "--health-option: prometheus health source option timeout='9999d'"),
        (("--health-source", "prometheus", "--health-option", "url"), "--health-option: 'url' is not key=value"),
        (("--health-option", url), "--health-option: the rollout is judged by its driver's own reading"),
    ):  # fmt: skip
        done = cli(tmp_path, *base, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert cli(tmp_path, "rollout", "list", "--json").stdout.count('"id"') == 0
