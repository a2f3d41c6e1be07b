"""What an ansible run did, host by host: its outcome read from ansible-runner's events, and kept as JSON.

The run process (:mod:`.process`) writes a :class:`RunOutcome` into its directory when it ends; the driver
reads it back to turn each host's :class:`HostOutcome` into that asset's result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

HostOutcomeKind = Literal["ok", "failed", "unreachable", "missing"]

MESSAGE_LIMIT = 300
"""Characters of Ansible's message kept in a result's sentence."""


@dataclass(frozen=True)
class HostOutcome:
    """What one run did on one host, from its events.

    ``ok`` only when the run's recap shows the host processed, reachable and with no failed task;
    ``failed`` / ``unreachable`` carry Ansible's message and the task; ``missing`` means the run said
    nothing final about the host (not targeted, or the run stopped before its recap).
    """

    host: str
    outcome: HostOutcomeKind
    message: str = ""
    ok: int = 0
    changed: int = 0
    restore_point: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended (ansible-runner's ``status`` and ``rc``) and each of its hosts' outcome."""

    status: str
    """successful, failed, timeout, canceled (ansible-runner's words), or error (the runner itself failed)."""
    rc: int | None
    hosts: Mapping[str, HostOutcome]
    finished_at: float
    error: str = ""
    """Why the run went wrong as a whole: ansible's ERROR line, or the runner's exception."""

    def to_document(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "rc": self.rc,
            "finished_at": self.finished_at,
            "error": self.error,
            "hosts": {
                h.host: {
                    "outcome": h.outcome,
                    "message": h.message,
                    "ok": h.ok,
                    "changed": h.changed,
                    "restore_point": h.restore_point,
                }
                for h in self.hosts.values()
            },
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> RunOutcome:
        hosts = {
            str(name): HostOutcome(
                host=str(name),
                outcome=cast(HostOutcomeKind, str(h["outcome"])),
                message=str(h.get("message") or ""),
                ok=int(h.get("ok") or 0),
                changed=int(h.get("changed") or 0),
                restore_point=str(h["restore_point"]) if h.get("restore_point") is not None else None,
            )
            for name, h in dict(document.get("hosts") or {}).items()
        }
        rc = document.get("rc")
        return cls(
            status=str(document["status"]),
            rc=int(rc) if rc is not None else None,
            hosts=hosts,
            finished_at=float(document["finished_at"]),
            error=str(document.get("error") or ""),
        )


def read_run_outcome(
    events: Iterable[Mapping[str, Any]],
    hosts: Sequence[str],
    *,
    status: str,
    rc: int | None,
    finished_at: float,
    error: str = "",
) -> RunOutcome:
    """Each of ``hosts``' outcome from a run's ansible-runner events (``runner.events``).

    The recap (``playbook_on_stats``) decides: Ansible counts a rescued or ignored failure as no failure
    there, which the per-task events cannot tell. The task events only give the message. Without a recap
    (the run timed out, was cancelled or never got going), a host with a failed or unreachable event
    still fails with it; the others are ``missing``.
    """
    failures: dict[str, str] = {}
    unreachable: dict[str, str] = {}
    restore_points: dict[str, str] = {}
    stats: Mapping[str, Any] | None = None
    for event in events:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_stats":
            stats = data
            continue
        if not isinstance(host, str):
            continue
        found = data.get("res")
        result: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            failures[host] = f"task '{data.get('task') or '?'}' failed: {_result_message(result)}"
        elif kind == "runner_on_unreachable":
            unreachable[host] = f"unreachable at task '{data.get('task') or '?'}': {_result_message(result)}"
        elif kind == "runner_on_ok":
            facts = result.get("ansible_facts") if isinstance(result.get("ansible_facts"), Mapping) else {}
            point = facts.get("ringfence_restore_point") if facts else None
            if point is not None and str(point).strip():
                restore_points[host] = str(point).strip()

    outcomes: dict[str, HostOutcome] = {}
    for host in hosts:
        if stats is None:
            if host in unreachable:
                outcomes[host] = HostOutcome(host, "unreachable", unreachable[host])
            elif host in failures:
                outcomes[host] = HostOutcome(host, "failed", failures[host])
            else:
                outcomes[host] = HostOutcome(host, "missing")
            continue
        ok, changed = _count(stats, "ok", host), _count(stats, "changed", host)
        if _count(stats, "dark", host):
            message = unreachable.get(host, "unreachable")
            outcomes[host] = HostOutcome(host, "unreachable", message, ok, changed)
        elif _count(stats, "failures", host):
            message = failures.get(host, "a task failed")
            outcomes[host] = HostOutcome(host, "failed", message, ok, changed)
        elif host in (stats.get("processed") or {}):
            outcomes[host] = HostOutcome(host, "ok", "", ok, changed, restore_points.get(host))
        else:
            outcomes[host] = HostOutcome(host, "missing")
    return RunOutcome(status=status, rc=rc, hosts=outcomes, finished_at=finished_at, error=error)


def _count(stats: Mapping[str, Any], key: str, host: str) -> int:
    found = stats.get(key) or {}
    return int(found.get(host, 0)) if isinstance(found, Mapping) else 0


def _result_message(result: Mapping[str, Any]) -> str:
    """Ansible's message for a failed or unreachable result, on one line, cut to a readable length."""
    parts = []
    msg = result.get("msg")
    if msg:
        parts.append(str(msg))
    stderr = result.get("stderr")
    if stderr and str(stderr).strip() and str(stderr).strip() not in " ".join(parts):
        parts.append(str(stderr).strip())
    if not parts and result.get("rc") is not None:
        parts.append(f"exit status {result.get('rc')}")
    return shorten(" — ".join(parts) or "no message")


def shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MESSAGE_LIMIT else flat[: MESSAGE_LIMIT - 1] + "…"


def inventory_complaint(stderr: str) -> str:
    """What ansible-inventory said was wrong: its error line, and the first parser's reason."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [
        line.removeprefix("[ERROR]:").removeprefix("ERROR!").strip()
        for line in lines
        if line.startswith(("[ERROR]", "ERROR!"))
    ]
    reasons = [
        line.removeprefix("[WARNING]:").strip() for line in lines if line.startswith("[WARNING]: Failed to parse")
    ]
    said = "; ".join([*errors[:1], *reasons[:1]])
    return shorten(said or " ".join(lines[-3:]))


def ansible_error_line(stdout: Path) -> str:
    """The first line of a run's output where ansible-playbook says what stopped it (``ERROR!`` or ``[ERROR]``)."""
    try:
        text = stdout.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("ERROR!", "[ERROR]")):
            return shorten(stripped)
    return ""


__all__ = [
    "MESSAGE_LIMIT",
    "HostOutcome",
    "HostOutcomeKind",
    "RunOutcome",
    "ansible_error_line",
    "inventory_complaint",
    "read_run_outcome",
    "shorten",
]
