"""What a ``ringfence serve`` worker does to its own process: the garbage collector tuned for many connections.

Run in a child process: the tuning (a frozen heap, larger thresholds) is the worker's, never the test run's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ringfence.api.app import GC_THRESHOLDS

PROBE = """
import gc, json
before = gc.get_threshold()
from ringfence.api.server import app_from_environment
app = app_from_environment()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def test_a_server_worker_tunes_its_garbage_collector(tmp_path: Path) -> None:
    env = dict(os.environ, RINGFENCE_DATABASE_URL=f"sqlite:///{tmp_path / 'ringfence.db'}")
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["before"] == [700, 10, 10]  # CPython's defaults: the worker starts untuned
    assert found["after"] == list(GC_THRESHOLDS)
    assert found["frozen"] > 10_000  # modules and the app: kept out of every collection from now on
