"""An estate of record's assurance file and policy stored on a real server, and the estate assessed there.

The expected assessment is what the ``ringfence assess --json`` command says of the same files on disk: the
server must answer the same document, not one of its own making.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from live_server import RINGFENCE, LiveServer, Tokens
from ringfence.files.disk import examples_dir, sample_estate_path

if TYPE_CHECKING:
    from conftest import Samples

AS_OF = "2026-12-01"
SAMPLE_ASSURANCE = examples_dir() / "city-general" / "assurance.yaml"
ESTATE = "city-general"

TIER_ONE_POLICY = """\
apiVersion: ringfence/v1
policy: tier-one-only
tiers:
  1:
    supplier-assessments: {dspt: 12 months}
    exit-plan: true
"""


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def put(client: httpx.Client, what: str, text: str, secret: str, estate: str = ESTATE) -> httpx.Response:
    return client.put(
        f"/v1/estates/{estate}/{what}",
        content=text.encode(),
        headers={**auth(secret), "Content-Type": "application/yaml"},
    )


def cli_assess(estate: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [RINGFENCE, "assess", str(estate), "--as-of", AS_OF, "--json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def stored(module_server: LiveServer, module_tokens: Tokens, client: httpx.Client) -> Tokens:
    """The sample estate uploaded by an operator (nothing of its assurance stored yet)."""
    answer = client.post(
        "/v1/estates",
        json={"content": sample_estate_path().read_text(encoding="utf-8")},
        headers=auth(module_tokens.operator),
    )
    assert answer.status_code in (200, 201), answer.text
    return module_tokens


def test_an_estate_without_files_is_assessed_with_the_bundled_policy_and_no_evidence(
    client: httpx.Client, stored: Tokens, samples: Samples, tmp_path: Path
) -> None:
    ward = samples.ward_named("ward-unassured")
    answer = client.post("/v1/estates", json={"content": ward}, headers=auth(stored.operator))
    assert answer.status_code in (200, 201), answer.text
    assert client.get("/v1/estates/ward-unassured/assurance", headers=auth(stored.viewer)).status_code == 404
    policy = client.get("/v1/estates/ward-unassured/policy", headers=auth(stored.viewer))
    assert policy.status_code == 200
    assert policy.headers["Ringfence-Policy"] == "bundled"
    assert policy.text == (examples_dir() / "policy-acute.yaml").read_text(encoding="utf-8")
    assessed = client.get("/v1/estates/ward-unassured/assessment", params={"as_of": AS_OF}, headers=auth(stored.viewer))
    assert assessed.status_code == 200, assessed.text
    # The command, with no assurance file beside the estate, assesses with no evidence at all.
    (tmp_path / "estate.yaml").write_text(ward, encoding="utf-8")
    assert assessed.json() == cli_assess(tmp_path / "estate.yaml")
    assert assessed.json()["assurance"] == "none"


def test_the_stored_assurance_file_gives_the_commands_assessment(
    client: httpx.Client, stored: Tokens, tmp_path: Path
) -> None:
    text = SAMPLE_ASSURANCE.read_text(encoding="utf-8")
    refused = put(client, "assurance", text, stored.viewer)
    assert refused.status_code == 403
    first = put(client, "assurance", text, stored.operator)
    assert first.status_code == 200, first.text
    assert first.json()["name"] == "city-general-2026"
    again = put(client, "assurance", text, stored.operator)
    assert (again.json()["changed"], again.json()["id"]) == (False, first.json()["id"])
    back = client.get(f"/v1/estates/{ESTATE}/assurance", headers=auth(stored.viewer))
    assert back.text == text
    answer = client.get(f"/v1/estates/{ESTATE}/assessment", params={"as_of": AS_OF}, headers=auth(stored.viewer))
    assert answer.status_code == 200, answer.text
    policy = tmp_path / "policy.yaml"  # the one the server assesses with: bundled, or stored by another test
    policy.write_text(client.get(f"/v1/estates/{ESTATE}/policy", headers=auth(stored.viewer)).text, encoding="utf-8")
    expected = cli_assess(sample_estate_path(), "--assurance", str(SAMPLE_ASSURANCE), "--policy", str(policy))
    assert answer.json() == expected
    audit = client.get("/v1/audit", params={"limit": 1000}, headers=auth(stored.admin)).json()
    entries = audit["entries"] if isinstance(audit, dict) else audit
    stores = [e for e in entries if e["action"] == "assurance.store"]
    assert [(e["actor"], e["subject"]) for e in stores] == [("olga-operator", f"estate:{ESTATE}")]


def test_a_stored_policy_is_the_one_assessed_with(client: httpx.Client, stored: Tokens, tmp_path: Path) -> None:
    assert put(client, "assurance", SAMPLE_ASSURANCE.read_text(encoding="utf-8"), stored.operator).status_code == 200
    answer = put(client, "policy", TIER_ONE_POLICY, stored.operator)
    assert answer.status_code == 200, answer.text
    policy = client.get(f"/v1/estates/{ESTATE}/policy", headers=auth(stored.viewer))
    assert (policy.headers["Ringfence-Policy"], policy.text) == ("stored", TIER_ONE_POLICY)
    path = tmp_path / "policy.yaml"
    path.write_text(TIER_ONE_POLICY, encoding="utf-8")
    assessed = client.get(f"/v1/estates/{ESTATE}/assessment", params={"as_of": AS_OF}, headers=auth(stored.viewer))
    assert assessed.json() == cli_assess(
        sample_estate_path(), "--assurance", str(SAMPLE_ASSURANCE), "--policy", str(path)
    )
    assert assessed.json()["policy"] == "tier-one-only"


@pytest.mark.parametrize(
    ("what", "text", "located"),
    [
        (
            "assurance",
            "apiVersion: ringfence/v1\nassurance: x\nsuppliers:\n  - id: cerner\n    assessments:\n"
            "      - {kind: dspt, result: met, date: 2026-13-01, evidence: e}\n",
            "body:6: suppliers[0].assessments[0].date: supplier 'cerner': '2026-13-01' is not a day of the calendar",
        ),
        (
            "assurance",
            "apiVersion: ringfence/v1\nassurance: x\nsuppliers:\n  - id: nobody-we-know\n",
            "body:4: suppliers[0].id: supplier 'nobody-we-know' is not in estate 'city-general'",
        ),
        (
            "policy",
            "apiVersion: ringfence/v1\npolicy: p\ntiers:\n  1: {restore-test: 500 years}\n",
            "body:4: tiers.1.restore-test: '500 years' is outside 1 day to 10 years",
        ),
        ("policy", "apiVersion: ringfence/v1\npolicy: p\ntiers: [\n", "body:"),
    ],
)
def test_a_file_that_does_not_hold_is_refused_with_its_line_and_field_and_stores_nothing(
    client: httpx.Client, stored: Tokens, what: str, text: str, located: str
) -> None:
    before = client.get(f"/v1/estates/{ESTATE}/{what}", headers=auth(stored.viewer))
    answer = put(client, what, text, stored.operator)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert located in answer.json()["detail"], answer.json()
    assert "Traceback" not in answer.text
    after = client.get(f"/v1/estates/{ESTATE}/{what}", headers=auth(stored.viewer))
    assert (after.status_code, after.text) == (before.status_code, before.text)


def test_refusals_name_what_is_wrong(client: httpx.Client, stored: Tokens) -> None:
    assert (
        put(client, "assurance", "apiVersion: ringfence/v1\nassurance: x\n", stored.operator, "no-such").status_code
        == 404
    )
    assert client.get("/v1/estates/no-such/assessment", headers=auth(stored.viewer)).status_code == 404
    bad_day = client.get(
        f"/v1/estates/{ESTATE}/assessment", params={"as_of": "2026-02-30"}, headers=auth(stored.viewer)
    )
    assert bad_day.status_code == 422
    assert "as_of: '2026-02-30' is not a day of the calendar" in bad_day.json()["detail"]
    empty = put(client, "policy", "", stored.operator)
    assert empty.status_code == 422
    odd = client.put(
        f"/v1/estates/{ESTATE}/policy", content=b"x", headers={**auth(stored.operator), "Content-Type": "image/png"}
    )
    assert odd.status_code == 415
    # The body is capped before it is read: a viewer's 100 KiB is refused at the gate, a writer's reaches the check.
    big = "# " + "x" * 100_000 + "\n" + TIER_ONE_POLICY
    assert put(client, "policy", big, stored.viewer).status_code == 413
    assert put(client, "policy", big, stored.operator).status_code == 200
