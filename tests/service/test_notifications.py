"""People told when they are needed: a real server's notifier delivers for real, through apprise, to a local SMTP
server (aiosmtpd) and a local webhook receiver (an HTTP server collecting JSON posts), started here on free ports.

Nothing is mocked: the events come from the audit log the server writes, the RTO clocks from the incident code,
and a channel that refuses is a real port with nothing listening.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from live_server import RINGFENCE, make_tokens, running_server
from ringfence.core.audit import AuditEntry
from ringfence.core.clock import utc_now
from ringfence.core.notification import NotificationEvent, notice_of_entry
from ringfence.files.notifications_config import load_notifications_config
from ringfence.service.notifications import Notifier, recent_deliveries
from ringfence.store.audit import append_audit
from ringfence.store.db import session_scope

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from conftest import Samples

DASHBOARD = "https://ringfence.trust.example"
FAST_NOTIFIER = 0.1


# ------------------------------------------------------------------------------------------ receivers


class _Mailbox:
    """aiosmtpd's handler: keeps every message it is handed."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[_Mailbox, int]]:
    """A real SMTP server on a free port of 127.0.0.1, and what it received."""
    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


class _Webhook:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler


@pytest.fixture
def webhook() -> Iterator[_Webhook]:
    """A real HTTP server on a free port collecting the JSON bodies posted to it."""
    hook = _Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound and never listened on: every connection to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def mail_url(port: int) -> str:
    return f"mailto://127.0.0.1:{port}?from=ringfence@trust.example&to=it-oncall@trust.example"


def write_config(tmp_path: Path, channels: dict[str, str], routes: list[dict[str, Any]], **delivery: Any) -> str:
    document = {
        "dashboard_url": DASHBOARD,
        "channels": {name: {"url": url} for name, url in channels.items()},
        "routes": routes,
        "delivery": {"attempts": 3, "backoff": "1s", "rto_check": "1s", **delivery},
    }
    path = tmp_path / "notifications.yaml"
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return str(path)


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout} s for {what}")
        time.sleep(0.05)


