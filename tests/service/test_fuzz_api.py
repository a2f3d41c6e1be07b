"""Every operation of ``/openapi.json``, fuzzed by schemathesis against a REAL server, on SQLite and PostgreSQL.

What it holds: whatever a caller with a valid token sends (well-formed or not: huge integers, NUL characters,
strings far longer than any column, deep or odd bodies), the server never answers a 5xx, and what it answers
matches the response schema it publishes. A server error is a bug of ours; any input a caller can send deserves a
4xx problem saying what is wrong with it.

How: schemathesis reads the server's own ``/openapi.json`` and hypothesis generates cases for each operation,
valid ones and invalid ones (``GenerationMode.POSITIVE`` and ``NEGATIVE``), once with free path parameters and
once aimed at records that exist (the ward estate, a rollout, an incident, an agent's asset), so that the
handlers behind the 404s run too. Cases are sent with an admin token, and the agent operations also with an
agent token. Generation is derandomized with a fixed number of examples per operation, so a run is the same
every time and stays within CI's budget (about a minute per database on the CI machine).

Every failing case is collected (not raised at the first, so hypothesis does not spend minutes shrinking it),
and the test fails listing them with a curl command to reproduce each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

from live_server import LiveServer, make_tokens, running_server
from pg_schemas import isolated_postgres_schema, postgres_base_url

pytestmark = pytest.mark.slow

EXAMPLES_PER_STRATEGY = 20
"""Cases per operation, per generation mode and per aim (free or on existing records)."""

WARD_ESTATE = """\
apiVersion: ringfence/v1
estate: ward
services:
  - {id: ehr, name: Electronic health record, tier: 1, rto: 4h, continuity: Paper notes, requires: [db-1]}
  - {id: rota, tier: 3, rto: 1d, requires: [{any: 1, of: [app-1, app-2]}]}
assets:
  - {id: db-1, kind: vm, site: north, software: [{product: pg/postgres, version: "15"}]}
  - {id: app-1, kind: vm, site: north, software: [{product: acme/agent, version: "1"}]}
  - {id: app-2, kind: vm, site: south, software: [{product: acme/agent, version: "1"}]}
"""
AGENT_UPDATE = """\
apiVersion: ringfence/v1
update: {id: agent-2, product: acme/agent, version: "2", rings: [1, "100%"], bake: 0s, rollback: snapshot}
"""


@dataclass
class Findings:
    """What the run saw: cases sent, and the failures (one line each, with a curl command)."""

    cases: int = 0
    server_errors: list[str] = field(default_factory=list)
    nonconforming: list[str] = field(default_factory=list)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fuzzed_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # The controller loop is off: what a case answers must not depend on where a rollout the fuzzer made has got to.
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'ringfence.db'}"
        with running_server(url, controller=False) as server:
            yield server
        return
    with isolated_postgres_schema(postgres_base_url()) as url, running_server(url, controller=False) as server:
        yield server


def _existing_records(server: LiveServer, admin: dict[str, str]) -> dict[str, Any]:
    """Records for the aimed cases to reach: an estate, a rollout, an incident; their path parameters."""
    with httpx.Client(base_url=server.url, headers=admin, timeout=60) as http:
        uploaded = http.post("/v1/estates", json={"content": WARD_ESTATE})
        assert uploaded.status_code == 201, uploaded.text
        rollout = http.post("/v1/rollouts", json={"estate": "ward", "update": AGENT_UPDATE})
        assert rollout.status_code == 201, rollout.text
        incident = http.post("/v1/incidents", json={"estate": "ward", "fail": ["asset:db-1"]})
        assert incident.status_code == 201, incident.text
    return {
        "name": "ward",
        "version_id": uploaded.json()["version"]["id"],
        "rollout_id": rollout.json()["id"],
        "incident_id": incident.json()["id"],
        "asset": "app-1",
    }


def test_no_operation_answers_a_server_error(fuzzed_server: LiveServer) -> None:
    tokens = make_tokens(fuzzed_server.database_url)
    agent = tokens.issue("app-1-agent", "agent", asset="app-1")
    admin = tokens.headers(tokens.admin)
    records = _existing_records(fuzzed_server, admin)
    # The fuzzer's own tokens are not its to revoke: it would lock itself out and test nothing after.
    with httpx.Client(base_url=fuzzed_server.url, headers=admin, timeout=60) as http:
        own_token_ids = {t["id"] for t in http.get("/v1/tokens").json()["tokens"]}

    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    findings = Findings()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the server's own schema must describe every operation it serves
        operation = result.ok()
        callers = [admin, tokens.headers(agent)] if "agents" in (operation.tags or []) else [admin]
        aimed = {p.name: records[p.name] for p in operation.path_parameters if p.name in records}
        for headers in callers:
            _fuzz(fuzzed_server.url, operation, headers, aimed, own_token_ids, findings)

    summary = (
        f"{findings.cases} cases; {len(findings.server_errors)} server errors; "
        f"{len(findings.nonconforming)} answers off their schema"
    )
    print(summary)
    assert findings.cases > 1000, summary
    assert not findings.server_errors, summary + "\n" + "\n".join(findings.server_errors[:30])
    assert not findings.nonconforming, summary + "\n" + "\n".join(findings.nonconforming[:30])


def _fuzz(
    base_url: str,
    operation: Any,
    headers: dict[str, str],
    aimed: dict[str, Any],
    own_token_ids: set[int],
    findings: Findings,
) -> None:
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if aimed:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=aimed))

    for strategy in strategies:

        @settings(
            max_examples=EXAMPLES_PER_STRATEGY,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def send(case: Any) -> None:
            if case.path_parameters and case.path_parameters.get("token_id") in own_token_ids:
                return
            findings.cases += 1
            response = case.call(base_url=base_url, headers=headers, timeout=60)
            where = f"{response.status_code} {case.method} {case.formatted_path}"
            # Every failure is collected, then reported together: a FailureGroup is a BaseExceptionGroup.
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except FailureGroup:
                findings.server_errors.append(f"{where}: {response.text[:200]!r}\n    {case.as_curl_command()}")
                return
            try:
                case.validate_response(response, checks=[response_schema_conformance])
            except FailureGroup as failed:
                findings.nonconforming.append(f"{where}: {_first_line(failed)}\n    {case.as_curl_command()}")

        # An operation with nothing to send wrong (no parameters, no body) has no negative cases.
        with contextlib.suppress(Unsatisfiable):
            send()


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
