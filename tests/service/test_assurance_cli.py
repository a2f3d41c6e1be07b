"""``ringfence estate assurance`` and ``estate policy``: the files stored in the database the server reads, checked
first, a bad one refused with its file, line and field (exit 2) and nothing stored."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from live_server import RINGFENCE
from ringfence.files.disk import examples_dir, sample_estate_path
from ringfence.service.assurance import stored_file
from ringfence.store.assurance import AssuranceKind
from ringfence.store.db import make_engine

SAMPLE_ASSURANCE = examples_dir() / "city-general" / "assurance.yaml"


def ringfence(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RINGFENCE_HOME": str(home), "RINGFENCE_ACTOR": "olga"}
    env.pop("RINGFENCE_DATABASE_URL", None)
    return subprocess.run([RINGFENCE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_the_commands_store_the_files_the_server_assesses_with(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert ringfence(home, "estate", "upload", str(sample_estate_path())).returncode == 0
    done = ringfence(home, "estate", "assurance", "city-general", str(SAMPLE_ASSURANCE), "--json")
    assert done.returncode == 0, done.stderr
    stored = json.loads(done.stdout)
    assert (stored["name"], stored["changed"]) == ("city-general-2026", True)

    bad = tmp_path / "assurance.yaml"
    bad.write_text("apiVersion: ringfence/v1\nassurance: x\nsuppliers:\n  - id: nobody\n", encoding="utf-8")
    refused = ringfence(home, "estate", "assurance", "city-general", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:4: suppliers[0].id: supplier 'nobody' is not in estate 'city-general'" in refused.stderr
    policy = tmp_path / "policy.yaml"
    policy.write_text("apiVersion: ringfence/v1\npolicy: p\ntiers:\n  1: {exit-plan: maybe}\n", encoding="utf-8")
    refused = ringfence(home, "estate", "policy", "city-general", str(policy))
    assert refused.returncode == 2
    assert f"{policy}:4: tiers.1.exit-plan:" in refused.stderr
    assert "Traceback" not in refused.stderr

    engine = make_engine(f"sqlite:///{home / 'ringfence.db'}")
    try:
        assurance = stored_file(engine, "city-general", AssuranceKind.ASSURANCE)
        assert assurance is not None
        assert (assurance.id, assurance.created_by) == (stored["id"], "olga")
        assert stored_file(engine, "city-general", AssuranceKind.POLICY) is None
    finally:
        engine.dispose()