def deliveries(client: httpx.Client, secret: str) -> list[dict[str, Any]]:
    response = client.get("/v1/notifications", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def upload_ward(client: httpx.Client, secret: str, samples: Samples) -> None:
    response = client.post(
        "/v1/estates", json={"content": samples.ward_estate}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code in (200, 201), response.text


def create_rollout(client: httpx.Client, secret: str, update: str) -> str:
    response = client.post(
        "/v1/rollouts", json={"estate": "ward", "update": update}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def act(client: httpx.Client, secret: str, rollout_id: str, verb: str, reason: str | None = None) -> dict[str, Any]:
    body = {"reason": reason} if reason is not None else None
    response = client.post(
        f"/v1/rollouts/{rollout_id}/{verb}", json=body, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def phase_of(client: httpx.Client, secret: str, rollout_id: str) -> str:
    return str(client.get(f"/v1/rollouts/{rollout_id}", headers={"Authorization": f"Bearer {secret}"}).json()["phase"])


def mail_text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    assert body is not None
    return str(body.get_content())


# ------------------------------------------------------------------------------------------ the tests


def test_a_rollout_awaiting_approval_is_mailed_with_a_link_to_its_page(
    db_url: str, tmp_path: Path, mailbox: tuple[_Mailbox, int], samples: Samples
) -> None:
    box, port = mailbox
    config = write_config(
        tmp_path, {"oncall": mail_url(port)}, [{"events": ["approval_needed"], "channels": ["oncall"]}]
    )
    with running_server(db_url, notifications=config, notification_interval=FAST_NOTIFIER) as server:
        tokens = make_tokens(db_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            upload_ward(client, tokens.operator, samples)
            rid = create_rollout(client, tokens.operator, samples.db_update)  # db-1 alone takes tier 1 down
            assert phase_of(client, tokens.viewer, rid) == "awaiting_approval"
            wait_until("the approval mail", lambda: box.messages)
            sent = wait_until(
                "the delivery recorded sent",
                lambda: [d for d in deliveries(client, tokens.viewer) if d["status"] == "sent"],
            )
    [message] = box.messages
    assert message["Subject"] == f"ringfence: approval needed — rollout {rid}"
    body = mail_text(message)
    assert "Event: approval_needed" in body
    assert f"Rollout: {rid}" in body
    assert "Estate: ward (most critical tier 1)" in body
    assert "Reason: update pg-16" in body
    assert f"Open: {DASHBOARD}/rollouts/{rid}" in body
    assert [(d["event"], d["channel"], d["attempts"]) for d in sent] == [("approval_needed", "oncall", 1)]


def test_a_halted_rollout_reaches_the_webhook_and_a_refusing_channel_blocks_nothing(
    db_url: str, tmp_path: Path, webhook: _Webhook, refusing_port: int, samples: Samples
) -> None:
    config = write_config(
        tmp_path,
        {"ops-hook": f"json://127.0.0.1:{webhook.port}/ringfence", "dead-hook": f"json://127.0.0.1:{refusing_port}/x"},
        [{"events": ["rollout_halted", "rollout_rolled_back"], "channels": ["dead-hook", "ops-hook"]}],
        attempts=2,
    )
    slow = samples.agent_update.replace("bake: 0s", "bake: 1h")  # keeps the rollout running until it is aborted
    with running_server(db_url, notifications=config, notification_interval=FAST_NOTIFIER) as server:
        tokens = make_tokens(db_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            upload_ward(client, tokens.operator, samples)
            rid = create_rollout(client, tokens.operator, slow)
            act(client, tokens.operator, rid, "start")
            wait_until("the rollout baking", lambda: phase_of(client, tokens.viewer, rid) == "baking")
            assert act(client, tokens.operator, rid, "abort", reason="supplier advisory")["phase"] == "halted"
            wait_until("the halt at the webhook", lambda: webhook.posts)
            # The dead channel fails, and meanwhile the rollout goes on: rolled back by the controller.
            act(client, tokens.operator, rid, "rollback")
            wait_until("the rollback", lambda: phase_of(client, tokens.viewer, rid) == "rolled_back")
            wait_until("the rollback at the webhook", lambda: len(webhook.posts) == 2)

            def given_up() -> list[dict[str, Any]]:
                found = [d for d in deliveries(client, tokens.viewer) if d["channel"] == "dead-hook"]
                return found if [d["status"] for d in found] == ["gave_up", "gave_up"] else []

            dead = wait_until("both dead-channel deliveries given up after their retry", given_up)
            shown = client.get("/v1/notifications", headers=tokens.headers(tokens.viewer)).json()
    halt, rolled_back = webhook.posts
    assert f"rollout halted — rollout {rid}" in halt["title"]
    assert "Reason: aborted by olga-operator: supplier advisory" in halt["message"]
    assert f"Open: {DASHBOARD}/rollouts/{rid}" in halt["message"]
    assert halt["type"] == "failure"
    assert "rolled back" in rolled_back["title"]
    assert [d["attempts"] for d in dead] == [2, 2]  # failed, retried after the backoff, then given up
    assert all("Connection error" in (d["last_error"] or "") for d in dead)
    assert "dead-hook" in shown["notifier"]["channels_failing"]
    assert {d["status"] for d in shown["deliveries"] if d["channel"] == "ops-hook"} == {"sent"}


def test_the_cursor_survives_a_restart_nothing_lost_nothing_repeated(
    db_url: str, tmp_path: Path, mailbox: tuple[_Mailbox, int], samples: Samples
) -> None:
    box, port = mailbox
    config = write_config(
        tmp_path, {"oncall": mail_url(port)}, [{"events": ["approval_needed"], "channels": ["oncall"]}]
    )
    notifying = {"notifications": config, "notification_interval": FAST_NOTIFIER}
    with running_server(db_url, **notifying) as server:
        tokens = make_tokens(db_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            upload_ward(client, tokens.operator, samples)
            first = create_rollout(client, tokens.operator, samples.db_update)
            wait_until("the first mail", lambda: box.messages)
    # While no notifier runs (a server without the file), a second rollout waits for approval.
    with running_server(db_url) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        second = create_rollout(client, tokens.operator, samples.db_update)
    time.sleep(0.5)
    assert len(box.messages) == 1
    with running_server(db_url, **notifying) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        wait_until("the second mail", lambda: len(box.messages) >= 2)
        time.sleep(0.5)  # several more turns: nothing else may come
        shown = client.get("/v1/notifications", headers=tokens.headers(tokens.viewer)).json()
    subjects = [str(m["Subject"]) for m in box.messages]
    assert len(subjects) == 2
    assert subjects == [f"ringfence: approval needed — rollout {r}" for r in (first, second)]
    assert sorted(d["subject"] for d in shown["deliveries"]) == [f"rollout:{first}", f"rollout:{second}"]
    assert shown["cursor"] is not None


def test_an_rto_at_risk_is_told_once(db_url: str, tmp_path: Path, webhook: _Webhook, samples: Samples) -> None:
    config = write_config(
        tmp_path,
        {"ops-hook": f"json://127.0.0.1:{webhook.port}/rto"},
        [{"events": ["rto_at_risk", "rto_breached"], "channels": ["ops-hook"], "tiers": [1]}],
    )
    with running_server(db_url, notifications=config, notification_interval=FAST_NOTIFIER) as server:
        tokens = make_tokens(db_url)
        with httpx.Client(base_url=server.url, timeout=30) as client:
            upload_ward(client, tokens.operator, samples)
            # The EHR (tier 1, RTO 4h) needs db-1 back: one restore step of 5h, so its RTO is at risk at once.
            declared = client.post(
                "/v1/incidents",
                json={"estate": "ward", "fail": ["asset:db-1"], "step_seconds": 5 * 3600},
                headers=tokens.headers(tokens.operator),
            )
            assert declared.status_code == 201, declared.text
            incident = declared.json()["id"]
            wait_until("the at-risk message", lambda: webhook.posts)
            time.sleep(2.5)  # the clocks are looked at every second: at risk still, and not told again
            shown = deliveries(client, tokens.viewer)
    [post] = webhook.posts
    assert f"RTO at risk — incident {incident}" in post["title"]
    assert "Electronic health record (ehr, tier 1)" in post["message"]
    assert f"Open: {DASHBOARD}/incidents/{incident}" in post["message"]
    assert [(d["event"], d["status"]) for d in shown] == [("rto_at_risk", "sent")]


# ------------------------------------------------------------------------------------------ the CLI


def _ringfence(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    return subprocess.run([RINGFENCE, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_notifications_test_reports_each_channel(
    tmp_path: Path, mailbox: tuple[_Mailbox, int], webhook: _Webhook, refusing_port: int
) -> None:
    box, port = mailbox
    config = write_config(
        tmp_path,
        {
            "oncall": mail_url(port),
            "ops-hook": f"json://127.0.0.1:{webhook.port}/t",
            "dead-hook": f"json://127.0.0.1:{refusing_port}/t",
        },
        [{"events": ["incident_declared"], "channels": ["oncall"]}],
    )
    done = _ringfence("notifications", "test", "--config", config, "--json")
    assert done.returncode == 1, done.stderr
    found = {c["channel"]: c for c in json.loads(done.stdout)["channels"]}
    assert [found[c]["ok"] for c in ("oncall", "ops-hook", "dead-hook")] == [True, True, False]
    assert "Connection error" in found["dead-hook"]["error"]
    assert [str(m["Subject"]) for m in box.messages] == ["ringfence: test message — channel oncall"]
    assert len(webhook.posts) == 1


def test_a_bad_file_stops_the_server_naming_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "notifications.yaml"
    path.write_text(
        "dashboard_url: https://ringfence.trust.example\n"
        "channels:\n"
        "  teams: {url: '${RINGFENCE_TEST_UNSET_WEBHOOK}'}\n"
        "routes:\n"
        "  - events: [approval_needed, ring_exploded]\n"
        "    channels: [teams]\n",
        encoding="utf-8",
    )
    done = _ringfence("serve", "--notifications", str(path), "--database", f"sqlite:///{tmp_path / 'r.db'}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{path}:5: routes[0].events[1]: 'ring_exploded' is not an event" in done.stderr
    path.write_text(path.read_text().replace(", ring_exploded", ""), encoding="utf-8")
    done = _ringfence("notifications", "test", "--config", str(path))
    assert done.returncode == 2
    assert f"{path}:3: channels.teams.url: the environment variable RINGFENCE_TEST_UNSET_WEBHOOK is not set" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def test_a_notifications_file_without_the_notify_extra_names_the_extra(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, {"hook": "json://127.0.0.1:9/x"}, [{"events": ["incident_declared"], "channels": ["hook"]}]
    )
    # The extra's module hidden, as in an install without it.
    program = (
        "import sys; sys.modules['apprise'] = None; from ringfence.cli.main import main; "
        "sys.argv[0] = 'ringfence'; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, "notifications", "test", "--config", config],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'ringfence[notify]'" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------ which entries are events


def _entry(action: str, subject: str, actor: str = "controller", **detail: Any) -> AuditEntry:
    return AuditEntry(7, datetime(2026, 12, 6, tzinfo=UTC), actor, action, subject, detail, "0" * 64, "1" * 64)


@pytest.mark.parametrize(
    ("source", "target", "reason", "event"),
    [
        ("judging", "halted", "ring 1 failed: 2 of 9 failed", "ring_failed"),
        ("applying", "halted", "aborted by olga: supplier advisory", "rollout_halted"),
        ("halted", "rolling_back", "rollback requested", None),
        ("rolling_back", "rolled_back", "every asset rolled back", "rollout_rolled_back"),
        ("rolling_back", "failed", "1 rollback failed", "rollout_failed"),
        ("judging", "paused", "ring 0 inconclusive: no canary reported", "gate_inconclusive"),
        ("judging", "paused", "paused by olga: lunch", None),  # a person paused: nobody to tell
        ("baking", "judging", "bake over", None),
        ("judging", "completed", "ring 2 passed", None),
    ],
)
def test_which_transitions_call_for_a_person(source: str, target: str, reason: str, event: str | None) -> None:
    found = notice_of_entry(
        _entry("rollout.transition", "rollout:r-000003", **{"from": source, "to": target, "reason": reason})
    )
    assert (found.event.value if found else None) == event
    if found is not None:
        assert found.reason == reason
        assert found.key == "audit:7"
        assert f"Open: {DASHBOARD}/rollouts/r-000003" in found.body(DASHBOARD + "/")


def test_a_rollout_created_without_approval_and_other_entries_are_not_events() -> None:
    assert notice_of_entry(_entry("rollout.create", "rollout:r-1", "olga", update="u", needs_approval=False)) is None
    assert notice_of_entry(_entry("token.create", "token:3", "ann", id=3)) is None
    declared = notice_of_entry(
        _entry("incident.declare", "incident:inc-000001", "olga", title="EPR down", services_down=["epr", "pas"])
    )
    assert declared is not None
    assert declared.event.value == "incident_declared"
    assert declared.reason == "EPR down; services down: epr, pas"
    assert declared.page() == "/incidents/inc-000001"


def test_routes_filter_by_event_tier_and_estate(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {"mail": "json://127.0.0.1:9/a", "pager": "json://127.0.0.1:9/b", "itsm": "json://127.0.0.1:9/c"},
        [
            {"events": ["ring_failed", "approval_needed"], "channels": ["mail"]},
            {"events": ["ring_failed"], "channels": ["pager", "mail"], "tiers": [1, 2]},
            {"events": ["ring_failed"], "channels": ["itsm"], "estates": ["city-general"]},
        ],
    )
    config = load_notifications_config(path)
    ring_failed = NotificationEvent.RING_FAILED
    assert config.channels_for(ring_failed, tier=1, estate="ward") == ["mail", "pager"]
    assert config.channels_for(ring_failed, tier=3, estate="city-general") == ["mail", "itsm"]
    assert config.channels_for(ring_failed, tier=None, estate=None) == ["mail"]
    assert config.channels_for(NotificationEvent.RTO_BREACHED, tier=1, estate="ward") == []


def test_a_failing_channel_costs_one_attempt_per_turn_and_the_others_go_out(
    db_engine: Engine, tmp_path: Path, webhook: _Webhook, refusing_port: int
) -> None:
    config = load_notifications_config(
        write_config(
            tmp_path,
            {"dead-hook": f"json://127.0.0.1:{refusing_port}/x", "ops-hook": f"json://127.0.0.1:{webhook.port}/y"},
            [{"events": ["incident_declared"], "channels": ["dead-hook", "ops-hook"]}],
        )
    )
    notifier = Notifier(db_engine, config, interval=60)
    notifier.enqueue_from_audit()  # the cursor starts at the end of the log
    with session_scope(db_engine) as session:
        for n in (1, 2, 3):
            detail = {"title": f"outage {n}", "services_down": ["epr"]}
            append_audit(
                session,
                actor="olga",
                action="incident.declare",
                subject=f"incident:inc-{n}",
                detail=detail,
                at=utc_now(),
            )
    notifier.turn()
    found, _ = recent_deliveries(db_engine)
    dead = sorted((d.status, d.attempts) for d in found if d.channel == "dead-hook")
    assert dead == [("failed", 1), ("pending", 0), ("pending", 0)]  # tried once, the rest held for the next turn
    assert len(webhook.posts) == 3
    assert sorted(d.status for d in found if d.channel == "ops-hook") == ["sent", "sent", "sent"]
