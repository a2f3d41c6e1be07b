"""The sign-in configuration file (``oidc.yaml``): which OpenID Connect provider people sign in at, and the
role each of the provider's groups gives them.

::

    issuer: https://login.microsoftonline.com/<tenant-id>/v2.0
    client_id: 6f1c…                              # the app registration's Application (client) ID
    client_secret_env: RINGFENCE_OIDC_CLIENT_SECRET   # or client_secret: … (kept out of the file is better)
    redirect_url: https://ringfence.trust.example/auth/callback
    roles_from: groups                            # or app_roles: Entra ID app roles (the `roles` claim)
    groups_claim: groups                          # the ID token claim listing the person's groups
    person_claim: preferred_username              # the claim that names the person in the audit log
    roles:                                        # group (Entra ID: its object id), or app role value → role
      2b7e…: approver
      9a0d…: operator
    session_lifetime: 8h

Read once when the server starts (``ringfence serve --oidc-config FILE`` or ``RINGFENCE_OIDC_CONFIG``); a
file that does not hold stops the start with every problem located by file, line and field (exit 2), so a
typo never leaves a ward unable to sign in at the first click. docs/sign-in.md explains each field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ringfence.core.errors import InputError, Problem
from ringfence.core.estate import Duration, load_document_text, locate_problems, problems_from_validation
from ringfence.files.disk import read_with

OIDC_CONFIG_ENV = "RINGFENCE_OIDC_CONFIG"
"""The environment variable naming the file when ``--oidc-config`` is not given."""

CALLBACK_PATH = "/auth/callback"
"""Where ringfence answers the provider's redirect: the path every ``redirect_url`` must end in."""

LONGEST_SESSION = 7 * 86400
"""A week: a session is a person at a screen, not a credential for a script (those are API tokens)."""

PersonRole = Literal["viewer", "operator", "approver", "admin"]
"""The roles a group may give; agents are never people."""

APP_ROLES_CLAIM = "roles"
"""The claim an OpenID Connect provider lists the app roles assigned to a person in (Entra ID, Keycloak's
client roles mapped flat, Okta's custom claims named so): what ``roles_from: app_roles`` reads."""


def _is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", "::1")


def _url(value: str, what: str) -> str:
    """An absolute http(s) URL; plain http only on this machine (a provider or dashboard under test)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"'{value}' is not an absolute http(s) URL; write the {what} in full, https://…")
    if parts.scheme == "http" and not _is_local(parts.hostname):
        raise ValueError(f"'{value}' is plain http; the {what} must be https (http is allowed only for localhost)")
    return value


class OidcConfig(BaseModel):
    """One OpenID Connect provider and what its groups mean in ringfence (frozen, validated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    """The provider's issuer URL: discovery is ``{issuer}/.well-known/openid-configuration``."""
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: str | None = None
    client_secret_env: str | None = None
    """The environment variable holding the secret (read at start), so the file holds no secret."""
    redirect_url: str
    """This dashboard's ``/auth/callback`` as the browser reaches it, registered with the provider."""
    post_logout_redirect_url: str | None = None
    """Where the provider sends the browser after signing out there; default: this dashboard's ``/login``."""
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    roles_from: Literal["groups", "app_roles"] = "groups"
    """Where the person's role comes from: their groups (``groups_claim``), or the app roles assigned to them
    (the ``roles`` claim). Entra ID sends at most 200 groups in an ID token and none past that (the groups
    overage); app roles have no such limit, so they are the choice for large tenants."""
    groups_claim: Annotated[str, Field(min_length=1)] = "groups"
    person_claim: Annotated[str, Field(min_length=1)] = "email"
    roles: dict[Annotated[str, Field(min_length=1)], PersonRole]
    session_lifetime: Duration = 8 * 3600
    token_sign_in: bool = True
    """Whether ``/login`` also offers the API token form (people without an account at the provider)."""
    provider_sign_out: bool = True
    """Whether signing out also signs out at the provider (its ``end_session_endpoint``), when it has one."""
    button: Annotated[str, Field(min_length=1, max_length=80)] = "Sign in with your organisation"

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _url(value, "issuer").rstrip("/")

    @field_validator("redirect_url")
    @classmethod
    def _redirect(cls, value: str) -> str:
        _url(value, "redirect URL")
        if urlsplit(value).path != CALLBACK_PATH or urlsplit(value).query:
            raise ValueError(f"'{value}' must end in {CALLBACK_PATH}, the path ringfence answers sign-ins at")
        return value

    @field_validator("post_logout_redirect_url")
    @classmethod
    def _after_logout(cls, value: str | None) -> str | None:
        return None if value is None else _url(value, "post-logout redirect URL")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("scopes must include 'openid' (without it the provider sends no ID token)")
        return value

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: dict[str, PersonRole]) -> dict[str, PersonRole]:
        if not value:
            raise ValueError("map at least one group to a role (viewer, operator, approver or admin)")
        return value

    @field_validator("session_lifetime")
    @classmethod
    def _lifetime(cls, value: int) -> int:
        if not 1 <= value <= LONGEST_SESSION:
            raise ValueError("a session lasts between 1s and 7d")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> OidcConfig:
        if self.client_secret is not None and self.client_secret_env is not None:
            raise ValueError("give client_secret or client_secret_env, not both")
        return self

    @property
    def role_claim(self) -> str:
        """The ID token claim whose values ``roles`` maps: the groups claim, or the app roles claim."""
        return APP_ROLES_CLAIM if self.roles_from == "app_roles" else self.groups_claim

    @property
    def after_logout_url(self) -> str:
        if self.post_logout_redirect_url is not None:
            return self.post_logout_redirect_url
        parts = urlsplit(self.redirect_url)
        return f"{parts.scheme}://{parts.netloc}/login"

    def secret(self) -> str | None:
        """The client secret (from the file or its environment variable); None for a public client."""
        if self.client_secret_env is not None:
            return os.environ.get(self.client_secret_env) or None
        return self.client_secret


def parse_oidc_config_text(text: str, source: str) -> OidcConfig:
    """Validate the text of a sign-in configuration; InputError naming ``source``, the line and the field."""
    data = load_document_text(text, source)
    if not isinstance(data, dict):
        raise InputError([Problem("the sign-in configuration is a mapping (issuer:, client_id:, …)", source=source)])
    try:
        config = OidcConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(locate_problems(problems_from_validation(exc, data, source), text)) from None
    if config.client_secret_env is not None and config.secret() is None:
        problem = Problem(
            f"the environment variable {config.client_secret_env} is not set (it holds the client secret)",
            path=("client_secret_env",),
            source=source,
        )
        raise InputError(locate_problems([problem], text))
    return config


def load_oidc_config(path: str | Path) -> OidcConfig:
    """Read and validate the sign-in configuration file at ``path``."""
    return read_with(path, parse_oidc_config_text)


__all__ = [
    "APP_ROLES_CLAIM",
    "CALLBACK_PATH",
    "OIDC_CONFIG_ENV",
    "OidcConfig",
    "load_oidc_config",
    "parse_oidc_config_text",
]
