"""The notifications configuration file: where people are told, and of what (docs/notifications.md).

::

    dashboard_url: https://ringfence.trust.example        # each message links to its page here
    channels:                                             # name → an apprise URL
      oncall-mail:
        url: "mailtos://ringfence:${SMTP_PASSWORD}@smtp.trust.example:587?to=it-oncall@trust.example"
      teams-ops:
        url: "${TEAMS_OPS_WEBHOOK}"                       # the whole URL from the environment
    routes:                                               # which events go to which channels
      - events: [approval_needed, gate_inconclusive]
        channels: [oncall-mail]
      - events: [ring_failed, rollout_halted, incident_declared, rto_breached]
        channels: [teams-ops, oncall-mail]
        tiers: [1, 2]                                     # only when tier 1 or 2 is concerned
    delivery: {attempts: 5, backoff: 30s, max_backoff: 30m, rto_check: 1m, evidence_check: 1h}

``${NAME}`` in a channel's URL is replaced by the environment variable ``NAME`` when the file is read, so
secrets stay out of the file. Read when the server starts (``ringfence serve --notifications FILE`` or
``RINGFENCE_NOTIFICATIONS``) and by ``ringfence notifications test``; a file that does not hold stops the start
with every problem located by file, line and field (exit 2). The URLs are checked with apprise itself, so the
``notify`` extra must be installed.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import (
    Duration,
    LocatedValueError,
    load_document_text,
    locate_problems,
    problems_from_validation,
)
from ringfence.core.notification import ROUTABLE, NotificationEvent
from ringfence.files.disk import read_with
from ringfence.files.extras import require_extra

if TYPE_CHECKING:
    from apprise import NotifyBase

NOTIFICATIONS_ENV = "RINGFENCE_NOTIFICATIONS"
"""The environment variable naming the file when ``--notifications`` is not given."""

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CHANNEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_EVENTS = ", ".join(e.value for e in ROUTABLE)


class Channel(BaseModel):
    """One place messages go: an apprise URL (``mailtos://``, ``msteams://``, ``slack://``, ``json://`` …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(min_length=1, max_length=4096)]
    """As written in the file: ``${NAME}`` references are resolved by :meth:`resolved_url`."""

    def resolved_url(self) -> str:
        """The URL with each ``${NAME}`` replaced by its environment variable (checked present when read)."""
        return _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), ""), self.url)


class Route(BaseModel):
    """Which events go to which channels, optionally only for some tiers and estates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: Annotated[tuple[NotificationEvent, ...], Field(min_length=1)]
    channels: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    tiers: tuple[Annotated[int, Field(ge=1, le=5)], ...] | None = None
    """Only events whose most critical tier is one of these (an event with no tier never matches)."""
    estates: tuple[Annotated[str, Field(min_length=1)], ...] | None = None
    """Only events about these estates (an event of no estate never matches)."""

    @field_validator("events")
    @classmethod
    def _routable(cls, value: tuple[NotificationEvent, ...]) -> tuple[NotificationEvent, ...]:
        if NotificationEvent.TEST in value:
            raise ValueError("'test' is sent only by `ringfence notifications test`; route the other events")
        return value


class Delivery(BaseModel):
    """How hard a failing channel is tried: ``attempts`` in all, waiting ``backoff`` doubled each time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: Annotated[int, Field(ge=1, le=20)] = 5
    backoff: Duration = 30
    max_backoff: Duration = 1800
    rto_check: Duration = 60
    """How often the open incidents' RTO clocks are looked at."""
    evidence_check: Duration = 3600
    """How often the estates' stored evidence is looked at for what runs out (``evidence_expiring``)."""

    @field_validator("backoff", "rto_check", "evidence_check")
    @classmethod
    def _positive(cls, value: int) -> int:
        if not 1 <= value <= 86400:
            raise ValueError("give a time between 1s and 1d")
        return value


