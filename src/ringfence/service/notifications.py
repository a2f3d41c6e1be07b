"""The notifier: people told when they are needed, through the channels the notifications file names.

It runs in the server as a background thread, beside the controller loop, and shares nothing with the
rollouts but the database. Its design is an *outbox*:

1. **Events come from the audit log.** Everything that calls for a person (a rollout awaiting approval, a
   ring failed, a halt, a rollback, a rollout failed, a gate that could not decide, an incident declared) is
   already an audit entry, written in the same transaction as the change. The notifier reads the entries
   after its cursor (``notification_cursor``), turns those that are events into messages
   (:mod:`ringfence.core.notification`), stores one delivery per channel the routes name, and moves the cursor
   on, all in one transaction. Appenders to the audit log take turns until they commit, so entries become
   visible in the order of their numbers and the cursor never skips one still being written. Nothing in a
   rollout waits for a notification: the rollout wrote its audit entry and went on.
2. **RTO clocks are looked at** every ``delivery.rto_check``: each open incident's clocks, computed by the
   incident code (:func:`ringfence.core.incident.rto_clocks`). A clock that *changes* into at risk or breached
   is an event, once: the status last seen is stored (``notification_clocks``).
3. **Evidence is looked at** every ``delivery.evidence_check`` (an hour by default): each estate with a stored
   assurance file is assessed (:mod:`ringfence.service.assurance`), and each piece of evidence whose last day is
   within 30 days, or which ran out in the last 30 days, is an ``evidence_expiring`` event, once per piece and
   threshold: its key names the evidence, its last day and the threshold, and the outbox stores one delivery per
   key and channel, so a second look (or a second server) adds nothing and renewed evidence (a new day) is told
   of again.
4. **Deliveries are sent** outside any transaction, each claimed first (``sending``, with a lease) and its
   attempt recorded after: sent, or failed and due again after ``backoff`` doubled per attempt (at most
   ``max_backoff``), until ``attempts`` have failed (``gave_up``). Every attempt and its error are kept and shown
   (``GET /v1/notifications``, the server's log). A channel that just failed is not tried again in the same
   turn (its other messages wait, unsent and uncounted, for the next), so one that refuses or hangs costs one
   timeout per turn and the other channels' messages still go out; a notifier killed mid-send leaves a claim
   that runs out and is sent again (at least once).

The cursor, the deliveries and the clocks are in the database, so a restart loses nothing and repeats
nothing: ``(event, channel)`` is unique. Several servers on one PostgreSQL may each run a notifier: the cursor
row is locked while entries are enqueued, and claims skip rows another notifier holds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ringfence.core.audit import AuditEntry
from ringfence.core.clock import utc_now
from ringfence.core.errors import RingfenceError
from ringfence.core.incident import Incident, IncidentStatus, rto_clocks
from ringfence.core.notification import (
    URGENT,
    Notice,
    channel_test_notice,
    notice_of_clock,
    notice_of_entry,
    notice_of_evidence,
)
from ringfence.core.rollout.record import StoredPlan
from ringfence.files.notifications_config import NotificationsConfig, apprise_plugin
from ringfence.service.assurance import evidence_to_tell
from ringfence.service.estates import CompiledEstates
from ringfence.store.audit import list_audit
from ringfence.store.db import session_scope
from ringfence.store.estates import get_estate_version
from ringfence.store.incidents import get_incident, list_incidents
from ringfence.store.notifications import (
    Delivery,
    claim_due,
    clock_states,
    enqueue_delivery,
    list_deliveries,
    lock_cursor,
    move_cursor,
    read_cursor,
    record_attempt,
    release_claims,
    save_clock_states,
)
from ringfence.store.rollouts import get_rollout

if TYPE_CHECKING:
    from apprise import NotifyBase

log = logging.getLogger("ringfence.notifications")

ENTRIES_PER_TURN = 500
"""Audit entries read in one enqueueing transaction (a backlog is worked off over several turns)."""

DELIVERIES_PER_TURN = 50
"""Deliveries sent in one turn before the audit log is looked at again."""

LEASE = timedelta(minutes=5)
"""How long a claimed delivery waits before another notifier may send it (longer than any send takes)."""


# -------------------------------------------------------------------------------------------- sending


class _ThreadLog(logging.Handler):
    """Apprise says why a send failed only in its log: this keeps what it logs in the sending thread."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        kept: list[str] | None = getattr(self.local, "kept", None)
        if kept is not None and len(kept) < 5:
            kept.append(record.getMessage())


