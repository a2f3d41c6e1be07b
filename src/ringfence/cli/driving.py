"""What ``ringfence rollout start`` shows while it drives a rollout, and how Ctrl-C stops it.

On a terminal one status line is redrawn in place (Rich ``Live``, a few times a second): the phase, the ring by
its name (``canary``, ``canary wave 2``, ``ring 3``), what is in flight, and while a ring bakes the time left.
Not on a terminal (a log, a pipe, a CI job) the same line is printed whenever it says something new, and a
bake's countdown at most once a minute. Either way every phase change is printed for good, with its reason, and
when a ring is judged, each stratum's verdict on a line of its own. ``--quiet``: nothing but the outcome.

Ctrl-C is taken between steps: a step under way (its transactions and driver calls) is finished first, so
the rollout is left exactly as a step leaves it, and the next ``rollout start`` carries on. A second Ctrl-C
stops at once; that too leaves nothing half-written (each transaction is rolled back whole and a decision not
marked done is taken again), it only drops the step's work.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ringfence.core.clock import utc_now
from ringfence.core.durations import humanize_duration
from ringfence.core.gates import GateOutcome
from ringfence.core.rollout.state import RolloutPhase
from ringfence.core.words import count

if TYPE_CHECKING:
    from ringfence.core.rollout.controller import StepReport
    from ringfence.core.rollout.record import StoredPlan

REFRESH_PER_SECOND = 4
"""How often the status line is redrawn on a terminal."""

PLAIN_COUNTDOWN_EVERY = 60.0
"""Seconds between two countdown lines of one bake when not on a terminal."""

_IN_FLIGHT = {
    RolloutPhase.TAKING_RESTORE_POINTS: "restore point",
    RolloutPhase.APPLYING: "install",
    RolloutPhase.ROLLING_BACK: "rollback",
}
_VERDICT_STYLE = {GateOutcome.passed: "green", GateOutcome.failed: "bold red"}


class StopDriving(Exception):  # noqa: N818 - a request, not an error
    """Ctrl-C: stop driving at the next point between steps."""


class CtrlC:
    """Turns Ctrl-C into :class:`StopDriving`, raised only between steps (see the module docstring).

    Installed only in the main thread (the only one Python delivers signals to); elsewhere Ctrl-C keeps
    its usual meaning.
    """

    def __init__(self) -> None:
        self.asked = False
        self._between_steps = False
        self._previous: Callable[[int, FrameType | None], object] | int | None = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self._between_steps or self.asked:
            raise StopDriving
        # Mid-step: let it finish its transactions and driver calls; stop at the next checkpoint.
        self.asked = True

    def checkpoint(self) -> None:
        """Between two steps: stop here if Ctrl-C was pressed during the last one."""
        if self.asked:
            raise StopDriving

    def sleep(self, seconds: float) -> None:
        """Wait between steps; Ctrl-C ends the wait at once."""
        self.checkpoint()
        self._between_steps = True
        try:
            time.sleep(seconds)
        finally:
            self._between_steps = False
        self.checkpoint()


@dataclass(frozen=True)
class _Where:
    """Where the rollout is, replaced whole after each step: the status line is drawn from another thread."""

    phase: RolloutPhase
    ring: int
    in_flight: int
    phase_entered_at: datetime


class Watch:
    """Shows one rollout being driven (see the module docstring). Feed it each step's report."""

    def __init__(
        self,
        console: Console,
        rollout_id: str,
        *,
        phase: RolloutPhase,
        ring: int,
        phase_entered_at: datetime,
        plan: StoredPlan | None,
        quiet: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.console = console
        self.rollout_id = rollout_id
        self.where = _Where(phase, ring, 0, phase_entered_at)
        self.plan = plan
        self.quiet = quiet
        self.clock = clock or utc_now
        self.is_live = console.is_terminal and not quiet
        self._live: Live | None = None
        self._printed = ""
        self._printed_at = -math.inf
        self._waiting = ""

    # ------------------------------------------------------------------------------------------- names

    def ring_name(self, index: int) -> str:
        return self.plan.ring_name(index) if self.plan is not None else f"ring {index}"

    def line(self) -> str:
        """The status line as of now (the bake's countdown moves with the clock)."""
        where = self.where
        name = self.ring_name(where.ring)
        phase = where.phase
        if phase is RolloutPhase.BAKING and self.plan is not None:
            ends = where.phase_entered_at + timedelta(seconds=self.plan.bake)
            left = max(0.0, (ends - self.clock()).total_seconds())
            return f"{self.rollout_id}: baking {name}: {humanize_duration(left)} left"
        text = f"{self.rollout_id}: {phase} {name}"
        if self.plan is not None and not phase.is_terminal:
            text += f" ({where.ring} of {count(self.plan.ring_count, 'ring')} done)"
        if where.in_flight:
            text += f": {count(where.in_flight, _IN_FLIGHT.get(phase, 'operation'))} in flight"
        return text

    def __rich__(self) -> Text:
        return Text(self.line(), style="cyan")

    # ------------------------------------------------------------------------------------------- showing

    def __enter__(self) -> Watch:
        if self.is_live:
            self._live = Live(
                self,
                console=self.console,
                refresh_per_second=REFRESH_PER_SECOND,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, report: StepReport) -> None:
        """What one step did: its phase changes and verdicts for good, then the status line."""
        for t in report.transitions if not self.quiet else ():
            head = Text(f"{t.at:%H:%M:%S} {self.ring_name(t.ring)} → {t.to_phase}: ", style="bold")
            # One line each, however long: a log is read (and grepped) line by line; a terminal wraps it.
            self.console.print(head + Text(t.reason), soft_wrap=True)
        if report.verdict is not None and not self.quiet:
            for stratum in report.verdict.strata:
                style = _VERDICT_STYLE.get(stratum.outcome, "yellow")
                self.console.print(Text(f"  {stratum.sentence}", style=style), soft_wrap=True)
        # A ring waiting for its change window says until when, once (the countdown in it is not news).
        waiting = (report.waiting or "").split(" (in ")[0]
        if waiting and waiting != self._waiting and not self.quiet:
            self.console.print(Text(report.waiting or "", style="yellow"), soft_wrap=True)
        self._waiting = waiting
        entered = report.transitions[-1].at if report.transitions else self.where.phase_entered_at
        self.where = _Where(report.phase, report.ring, report.in_flight, entered)
        self._plain_line()

    def _plain_line(self) -> None:
        if self.quiet or self.is_live:
            return
        # Phase changes are printed as they happen; a line of its own only says what is under way.
        if not self.where.in_flight and self.where.phase is not RolloutPhase.BAKING:
            return
        line = self.line()
        if line == self._printed:
            return
        now = time.monotonic()
        # A bake's countdown changes every minute (every second at the end): a log needs far fewer lines.
        same_bake = self.where.phase is RolloutPhase.BAKING and self._printed.startswith(line.rsplit(":", 1)[0])
        if same_bake and now - self._printed_at < PLAIN_COUNTDOWN_EVERY:
            return
        self.console.print(line, soft_wrap=True)
        self._printed, self._printed_at = line, now


__all__ = ["PLAIN_COUNTDOWN_EVERY", "REFRESH_PER_SECOND", "CtrlC", "StopDriving", "Watch"]
