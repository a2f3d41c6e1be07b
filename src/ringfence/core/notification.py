"""What a person is told, and when: the events that call for one, read from the audit log and the RTO clocks.

Pure: the adapters hand in audit entries, clocks and the facts they looked up (a rollout's estate and tier);
this module decides whether an entry is an event a person must hear of, and writes the message. Sending is
``ringfence.service.notifications``'s job.

=======================  ===============================================================================
event                    what happened (what the audit log or the clock says)
=======================  ===============================================================================
``approval_needed``      a rollout was created awaiting approval (``rollout.create``, ``needs_approval``)
``ring_failed``          a gate verdict failed a ring: judging → halted
``rollout_halted``       any other move to halted (a driver's error, a person's abort, the controller gave up)
``rollout_rolled_back``  a halted rollout ended rolled back
``rollout_failed``       a rollout ended failed (a rollback failed, approval rejected): a person must look
``gate_inconclusive``    a gate could not decide and the rollout waits for a person: judging → paused
``incident_declared``    an incident was declared (by hand, or by a halt)
``rto_at_risk``          a down service's time left is less than the time it needs to come back
``rto_breached``         a down service is past its RTO
``evidence_expiring``    evidence an estate's policy relies on runs out within 30 days, or has just run out
                         (``ringfence.service.assurance``: once per item and threshold)
=======================  ===============================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from ringfence.core.audit import AuditEntry, AuditValue
from ringfence.core.durations import humanize_duration
from ringfence.core.incident import ClockStatus, RtoClock


class NotificationEvent(StrEnum):
    """The events a notification route may name (see the module docstring)."""

    APPROVAL_NEEDED = "approval_needed"
    RING_FAILED = "ring_failed"
    ROLLOUT_HALTED = "rollout_halted"
    ROLLOUT_ROLLED_BACK = "rollout_rolled_back"
    ROLLOUT_FAILED = "rollout_failed"
    GATE_INCONCLUSIVE = "gate_inconclusive"
    INCIDENT_DECLARED = "incident_declared"
    RTO_AT_RISK = "rto_at_risk"
    RTO_BREACHED = "rto_breached"
    EVIDENCE_EXPIRING = "evidence_expiring"
    TEST = "test"
    """``ringfence notifications test``: never routed, sent to each channel by hand."""


ROUTABLE = tuple(e for e in NotificationEvent if e is not NotificationEvent.TEST)
"""The events a route may name."""

_E = NotificationEvent
_TITLES: Mapping[NotificationEvent, str] = {
    _E.APPROVAL_NEEDED: "approval needed",
    _E.RING_FAILED: "ring failed",
    _E.ROLLOUT_HALTED: "rollout halted",
    _E.ROLLOUT_ROLLED_BACK: "rollout rolled back",
    _E.ROLLOUT_FAILED: "rollout failed: a person must look",
    _E.GATE_INCONCLUSIVE: "gate inconclusive: waiting for a person",
    _E.INCIDENT_DECLARED: "incident declared",
    _E.RTO_AT_RISK: "RTO at risk",
    _E.RTO_BREACHED: "RTO breached",
    _E.EVIDENCE_EXPIRING: "evidence running out",
    _E.TEST: "test message",
}

URGENT = frozenset({_E.RING_FAILED, _E.ROLLOUT_HALTED, _E.ROLLOUT_FAILED, _E.INCIDENT_DECLARED, _E.RTO_BREACHED})
"""Events sent as failures (apprise's ``failure`` type: red in Teams and Slack); the others as warnings."""


@dataclass(frozen=True)
class Notice:
    """One event a person should hear of, before it is routed to channels.

    ``key`` is unique per event (``audit:SEQ``, ``rto:INCIDENT:SERVICE:STATUS:N``): a delivery is stored once
    per (key, channel), so an event is never sent twice to one channel, whoever enqueues it.
    """

    key: str
    event: NotificationEvent
    subject: str
    """``rollout:r-000001``, ``incident:inc-000001`` or ``assurance:ESTATE``."""
    reason: str
    actor: str
    estate: str | None = None
    tier: int | None = None
    """The most critical tier concerned (1 is the most critical); None when nothing says."""

    @property
    def title(self) -> str:
        kind, _, ident = self.subject.partition(":")
        return f"ringfence: {_TITLES[self.event]} — {kind} {ident}"

    def page(self) -> str:
        """The dashboard's page for the subject, from its root: ``/rollouts/r-000001``, ``/incidents/inc-…``."""
        kind, _, ident = self.subject.partition(":")
        if kind == "assurance":
            return f"/assurance?estate={_url_quoted(ident)}"
        return f"/{kind}s/{ident}" if kind in ("rollout", "incident") else "/"

    def body(self, dashboard_url: str) -> str:
        """The message: the event, the rollout or incident, the reason, who, and the link to its page."""
        kind, _, ident = self.subject.partition(":")
        lines = [
            f"Event: {self.event.value} ({_TITLES[self.event]})",
            f"{kind.capitalize()}: {ident}",
        ]
        if self.estate:
            lines.append(f"Estate: {self.estate}" + (f" (most critical tier {self.tier})" if self.tier else ""))
        lines += [f"Reason: {self.reason}", f"By: {self.actor}", f"Open: {dashboard_url.rstrip('/')}{self.page()}"]
        return "\n".join(lines)


def _url_quoted(text: str) -> str:
    """``text`` percent-encoded for a URL's query (as ``urllib.parse.quote(text, safe="")``, which the core may not
    import): an estate's name may hold any character."""
    return "".join(
        c if c.isascii() and (c.isalnum() or c in "-._~") else "".join(f"%{b:02X}" for b in c.encode()) for c in text
    )


def _text(value: AuditValue) -> str:
    return "" if value is None else str(value)


def notice_of_entry(entry: AuditEntry, *, estate: str | None = None, tier: int | None = None) -> Notice | None:
    """The event ``entry`` is, if it is one a person must hear of; None for every other entry.

    ``estate`` and ``tier`` are what the caller looked up about the entry's subject (for routes that filter).
    """
    detail = entry.detail
    key = f"audit:{entry.seq}"
    event: NotificationEvent | None = None
    reason = ""
    if entry.action == "rollout.create" and detail.get("needs_approval") is True:
        event = _E.APPROVAL_NEEDED
        reason = f"update {_text(detail.get('update'))} touches what a second person must approve before it starts"
    elif entry.action == "rollout.transition":
        source, target = detail.get("from"), detail.get("to")
        reason = _text(detail.get("reason"))
        if target == "halted":
            event = _E.RING_FAILED if source == "judging" else _E.ROLLOUT_HALTED
        elif target == "rolled_back":
            event = _E.ROLLOUT_ROLLED_BACK
        elif target == "failed":
            event = _E.ROLLOUT_FAILED
        elif target == "paused" and source == "judging" and not reason.startswith("paused by "):
            # Only the gate's own pause (a verdict it could not give): a person who paused needs no one told.
            event = _E.GATE_INCONCLUSIVE
    elif entry.action == "incident.declare":
        event = _E.INCIDENT_DECLARED
        down = detail.get("services_down")
        services = ", ".join(str(s) for s in down) if isinstance(down, list) and down else "no service"
        reason = f"{_text(detail.get('title'))}; services down: {services}"
    if event is None:
        return None
    return Notice(key, event, entry.subject, reason or "(no reason given)", entry.actor, estate, tier)


def notice_of_clock(incident_id: str, estate: str, clock: RtoClock, change: int) -> Notice | None:
    """The event a clock's new status is (at risk, breached), or None; ``change`` numbers the clock's changes."""
    if clock.status is ClockStatus.AT_RISK:
        event = _E.RTO_AT_RISK
        left = humanize_duration(max(clock.remaining or 0, 0))
        needs = humanize_duration(max(clock.estimated or 0, 0))
        reason = f"{clock.name} ({clock.service}, tier {clock.tier}): {left} left of its RTO, about {needs} to restore"
    elif clock.status is ClockStatus.BREACHED:
        event = _E.RTO_BREACHED
        rto = humanize_duration(clock.rto or 0)
        reason = f"{clock.name} ({clock.service}, tier {clock.tier}) is still down past its RTO of {rto}"
    else:
        return None
    key = f"rto:{incident_id}:{clock.service}:{clock.status.value}:{change}"
    return Notice(key, event, f"incident:{incident_id}", reason, "ringfence", estate, clock.tier)


def notice_of_evidence(key: str, estate: str, reason: str, tier: int) -> Notice:
    """Evidence of ``estate`` running out (or run out): ``reason`` says what, and when; ``key`` is unique per piece
    of evidence and threshold, so each is told once."""
    return Notice(key, _E.EVIDENCE_EXPIRING, f"assurance:{estate}", reason, "ringfence", estate, tier)


def channel_test_notice(channel: str, at_text: str) -> Notice:
    """The message ``ringfence notifications test`` sends to ``channel``."""
    return Notice(
        f"test:{channel}:{at_text}",
        _E.TEST,
        "channel:" + channel,
        f"a test of channel '{channel}' at {at_text}: if you read this, ringfence can reach you here",
        "ringfence",
    )


__all__ = [
    "ROUTABLE",
    "URGENT",
    "Notice",
    "NotificationEvent",
    "channel_test_notice",
    "notice_of_clock",
    "notice_of_entry",
    "notice_of_evidence",
]