_APPRISE_LOG = _ThreadLog()
_APPRISE_LOG_INSTALLED = threading.Lock()


def _install_log() -> None:
    with _APPRISE_LOG_INSTALLED:
        logger = logging.getLogger("apprise")
        if _APPRISE_LOG not in logger.handlers:
            logger.addHandler(_APPRISE_LOG)


def send_to_channel(plugin: NotifyBase, *, title: str, body: str, urgent: bool) -> str | None:
    """Send one message through an apprise plugin, in this thread; None when sent, else why not (a sentence)."""
    _install_log()
    _APPRISE_LOG.local.kept = []
    try:
        ok = plugin.notify(body=body, title=title, notify_type="failure" if urgent else "warning")
        kept: list[str] = _APPRISE_LOG.local.kept
    except Exception as exc:  # a plugin's own bug must not end the notifier
        return f"the channel raised {type(exc).__name__}: {exc}"
    finally:
        _APPRISE_LOG.local.kept = None
    if ok:
        return None
    return "; ".join(kept) or "apprise reported the message was not delivered"


@dataclass(frozen=True)
class ChannelTest:
    """What ``ringfence notifications test`` found for one channel."""

    channel: str
    error: str | None
    """None: the test message was accepted."""


def send_test_messages(config: NotificationsConfig, *, at: datetime | None = None) -> list[ChannelTest]:
    """Send a test message to every channel of ``config``, each once, and say what each did."""
    at = at or utc_now()
    found = []
    for name, channel in config.channels.items():
        notice = channel_test_notice(name, at.isoformat(timespec="seconds"))
        plugin = apprise_plugin(channel.resolved_url())
        if plugin is None:
            found.append(ChannelTest(name, "apprise cannot read this channel's URL"))
            continue
        error = send_to_channel(plugin, title=notice.title, body=notice.body(config.dashboard_url), urgent=False)
        found.append(ChannelTest(name, error))
    return found


# -------------------------------------------------------------------------------------------- the notifier


@dataclass
class NotifierStats:
    """What the notifier has done since it started (``GET /v1/notifications``)."""

    turns: int = 0
    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    last_turn_at: datetime | None = None
    last_error: str | None = None
    channels_failing: dict[str, str] = field(default_factory=dict)
    """Channel → its last error, while its last attempt failed."""


