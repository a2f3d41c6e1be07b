"""Drills keep to change windows in simulated time: the drill's clock jumps to the next window rather than
installing outside it, and what the drill finds is the same, only later."""

from __future__ import annotations

from datetime import timedelta

from ringfence.core.drills import run_drill_text
from ringfence.core.graph import compile_estate
from ringfence.core.simulation import DRILL_EPOCH
from ringfence.files.disk import read_estate, read_text, sample_estate_path

SCENARIO = sample_estate_path().parent / "scenarios" / "vsphere-7u3.yaml"
WINDOWS = """\
  windows:
    - name: hosts on Sunday night
      allow: ["Sun 01:00-05:00"]
"""


def test_a_drill_advances_to_the_window_and_finds_the_same() -> None:
    graph = compile_estate(read_estate(sample_estate_path()))
    text = read_text(SCENARIO)
    assert "  rollback: reinstall\n" in text
    windowed = text.replace("  rollback: reinstall\n", "  rollback: reinstall\n" + WINDOWS)
    plain = run_drill_text(graph, text, str(SCENARIO), ["ringfence"]).results[0]
    kept = run_drill_text(graph, windowed, "windowed.yaml", ["ringfence"]).results[0]
    # The drill starts on Monday 1 January 2024 at midnight; the first window is Sunday 7 January at 01:00.
    first_window = (DRILL_EPOCH.replace(day=7, hour=1) - DRILL_EPOCH).total_seconds()
    first_install = next(p.at for p in kept.timeline if p.exposed)
    assert first_install >= first_window
    assert first_install < first_window + timedelta(hours=4).total_seconds()
    # Contained the same way: the same canaries exposed, the same ring stopped, detected as fast.
    assert kept.exposed == plain.exposed
    assert kept.halted_at_ring == plain.halted_at_ring
    assert kept.detected_after == plain.detected_after
    assert kept.duration > plain.duration
