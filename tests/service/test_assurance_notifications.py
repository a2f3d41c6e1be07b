"""Evidence running out is told to people: a real server's notifier assesses the stored evidence and mails a real
SMTP server (aiosmtpd), once per piece of evidence and threshold, across its own looks and across a restart.

Dates are relative to today (the notifier reads the wall clock, as in production): one assessment's last day is
ten days ahead, another ran out yesterday, a third runs out in three months (not yet told), and a fourth ran out
two years ago (history: not paged about).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from test_notifications import (  # the receivers and helpers of the notifier's own tests
    DASHBOARD,
    FAST_NOTIFIER,
    _Mailbox,
    deliveries,
    mail_text,
    mail_url,
    mailbox,
    wait_until,
    write_config,
)

from live_server import make_tokens, running_server
from ringfence.core.errors import InputError
from ringfence.core.notification import ROUTABLE, NotificationEvent
from ringfence.files.notifications_config import parse_notifications_text

__all__ = ["mailbox"]  # a fixture, used by name

ESTATE = """\
apiVersion: ringfence/v1
estate: ward-evidence
suppliers:
  - {id: acme, name: Acme Ltd}
  - {id: globex, name: Globex plc}
services:
  - {id: ehr, name: Electronic health record, tier: 1, requires: [db-7, app-7]}
assets:
  - {id: db-7, kind: vm, site: north, supplier: acme}
  - {id: app-7, kind: vm, site: north, supplier: globex}
"""

POLICY = """\
apiVersion: ringfence/v1
policy: ward-policy
tiers:
  1:
    supplier-assessments: {dspt: 2 years, cyber-essentials-plus: 2 years}
"""


def day(offset: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def assurance_text() -> str:
    def assessment(kind: str, expires: int) -> str:
        dates = f"date: {day(expires - 300)}, expires: {day(expires)}"
        return f"      - {{kind: {kind}, result: met, {dates}, evidence: e.pdf}}\n"

    return (
        "apiVersion: ringfence/v1\nassurance: ward-evidence-2026\nsuppliers:\n"
        "  - id: acme\n    assessments:\n"
        + assessment("dspt", 10)  # its last day in ten days: told, "30d"
        + assessment("cyber-essentials-plus", -1)  # ran out yesterday: told, "expired"
        + "  - id: globex\n    assessments:\n"
        + assessment("dspt", 90)  # runs out in three months: not yet
        + assessment("cyber-essentials-plus", -730)  # ran out two years ago: history, not paged about
    )


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_evidence_running_out_is_mailed_once_per_item_and_threshold(
    db_url: str, tmp_path: Path, mailbox: tuple[_Mailbox, int]
) -> None:
    box, port = mailbox
    config = write_config(
        tmp_path,
        {"assurance-mail": mail_url(port)},
        [{"events": ["evidence_expiring"], "channels": ["assurance-mail"]}],
    )
    config_path = Path(config)
    config_path.write_text(
        config_path.read_text().replace('"rto_check": "1s"', '"rto_check": "1s", "evidence_check": "1s"')
    )
    assert '"evidence_check": "1s"' in config_path.read_text()
    with running_server(db_url, notifications=config, notification_interval=FAST_NOTIFIER) as server:
        tokens = make_tokens(db_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert (
                client.post("/v1/estates", json={"content": ESTATE}, headers=auth(tokens.operator)).status_code == 201
            )
            for what, text in (("policy", POLICY), ("assurance", assurance_text())):
                answer = client.put(
                    f"/v1/estates/ward-evidence/{what}",
                    content=text.encode(),
                    headers={**auth(tokens.operator), "Content-Type": "application/yaml"},
                )
                assert answer.status_code == 200, answer.text
            wait_until("two evidence mails", lambda: len(box.messages) >= 2)
            time.sleep(3 * 1.0 + 0.5)  # three more looks at the evidence (evidence_check: 1s): nothing new
            sent = [d for d in deliveries(client, tokens.admin) if d["event"] == "evidence_expiring"]
    assert len(box.messages) == 2
    assert {d["status"] for d in sent} == {"sent"}
    thresholds = sorted(d["event_key"].rsplit(":", 1)[1] for d in sent)
    assert thresholds == ["30d", "expired"]
    bodies = {str(m["Subject"]): mail_text(m) for m in box.messages}
    assert set(bodies) == {"ringfence: evidence running out — assurance ward-evidence"}
    texts = [mail_text(m) for m in box.messages]
    soon = next(t for t in texts if f"last day {day(10)}" in t)
    assert "supplier:acme (tier 1: dspt met, at most 2 years old)" in soon
    assert f"Open: {DASHBOARD}/assurance?estate=ward-evidence" in soon
    gone = next(t for t in texts if f"ran out after {day(-1)}" in t)
    assert "cyber-essentials-plus" in gone
    assert not any("globex" in t for t in texts)
    # A restart (a new notifier on the same database) tells nobody again: the outbox remembers what was sent.
    with (
        running_server(db_url, notifications=config, notification_interval=FAST_NOTIFIER) as again,
        httpx.Client(base_url=again.url, timeout=30) as client,
    ):
        wait_until("the restarted notifier's third turn", lambda: again.app.state.notifier.stats.turns >= 3)
        after = [d for d in deliveries(client, tokens.admin) if d["event"] == "evidence_expiring"]
    assert len(box.messages) == 2
    assert sorted(d["id"] for d in after) == sorted(d["id"] for d in sent)


def test_evidence_expiring_is_an_event_a_route_may_name() -> None:
    assert NotificationEvent.EVIDENCE_EXPIRING in ROUTABLE
    text = (
        f"dashboard_url: {DASHBOARD}\nchannels:\n  mail: {{url: 'json://127.0.0.1:9/x'}}\n"
        "routes:\n  - events: [evidence_expiring]\n    channels: [mail]\ndelivery: {evidence_check: 6h}\n"
    )
    config = parse_notifications_text(text, "n.yaml")
    assert config.delivery.evidence_check == 6 * 3600
    assert config.channels_for(NotificationEvent.EVIDENCE_EXPIRING, tier=1, estate="x") == ["mail"]


@pytest.mark.parametrize("events", ["[ring_failed, evidence_expired]", "[evidence_expired]"])
def test_an_unknown_event_is_named_with_the_allowed_ones_and_nothing_else(events: str) -> None:
    text = (
        f"dashboard_url: {DASHBOARD}\nchannels:\n  mail: {{url: 'json://127.0.0.1:9/x'}}\n"
        f"routes:\n  - events: {events}\n    channels: [mail]\n"
    )
    with pytest.raises(InputError) as raised:
        parse_notifications_text(text, "n.yaml")
    problems = str(raised.value).splitlines()
    allowed = ", ".join(e.value for e in ROUTABLE)
    position = events.strip("[]").split(", ").index("evidence_expired")
    assert problems == [
        f"n.yaml:5: routes[0].events[{position}]: 'evidence_expired' is not an event; use one of {allowed}"
    ]