class Notifier:
    """Turns audit entries and RTO clocks into messages and sends them, from a background thread."""

    def __init__(
        self,
        engine: Engine,
        config: NotificationsConfig,
        *,
        interval: float = 2.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.config = config
        self.interval = interval
        self.clock = clock
        self.stats = NotifierStats()
        self._plugins: dict[str, NotifyBase | None] = {}
        self._facts: dict[str, tuple[str | None, int | None]] = {}
        self._next_clock_check: datetime | None = None
        self._next_evidence_check: datetime | None = None
        self._estates = CompiledEstates(size=2)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._logged: str | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ringfence-notifier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the notifier did not stop within %.0f s (a channel is slow to answer)", timeout)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.turn()
            except Exception as exc:  # the database out of reach: the next turn tries again
                message = f"{type(exc).__name__}: {exc}"
                self.stats.last_error = message
                if message != self._logged:
                    log.warning("notifier turn failed (tried again in %.1f s): %s", self.interval, message)
                    self._logged = message
            self._wake.wait(self.interval)

    # ------------------------------------------------------------------------------------- one turn

    def turn(self) -> None:
        """Enqueue what the audit log holds since the cursor, look at the RTO clocks when due, send what is due."""
        self.stats.turns += 1
        while self.enqueue_from_audit() == ENTRIES_PER_TURN and not self._stopping.is_set():
            pass
        now = self.clock()
        if self._next_clock_check is None or now >= self._next_clock_check:
            self.check_clocks(now)
            self._next_clock_check = now + timedelta(seconds=self.config.delivery.rto_check)
        if self._next_evidence_check is None or now >= self._next_evidence_check:
            self.check_evidence(now)
            self._next_evidence_check = now + timedelta(seconds=self.config.delivery.evidence_check)
        self.deliver_due()
        self.stats.last_turn_at = self.clock()
        self._logged = None

    def enqueue_from_audit(self) -> int:
        """Enqueue the events among the audit entries after the cursor; returns how many entries were read."""
        now = self.clock()
        with session_scope(self.engine) as session:
            cursor = lock_cursor(session, at=now)
            entries = list_audit(session, after_seq=cursor, limit=ENTRIES_PER_TURN)
            for entry in entries:
                notice = notice_of_entry(entry)
                if notice is not None:
                    estate, tier = self._facts_of(session, entry)
                    self._enqueue(session, replace(notice, estate=estate, tier=tier), now)
            if entries:
                move_cursor(session, entries[-1].seq, at=now)
        return len(entries)

    def check_clocks(self, now: datetime) -> None:
        """Enqueue a message for each RTO clock of an open incident that changed into at risk or breached."""
        with session_scope(self.engine) as session:
            lock_cursor(session, at=now)  # notifiers take turns here too
            incidents = [i for i in list_incidents(session, status=IncidentStatus.OPEN) if isinstance(i, Incident)]
            seen = clock_states(session, [i.id for i in incidents])
            changed: dict[tuple[str, str], tuple[str, int]] = {}
            for incident in incidents:
                for clock in rto_clocks(incident, now):
                    key = (incident.id, clock.service)
                    before = seen.get(key)
                    if before is not None and before[0] == clock.status.value:
                        continue
                    change = 0 if before is None else before[1] + 1
                    changed[key] = (clock.status.value, change)
                    notice = notice_of_clock(incident.id, incident.estate, clock, change)
                    if notice is not None:
                        self._enqueue(session, notice, now)
            save_clock_states(session, changed, at=now)

    def check_evidence(self, now: datetime) -> None:
        """Enqueue a message for each piece of evidence that runs out within 30 days or has just run out (once)."""
        told = evidence_to_tell(self.engine, self._estates, now.date())
        if not told:
            return
        with session_scope(self.engine) as session:
            lock_cursor(session, at=now)  # notifiers take turns here too
            for item in told:
                notice = notice_of_evidence(item.key, item.estate, item.reason, item.item.finding.tier)
                self._enqueue(session, notice, now)

    def deliver_due(self) -> int:
        """Send the deliveries that are due (a batch at a time); returns how many were tried."""
        tried = 0
        failing: set[str] = set()
        while tried < DELIVERIES_PER_TURN and not self._stopping.is_set():
            with session_scope(self.engine) as session:
                batch = claim_due(session, now=self.clock(), lease=LEASE, limit=10)
            if not batch:
                break
            held: list[int] = []
            for delivery in batch:
                # A channel that just failed is not tried again in this turn: each attempt on a channel that
                # hangs costs its whole timeout, and the other channels' messages must not wait behind them all.
                # Its other messages go back unsent, no attempt counted, due at the next turn.
                if delivery.channel in failing:
                    held.append(delivery.id)
                    continue
                if not self._deliver(delivery):
                    failing.add(delivery.channel)
                tried += 1
            if held:
                with session_scope(self.engine) as session:
                    release_claims(session, held, at=self.clock() + timedelta(seconds=self.interval))
        return tried

    # ------------------------------------------------------------------------------------- helpers

    def _enqueue(self, session: Session, notice: Notice, now: datetime) -> None:
        channels = self.config.channels_for(notice.event, tier=notice.tier, estate=notice.estate)
        for channel in channels:
            added = enqueue_delivery(
                session,
                event_key=notice.key,
                event=notice.event.value,
                channel=channel,
                subject=notice.subject,
                title=notice.title,
                body=notice.body(self.config.dashboard_url),
                urgent=notice.event in URGENT,
                at=now,
            )
            self.stats.enqueued += int(added)

    def _facts_of(self, session: Session, entry: AuditEntry) -> tuple[str | None, int | None]:
        """The estate and the most critical tier of an entry's rollout or incident (None, None if unknown)."""
        if entry.subject in self._facts:
            return self._facts[entry.subject]
        kind, _, ident = entry.subject.partition(":")
        facts: tuple[str | None, int | None] = (None, None)
        try:
            if kind == "rollout":
                rollout = get_rollout(session, ident)
                tiers = StoredPlan.from_document(rollout.plan, rollout_id=rollout.id).tiers
                estate = get_estate_version(session, rollout.estate_version_id).name
                facts = (estate, min(tiers.values()) if tiers else None)
            elif kind == "incident":
                incident = get_incident(session, ident)
                facts = (incident.estate, incident.worst_tier)
        except (RingfenceError, ValueError, KeyError, TypeError) as exc:
            # A message without the facts still goes to the routes that do not filter: better than none.
            log.warning("notifier: cannot read %s for its estate and tier: %s", entry.subject, exc)
        if len(self._facts) > 1000:
            self._facts.clear()
        self._facts[entry.subject] = facts
        return facts

    def _plugin(self, name: str) -> NotifyBase | None:
        if name not in self._plugins:
            channel = self.config.channels.get(name)
            self._plugins[name] = None if channel is None else apprise_plugin(channel.resolved_url())
        return self._plugins[name]

    def _deliver(self, delivery: Delivery) -> bool:
        """Send one delivery and record the attempt; whether it was sent."""
        plugin = self._plugin(delivery.channel)
        if plugin is None:
            error: str | None = f"channel '{delivery.channel}' is not in the notifications configuration any more"
        else:
            error = send_to_channel(plugin, title=delivery.title, body=delivery.body, urgent=delivery.urgent)
        now = self.clock()
        delivery_conf = self.config.delivery
        attempt = delivery.attempts + 1
        retry_at = None
        if error is not None and attempt < delivery_conf.attempts and plugin is not None:
            wait = min(delivery_conf.backoff * 2 ** (attempt - 1), delivery_conf.max_backoff)
            retry_at = now + timedelta(seconds=wait)
        with session_scope(self.engine) as session:
            record_attempt(session, delivery.id, error=error, at=now, retry_at=retry_at)
        if error is None:
            self.stats.sent += 1
            self.stats.channels_failing.pop(delivery.channel, None)
            log.info("notified %s of %s (%s)", delivery.channel, delivery.event, delivery.subject)
            return True
        self.stats.failed += 1
        self.stats.channels_failing[delivery.channel] = error
        then = f"tried again at {retry_at.isoformat(timespec='seconds')}" if retry_at else "given up"
        log.warning(
            "notification %s of %s to channel %s failed (attempt %d of %d; %s): %s",
            delivery.event,
            delivery.subject,
            delivery.channel,
            attempt,
            delivery_conf.attempts,
            then,
            error,
        )
        return False


def recent_deliveries(
    engine: Engine, *, limit: int = 100, status: str | None = None, event: str | None = None
) -> tuple[list[Delivery], int | None]:
    """The most recent deliveries (newest first) and where the notifier's audit cursor stands."""
    with session_scope(engine, readonly=True) as session:
        return list_deliveries(session, limit=limit, status=status, event=event), read_cursor(session)


__all__ = [
    "ChannelTest",
    "Notifier",
    "NotifierStats",
    "recent_deliveries",
    "send_test_messages",
    "send_to_channel",
]