class NotificationsConfig(BaseModel):
    """The channels, the routes and the dashboard's address (frozen, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dashboard_url: str
    channels: dict[Annotated[str, Field(pattern=_CHANNEL_NAME)], Channel]
    routes: Annotated[tuple[Route, ...], Field(min_length=1)]
    delivery: Delivery = Delivery()

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an absolute http(s) URL; write the dashboard's address in full")
        return value.rstrip("/")

    @field_validator("channels")
    @classmethod
    def _some(cls, value: dict[str, Channel]) -> dict[str, Channel]:
        if not value:
            raise ValueError("name at least one channel (name: {url: …})")
        return value

    @model_validator(mode="after")
    def _known_channels(self) -> NotificationsConfig:
        for r, route in enumerate(self.routes):
            for c, name in enumerate(route.channels):
                if name not in self.channels:
                    known = ", ".join(sorted(self.channels))
                    raise LocatedValueError(
                        f"no channel is named '{name}' (the channels: {known})", ("routes", r, "channels", c)
                    )
        return self

    def channels_for(self, event: NotificationEvent, *, tier: int | None, estate: str | None) -> list[str]:
        """The channels ``event`` goes to, each once, in the order the routes name them."""
        found: list[str] = []
        for route in self.routes:
            if event not in route.events:
                continue
            if route.tiers is not None and (tier is None or tier not in route.tiers):
                continue
            if route.estates is not None and (estate is None or estate not in route.estates):
                continue
            found += [c for c in route.channels if c not in found]
        return found


_LOADING = threading.Lock()


def apprise_plugin(url: str) -> NotifyBase | None:
    """The apprise plugin for ``url`` (None when apprise cannot read it); the ``notify`` extra must be installed.

    Apprise loads its plugins on first use, and one of them imports a standard module Python 3.11 deprecates
    (``imghdr``): that warning is apprise's, not something a ringfence user can act on, so it is silenced there.
    """
    require_extra("notify", "Notifications (--notifications)")
    with _LOADING, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise

        return apprise.Apprise.instantiate(url)


def _explain(error: Any, path: tuple[str | int, ...]) -> str | None:
    """This file's words for the errors whose usual sentence would not help (see ``problems_from_validation``)."""
    if error["type"] == "enum" and "events" in path:
        return f"'{error['input']}' is not an event; use one of {_EVENTS}"
    if error["type"] == "string_pattern_mismatch" and path[:1] == ("channels",):
        return "a channel's name is letters, digits, '.', '_' or '-' (at most 64)"
    return None


def parse_notifications_text(text: str, source: str) -> NotificationsConfig:
    """Validate a notifications configuration; InputError naming ``source``, the line and the field.

    Each channel's URL is resolved from the environment and read by apprise here, so a typo or an unset
    variable stops the server's start instead of losing the first message that matters.
    """
    data: Any = load_document_text(text, source)
    if not isinstance(data, dict):
        raise InputError(
            [
                Problem(
                    "the notifications configuration is a mapping (dashboard_url:, channels:, routes:)", source=source
                )
            ]
        )
    try:
        config = NotificationsConfig.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, data, source, explain=_explain)
        raise InputError(locate_problems(problems, text)) from None
    problems = []
    for name, channel in config.channels.items():
        where = ("channels", name, "url")
        missing = [m.group(1) for m in _ENV_REFERENCE.finditer(channel.url) if not os.environ.get(m.group(1))]
        if missing:
            names = ", ".join(missing)
            problems.append(Problem(f"the environment variable {names} is not set", path=where, source=source))
            continue
        if apprise_plugin(channel.resolved_url()) is None:
            scheme = channel.url.partition("://")[0] if "://" in channel.url else channel.url[:20]
            problems.append(
                Problem(
                    f"apprise cannot read this URL (scheme '{scheme}'); see docs/notifications.md for the forms "
                    "of mailto://, msteams://, slack:// and json:// URLs",
                    path=where,
                    source=source,
                )
            )
    if problems:
        raise InputError(locate_problems(problems, text))
    return config


def load_notifications_config(path: str | Path) -> NotificationsConfig:
    """Read and validate the notifications configuration file at ``path``."""
    return read_with(path, parse_notifications_text)


__all__ = [
    "NOTIFICATIONS_ENV",
    "Channel",
    "Delivery",
    "NotificationsConfig",
    "Route",
    "apprise_plugin",
    "load_notifications_config",
    "parse_notifications_text",
]
