"""Signing in at an OpenID Connect provider, end to end, against a real one: oidc-provider (an OpenID-certified
implementation, npm) on Node.js, started here on localhost (tests/oidc/provider.mjs), and ``ringfence serve``
in a process of its own with the sign-in configuration in ``RINGFENCE_OIDC_CONFIG``.

The provider's login form is submitted over HTTP as a browser would (httpx, cookies kept), and once in Chromium.
Its people: ann (group rf-approvers), otto (rf-operators; app role Ringfence.Operator), vic (rf-viewers), nina
(no group ringfence maps), olga (in too many groups: her token has Entra ID's groups overage, ``_claim_names``
instead of ``groups``; app role Ringfence.Approver). The main dashboard maps groups; the brief one app roles.

Node and npm are needed; without them the tests skip, unless ``RINGFENCE_REQUIRE_SERVICES=1`` (CI), where they
fail. The provider is installed once from the committed lock file (``npm ci`` into tests/oidc/node_modules).
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser
from sqlalchemy.engine import Engine

from live_server import RINGFENCE, ServerProcess, reserve_port
from ringfence.core.audit import AuditEntry
from ringfence.core.clock import utc_now
from ringfence.core.errors import PermissionDeniedError
from ringfence.files.extras import MissingExtraError
from ringfence.files.oidc_config import load_oidc_config
from ringfence.service.oidc import SIGN_IN_KEY_ENV, Identity, PendingSignIn, RelyingParty, SignInError, sign_in_key
from ringfence.service.sessions import (
    ENDED_SESSIONS_KEPT,
    begin_session,
    end_session,
    purge_ended_sessions,
)
from ringfence.service.tokens import Role, TokenCache, authenticate, revoke_token
from ringfence.store import tokens as stored
from ringfence.store.audit import list_audit
from ringfence.store.db import make_engine, session_scope
from web.conftest import REQUIRE_SERVICES_ENV

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
CLIENT_ID = "ringfence-test"
SECRET_ENV = "RINGFENCE_TEST_OIDC_SECRET"
CLIENT_SECRET = "a secret with spaces & symbols ~:"
"""Not URL-safe on purpose: client_secret_basic must form-encode it (RFC 6749 §2.3.1)."""
ANN = "ann.approver@trust.example"
NINA = "nina.nogroup@trust.example"
OLGA = "olga.overage@trust.example"
SIGN_IN_KEY = "the dashboards' sign-in key, known to the tests"
"""Given to both servers, so a test can seal a pending sign-in as the server would (one too old, say)."""
KEY = sign_in_key({SIGN_IN_KEY_ENV: SIGN_IN_KEY})


def _needed(message: str) -> None:
    if os.environ.get(REQUIRE_SERVICES_ENV) == "1":
        pytest.fail(f"{message}, and {REQUIRE_SERVICES_ENV}=1 says the sign-in tests must run")
    pytest.skip(message)


def node_for_provider() -> str:
    """node, with oidc-provider installed from the lock file (``npm ci``, once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _needed("node and npm are missing (apt-get install nodejs npm)")
    assert node is not None
    assert npm is not None
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=OIDC_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            _needed(f"npm ci in {OIDC_DIR} failed: {done.stderr[-2000:]}")
    return node


@dataclass
class Dashboard:
    """A ``ringfence serve`` signing people in at the provider, and its database."""

    server: ServerProcess
    config: Path
    engine: Engine

    @property
    def url(self) -> str:
        return self.server.url


@dataclass
class Trust:
    """The provider, and two dashboards: roles from groups with sessions of 8 hours, and roles from app roles
    with sessions of 1 second and the token form switched off."""

    issuer: str
    main: Dashboard
    brief: Dashboard


GROUP_ROLES = """groups_claim: groups
roles:
  rf-approvers: approver
  rf-operators: operator
  rf-viewers: viewer"""
APP_ROLES = """roles_from: app_roles
roles:
  Ringfence.Approver: approver
  Ringfence.Operator: operator"""


def _config(
    path: Path, issuer: str, dashboard_url: str, *, lifetime: str, token_sign_in: bool, roles: str = GROUP_ROLES
) -> Path:
    path.write_text(
        f"""# the sign-in configuration, as docs/sign-in.md writes it
issuer: {issuer}
client_id: {CLIENT_ID}
client_secret_env: {SECRET_ENV}
redirect_url: {dashboard_url}/auth/callback
person_claim: email
{roles}
session_lifetime: {lifetime}
token_sign_in: {"true" if token_sign_in else "false"}
button: Sign in with Trust ID
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trust]:
    node = node_for_provider()
    folder = tmp_path_factory.mktemp("oidc")
    env = {SECRET_ENV: CLIENT_SECRET, SIGN_IN_KEY_ENV: SIGN_IN_KEY}
    main = ServerProcess(f"sqlite:///{folder / 'main.db'}", folder / "main.log", env=dict(env))
    brief = ServerProcess(f"sqlite:///{folder / 'brief.db'}", folder / "brief.log", env=dict(env))
    port_holder = reserve_port()
    port = port_holder.getsockname()[1]
    port_holder.close()  # node binds it itself a moment later
    issuer = f"http://localhost:{port}"  # another site than the dashboard (127.0.0.1), see provider.mjs
    provider_env = dict(
        os.environ,
        OIDC_PORT=str(port),
        OIDC_CLIENT_ID=CLIENT_ID,
        OIDC_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_REDIRECT_URI=f"{main.url}/auth/callback {brief.url}/auth/callback",
        OIDC_LOGOUT_URI=f"{main.url}/login {brief.url}/login",
    )
    log = folder / "provider.log"
    with log.open("wb") as out:
        provider = subprocess.Popen(
            [node, str(OIDC_DIR / "provider.mjs")], cwd=OIDC_DIR, env=provider_env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert provider.poll() is None, f"the provider exited: {log.read_text()}"
            try:
                if httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the provider did not answer: {log.read_text()}"
            time.sleep(0.1)
        main.env["RINGFENCE_OIDC_CONFIG"] = str(
            _config(folder / "oidc.yaml", issuer, main.url, lifetime="8h", token_sign_in=True)
        )
        brief.env["RINGFENCE_OIDC_CONFIG"] = str(
            _config(folder / "brief.yaml", issuer, brief.url, lifetime="1s", token_sign_in=False, roles=APP_ROLES)
        )
        main.start()
        brief.start()
        dashboards = [
            Dashboard(s, Path(s.env["RINGFENCE_OIDC_CONFIG"]), make_engine(s.database_url)) for s in (main, brief)
        ]
        yield Trust(issuer, *dashboards)
        for dashboard in dashboards:
            dashboard.engine.dispose()
    finally:
        main.close()
        brief.close()
        provider.terminate()
        provider.wait(10)


# ------------------------------------------------------------------------------------------ a person's browser


def at_provider_login(client: httpx.Client, start_url: str) -> httpx.Response:
    """Follow ``start_url`` (``/login/oidc`` or the provider's authorization URL) to the provider's login form."""
    response = client.get(start_url, follow_redirects=True)
    assert response.status_code == 200, response.text[:2000]
    assert 'name="login"' in response.text, response.text[:2000]
    return response


def submit_login(client: httpx.Client, form_page: httpx.Response, login: str, callback_prefix: str) -> str:
    """Submit the provider's login form as ``login`` and follow its redirects up to (not into) the callback."""
    action = re.search(r'<form[^>]*action="([^"]+)"', form_page.text)
    assert action is not None, form_page.text[:2000]
    response = client.post(
        urljoin(str(form_page.url), html.unescape(action.group(1))),
        data={"prompt": "login", "login": login, "password": "any password"},
    )
    for _ in range(10):
        assert response.is_redirect, response.text[:2000]
        location = urljoin(str(response.url), response.headers["location"])
        if location.startswith(callback_prefix):
            return location
        response = client.get(location)
    raise AssertionError("the provider never sent the browser back")


def sign_in(client: httpx.Client, dashboard: Dashboard, login: str, next_path: str = "/") -> httpx.Response:
    """The whole sign-in, as a person's browser goes through it; the callback's answer."""
    form = at_provider_login(client, f"{dashboard.url}/login/oidc?next={next_path}")
    callback = submit_login(client, form, login, f"{dashboard.url}/auth/callback")
    return client.get(callback)


def audit_of(engine: Engine, action: str) -> list[AuditEntry]:
    with session_scope(engine, readonly=True) as session:
        return [e for e in list_audit(session) if e.action == action]


def same_origin(dashboard: Dashboard) -> dict[str, str]:
    return {"Origin": dashboard.url}


# ------------------------------------------------------------------------------------------ the tests


def test_an_approver_signs_in_and_the_dashboard_and_audit_name_her(trust: Trust) -> None:
    with httpx.Client() as browser:
        answer = sign_in(browser, trust.main, "ann.approver", next_path="/rollouts")
        assert answer.status_code == 200, answer.text
        assert f"Signed in as {ANN} (approver)" in answer.text
        assert 'content="0;url=/rollouts"' in answer.text  # sent on by a page (see web.routes.oidc), to next
        assert browser.cookies.get("ringfence_sign_in") is None  # the pending sign-in is used up
        page = browser.get(f"{trust.main.url}/rollouts")
        assert page.status_code == 200
        assert f'<strong class="caller-name">{ANN}</strong>' in page.text
        assert "(approver)" in page.text
    [entry] = [e for e in audit_of(trust.main.engine, "auth.sign_in") if e.actor == ANN][-1:]
    assert entry.detail["role"] == "approver"
    assert entry.detail["groups"] == "rf-approvers"
    assert entry.detail["subject"] == "ann.approver"
    assert entry.detail["issuer"] == trust.issuer
    session_ends = utc_now() + timedelta(hours=8)
    assert abs(datetime.fromisoformat(str(entry.detail["expires_at"])) - session_ends) < timedelta(minutes=1)


def test_the_role_comes_from_the_groups_and_is_enforced(trust: Trust) -> None:
    with httpx.Client() as ann, httpx.Client() as vic:
        assert sign_in(ann, trust.main, "ann.approver").status_code == 200
        assert sign_in(vic, trust.main, "vic.viewer").status_code == 200
        assert ann.get(f"{trust.main.url}/v1/estates").status_code == 200
        # Tokens are the admins': an approver's session is refused, as her API token would be.
        refused = ann.get(f"{trust.main.url}/v1/tokens")
        assert refused.status_code == 403
        assert "approver" in refused.text
        # A viewer may not upload an estate (operator and up), with the dashboard's cookie on /v1.
        upload = vic.post(
            f"{trust.main.url}/v1/estates",
            content=b"apiVersion: ringfence/v1\nestate: x\n",
            headers={"Content-Type": "application/yaml", **same_origin(trust.main)},
        )
        assert upload.status_code == 403
        assert "viewer" in upload.text


def test_a_person_in_no_mapped_group_is_refused_with_a_page_saying_why(trust: Trust) -> None:
    with httpx.Client() as browser:
        answer = sign_in(browser, trust.main, "nina.nogroup")
        assert answer.status_code == 403
        assert f"you signed in as {NINA}, but none of your groups is given a role in ringfence" in answer.text
        assert browser.cookies.get("ringfence_token") is None
        assert browser.get(f"{trust.main.url}/").status_code == 303  # to /login: no session was made
    assert [e.actor for e in audit_of(trust.main.engine, "auth.sign_in_refused")][-1] == NINA
    assert NINA not in [e.actor for e in audit_of(trust.main.engine, "auth.sign_in")]


def test_a_session_ends_at_its_lifetime_even_in_the_token_cache(trust: Trust) -> None:
    with httpx.Client() as browser:
        assert sign_in(browser, trust.brief, "otto.operator").status_code == 200
        secret = browser.cookies["ringfence_token"]
        # At once: the session works (and the server's token cache now holds it).
        assert browser.get(f"{trust.brief.url}/").status_code == 200
        time.sleep(1.5)  # the configured lifetime is 1s
        # The browser has dropped the cookie (its Max-Age is the lifetime)…
        assert browser.get(f"{trust.brief.url}/").status_code == 303
    # …and the server refuses the secret itself: a cookie kept past its end (copied, or a clock put back).
    api = httpx.get(f"{trust.brief.url}/v1/estates", headers={"Authorization": f"Bearer {secret}"})
    assert api.status_code == 401
    assert "the session has ended" in api.text
    ended = httpx.get(f"{trust.brief.url}/", cookies={"ringfence_token": secret})
    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/login")


def test_sign_out_revokes_the_session_and_signs_out_at_the_provider(trust: Trust) -> None:
    with httpx.Client() as browser:
        assert sign_in(browser, trust.main, "otto.operator").status_code == 200
        secret = browser.cookies["ringfence_token"]
        bearer = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{trust.main.url}/v1/estates", headers=bearer).status_code == 200
        out = browser.post(f"{trust.main.url}/logout", headers=same_origin(trust.main))
        assert out.status_code == 200
        assert "Signed out of ringfence" in out.text
        assert browser.cookies.get("ringfence_token") is None
        target = html.unescape(re.search(r'content="0;url=([^"]+)"', out.text).group(1))  # type: ignore[union-attr]
        assert target.startswith(f"{trust.issuer}/session/end?")
        query = parse_qs(urlsplit(target).query)
        assert query == {"client_id": [CLIENT_ID], "post_logout_redirect_uri": [f"{trust.main.url}/login"]}
        assert browser.get(target).status_code == 200  # the provider accepts it: its sign-out page
        # The secret itself no longer works, anywhere (not just a cleared cookie).
        revoked = httpx.get(f"{trust.main.url}/v1/estates", headers=bearer)
        assert revoked.status_code == 401
    [entry] = audit_of(trust.main.engine, "auth.sign_out")[-1:]
    assert entry.actor == "otto.operator@trust.example"
    assert entry.detail["role"] == "operator"


def test_a_tampered_state_a_missing_verifier_and_a_wrong_verifier_are_refused(trust: Trust) -> None:
    start, callback = f"{trust.main.url}/login/oidc", f"{trust.main.url}/auth/callback"
    # Each attempt in a browser of its own: the provider would otherwise sign the same browser in at once.
    with httpx.Client() as browser:
        # The state sent back is not this browser's sign-in (login CSRF): refused before the code is used.
        answer = submit_login(browser, at_provider_login(browser, start), "ann.approver", callback)
        refused = browser.get(re.sub(r"state=[^&]+", "state=forged", answer))
        assert refused.status_code == 403
        assert "is not this sign-in&#39;s" in refused.text
        assert browser.cookies.get("ringfence_token") is None

    with httpx.Client() as browser:
        # No pending sign-in (its state and PKCE verifier) in this browser: refused.
        answer = submit_login(browser, at_provider_login(browser, start), "ann.approver", callback)
        browser.cookies.delete("ringfence_sign_in")
        refused = browser.get(answer)
        assert refused.status_code == 403
        assert "was not started from this browser" in refused.text
        assert browser.cookies.get("ringfence_token") is None

    with httpx.Client() as browser:
        # The right state but another verifier (a code stolen and replayed), in a cookie sealed with the server's
        # own key (as if its key were known): the provider itself refuses the code.
        answer = submit_login(browser, at_provider_login(browser, start), "ann.approver", callback)
        pending = PendingSignIn.unseal(browser.cookies["ringfence_sign_in"], KEY, now=time.time())
        assert pending is not None
        swapped = PendingSignIn(pending.state, pending.nonce, "x" * 64, pending.next_path, pending.begun_at)
        plant_pending(browser, swapped.seal(KEY))
        refused = browser.get(answer)
        assert refused.status_code == 403
        assert "would not redeem the sign-in" in refused.text
        assert browser.cookies.get("ringfence_token") is None

    with httpx.Client() as browser:
        # And the same steps untouched sign in: the refusals above were the tampering's.
        answer = submit_login(browser, at_provider_login(browser, start), "ann.approver", callback)
        assert browser.get(answer).status_code == 200
        assert browser.cookies.get("ringfence_token") is not None


def plant_pending(browser: httpx.Client, value: str) -> None:
    """Replace the browser's pending sign-in cookie with ``value`` (as whoever can write its cookies would)."""
    browser.cookies.delete("ringfence_sign_in")
    browser.cookies.set("ringfence_sign_in", value, domain="127.0.0.1", path="/auth/callback")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_a_pending_sign_in_cookie_changed_forged_or_too_old_is_refused_with_a_page_saying_so(trust: Trust) -> None:
    """The pending sign-in cookie is sealed by the server (HMAC under its sign-in key): only what it issued, and
    only for ten minutes by the sealed time, is taken; each refusal is a page saying why, and no session."""
    start, callback = f"{trust.main.url}/login/oidc?next=/rollouts", f"{trust.main.url}/auth/callback"

    def attempt(tamper: str) -> httpx.Response:
        with httpx.Client() as browser:
            answer = submit_login(browser, at_provider_login(browser, start), "ann.approver", callback)
            cookie = browser.cookies["ringfence_sign_in"]
            payload, _, mac = cookie.partition(".")
            real = PendingSignIn.unseal(cookie, KEY, now=time.time())
            assert real is not None
            assert real.next_path == "/rollouts"
            state = parse_qs(urlsplit(answer).query)["state"][0]
            if tamper == "next changed":
                # Where to go after, changed in place (the seal kept): an open redirect, were it taken.
                document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                document["next"] = "/tokens"
                plant_pending(browser, f"{_b64(json.dumps(document).encode())}.{mac}")
            elif tamper == "made up":
                # A state (the one sent back) and a verifier of the attacker's own, as the cookie was before it
                # was sealed: plain base64 JSON.
                made_up = {"state": state, "nonce": "mine", "verifier": "m" * 64, "next": "/", "at": int(time.time())}
                plant_pending(browser, _b64(json.dumps(made_up).encode()))
            elif tamper == "another key":
                forged = PendingSignIn(state, "mine", "m" * 64, "/", int(time.time()))
                plant_pending(browser, forged.seal(sign_in_key({SIGN_IN_KEY_ENV: "another server's key"})))
            elif tamper == "too old":
                # Sealed by the server's own key, but begun eleven minutes ago (a cookie kept past its Max-Age).
                old = PendingSignIn(real.state, real.nonce, real.verifier, real.next_path, int(time.time()) - 660)
                plant_pending(browser, old.seal(KEY))
            refused = browser.get(answer)
            assert browser.cookies.get("ringfence_token") is None
            return refused

    for tamper in ("next changed", "made up", "another key"):
        refused = attempt(tamper)
        assert refused.status_code == 403, tamper
        assert "Not signed in" in refused.text
        assert "cookie was changed after ringfence set it, or was set by another server" in refused.text, tamper
    too_old = attempt("too old")
    assert too_old.status_code == 403
    assert "this sign-in took longer than 10 minutes at the identity provider; start again" in too_old.text


def test_entra_groups_overage_is_refused_with_the_fix_named_and_app_roles_sign_the_person_in(trust: Trust) -> None:
    """Olga is in too many groups: her ID token names Microsoft Graph instead of listing them (``_claim_names``,
    as Entra ID does past 200). Where roles come from groups she is refused with a page naming both fixes;
    where they come from app roles (``roles_from: app_roles``, which have no such limit) she signs in."""
    with httpx.Client() as browser:
        refused = sign_in(browser, trust.main, "olga.overage")
        assert refused.status_code == 403
        said = html.unescape(" ".join(refused.text.split()))
        assert f"you signed in as {OLGA}, but you are in more groups than the identity provider puts in" in said
        assert "set roles_from: app_roles in the sign-in configuration" in said
        assert "'Groups assigned to the application'" in said
        assert browser.cookies.get("ringfence_token") is None
    [entry] = [e for e in audit_of(trust.main.engine, "auth.sign_in_refused") if e.actor == OLGA][-1:]
    assert entry.detail["groups_overage"] is True

    with httpx.Client() as browser:
        answer = sign_in(browser, trust.brief, "olga.overage")
        assert answer.status_code == 200, answer.text
        assert f"Signed in as {OLGA} (approver)" in answer.text
    [signed_in] = [e for e in audit_of(trust.brief.engine, "auth.sign_in") if e.actor == OLGA][-1:]
    assert signed_in.detail["groups"] == "Ringfence.Approver"
    with httpx.Client() as browser:
        # Nina has no app role: refused, with the app-role wording.
        nina = sign_in(browser, trust.brief, "nina.nogroup")
        assert nina.status_code == 403
        assert "you have no app role for ringfence" in html.unescape(nina.text)


@pytest.fixture(scope="module")
def relying_party(trust: Trust) -> Iterator[RelyingParty]:
    saved = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = CLIENT_SECRET
    try:
        yield RelyingParty(load_oidc_config(trust.main.config))
    finally:
        if saved is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = saved


def a_code(trust: Trust, party: RelyingParty, login: str) -> tuple[str, PendingSignIn]:
    """An authorization code the provider issued for ``login``, and the sign-in it belongs to."""
    url, pending = party.begin("/")
    with httpx.Client() as browser:
        answer = submit_login(browser, at_provider_login(browser, url), login, f"{trust.main.url}/auth/callback")
    return parse_qs(urlsplit(answer).query)["code"][0], pending


def test_the_provider_refuses_a_code_without_the_pkce_verifier(trust: Trust, relying_party: RelyingParty) -> None:
    code, _ = a_code(trust, relying_party, "ann.approver")
    with pytest.raises(SignInError, match="would not redeem"):
        relying_party.redeem(code, "")


def test_the_id_token_is_verified_signature_audience_and_nonce(trust: Trust, relying_party: RelyingParty) -> None:
    code, pending = a_code(trust, relying_party, "ann.approver")
    id_token = relying_party.redeem(code, pending.verifier)
    identity = relying_party.verify_id_token(id_token, pending.nonce)
    assert (identity.person, identity.subject, identity.groups) == (ANN, "ann.approver", ("rf-approvers", "all-staff"))

    header, payload, signature = id_token.split(".")
    forged_claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_claims["groups"] = ["rf-approvers", "rf-admins"]
    forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).decode().rstrip("=")
    with pytest.raises(SignInError, match="signature does not hold"):
        relying_party.verify_id_token(f"{header}.{forged}.{signature}", pending.nonce)
    with pytest.raises(SignInError, match="nonce differs"):
        relying_party.verify_id_token(id_token, "another sign-in's nonce")
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    with pytest.raises(SignInError, match="'none'"):
        relying_party.verify_id_token(f"{unsigned}.{payload}.", pending.nonce)
    other_client = RelyingParty(relying_party.config.model_copy(update={"client_id": "another-app"}))
    with pytest.raises(SignInError, match="aud"):
        other_client.verify_id_token(id_token, pending.nonce)


def test_the_overage_is_what_the_real_id_token_carries(trust: Trust, relying_party: RelyingParty) -> None:
    code, pending = a_code(trust, relying_party, "olga.overage")
    id_token = relying_party.redeem(code, pending.verifier)
    payload = id_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert "groups" not in claims
    assert claims["_claim_names"] == {"groups": "src1"}
    assert claims["_claim_sources"]["src1"]["endpoint"].startswith("https://graph.microsoft.com/")
    identity = relying_party.verify_id_token(id_token, pending.nonce)
    assert (identity.groups, identity.groups_sent, identity.overage) == ((), False, True)


def test_the_token_form_is_hidden_and_refused_when_switched_off(trust: Trust) -> None:
    shown = httpx.get(f"{trust.main.url}/login")
    assert "Sign in with Trust ID" in shown.text
    assert 'name="token"' in shown.text
    hidden = httpx.get(f"{trust.brief.url}/login")
    assert "Sign in with Trust ID" in hidden.text
    assert 'name="token"' not in hidden.text
    refused = httpx.post(f"{trust.brief.url}/login", data={"token": "rf_x"}, headers=same_origin(trust.brief))
    assert refused.status_code == 403
    assert "switched off" in refused.text


def test_chromium_signs_in_through_the_provider_and_out(trust: Trust, browser: Browser) -> None:
    """In a real browser, the provider on another site (localhost, the dashboard on 127.0.0.1): the session's
    SameSite=Strict cookie is set on the provider's redirect back and sent on the page after it, which a plain
    redirect from the callback would not get (the browser withholds it on a redirect chain another site began)."""
    context = browser.new_context(base_url=trust.main.url)
    try:
        # The provider's development pages @import a web font; this machine reaches nothing but itself.
        context.route(re.compile(r"^https?://(?!(127\.0\.0\.1|localhost)[:/])"), lambda route: route.abort())
        page = context.new_page()
        page.goto("/rollouts")
        page.get_by_role("link", name="Sign in with Trust ID").click()
        page.locator('input[name="login"]').fill("ann.approver")
        page.locator('input[name="password"]').fill("any password")
        page.get_by_role("button", name="Sign-in").click()
        page.wait_for_url(f"{trust.main.url}/rollouts")
        assert page.locator(".caller-name").inner_text() == ANN
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(rf"^{re.escape(trust.issuer)}/session/end"))
        page.goto("/")
        assert page.url.startswith(f"{trust.main.url}/login")
    finally:
        context.close()


# ------------------------------------------------------------------------------------------ the service, both databases


def test_ended_sessions_are_purged_a_bounded_batch_per_sign_in_on_both_databases(
    db_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    config = load_oidc_config(
        _config(
            tmp_path / "oidc.yaml", "https://login.example", "https://rf.example", lifetime="1h", token_sign_in=True
        )
    )
    otto = Identity("https://login.example", "otto", "otto@trust.example", "Otto", ("rf-operators",), True)
    now = utc_now()
    long_ago = now - ENDED_SESSIONS_KEPT - timedelta(hours=2)
    expired = [begin_session(db_engine, otto, config, at=long_ago) for _ in range(3)]
    signed_out = begin_session(db_engine, otto, config, at=long_ago)
    revoke_token(db_engine, signed_out.token_id, at=long_ago + timedelta(minutes=5))
    recently_ended = begin_session(db_engine, otto, config, at=now - timedelta(hours=2))  # ended an hour ago: kept
    issuer = begin_session(db_engine, otto, config, at=long_ago)  # ended long ago, but issued a token: kept
    with session_scope(db_engine) as session:
        issued = stored.add_token(
            session,
            name="script",
            role="viewer",
            token_hash="0" * 64,
            asset_id=None,
            created_at=long_ago,
            issued_by=issuer.token_id,
        )
        stored.revoke_token(session, issued, at=long_ago)  # an API token revoked long ago: never purged
    purgeable = {s.token_id for s in [*expired, signed_out]}

    def remaining() -> set[int]:
        with session_scope(db_engine, readonly=True) as session:
            return {
                t
                for t in [*purgeable, recently_ended.token_id, issuer.token_id, issued]
                if stored.get_token(session, t)
            }

    # Bounded: a batch of two, then the rest.
    assert purge_ended_sessions(db_engine, at=now, limit=2) == 2
    assert len(remaining() & purgeable) == 2
    # A sign-in purges what is left of them (up to its batch), and the log says so.
    current = begin_session(db_engine, otto, config, at=now)
    assert remaining() == {recently_ended.token_id, issuer.token_id, issued}
    assert purge_ended_sessions(db_engine, at=now) == 0  # nothing more: the kept ones stay
    purged = audit_of(db_engine, "auth.sessions_purged")
    assert [e.detail["sessions"] for e in purged] == [2, 2]
    assert authenticate(db_engine, current.secret).name == "otto@trust.example"
    # A purged session's secret is simply unknown now, as a revoked one is.
    with pytest.raises(PermissionDeniedError, match="unknown or revoked"):
        authenticate(db_engine, expired[0].secret)


def test_sessions_end_and_are_revoked_on_both_databases(
    db_engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    config = load_oidc_config(
        _config(
            tmp_path / "oidc.yaml", "https://login.example", "https://rf.example", lifetime="1h", token_sign_in=True
        )
    )
    otto = Identity("https://login.example", "otto", "Otto@Trust.example", "Otto", ("rf-operators", "x"), True)
    session = begin_session(db_engine, otto, config)
    assert session.role is Role.OPERATOR
    caller = authenticate(db_engine, session.secret)
    assert caller.name == "Otto@Trust.example"
    assert caller.is_session
    assert caller.role is Role.OPERATOR
    cache = TokenCache(db_engine)
    assert cache.authenticate(session.secret) == caller
    assert cache.cached(session.secret) == caller

    # Begun two hours ago with a lifetime of one: ended, in the database and in a cache that holds it.
    old = begin_session(db_engine, otto, config, at=utc_now() - timedelta(hours=2))
    with pytest.raises(PermissionDeniedError, match="the session has ended"):
        authenticate(db_engine, old.secret)
    cache = TokenCache(db_engine)
    cache.refresh()  # reads every token not revoked: the ended session is among them
    assert cache.cached(old.secret) is None
    with pytest.raises(PermissionDeniedError, match="the session has ended"):
        cache.authenticate(old.secret)

    end_session(db_engine, caller)
    with pytest.raises(PermissionDeniedError, match="unknown or revoked"):
        authenticate(db_engine, session.secret)
    [signed_out] = audit_of(db_engine, "auth.sign_out")
    assert signed_out.actor == "Otto@Trust.example"
    assert signed_out.subject == f"session:{session.token_id}"

    nina = Identity("https://login.example", "nina", NINA, "Nina", ("all-staff",), True)
    with pytest.raises(SignInError, match="none of your groups"):
        begin_session(db_engine, nina, config)
    no_claim = Identity("https://login.example", "nina", NINA, "Nina", (), False)
    with pytest.raises(SignInError, match="sent no 'groups' claim"):
        begin_session(db_engine, no_claim, config)


def test_serve_refuses_a_configuration_that_does_not_hold(tmp_path: Path) -> None:
    bad = tmp_path / "oidc.yaml"
    bad.write_text(
        "issuer: https://login.example\nclient_id: rf\nredirect_url: https://rf.example/callback\n"
        "roles:\n  rf-approvers: boss\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [RINGFENCE, "serve", "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        env=dict(os.environ, RINGFENCE_OIDC_CONFIG=str(bad)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert f"{bad}:3: redirect_url: 'https://rf.example/callback' must end in /auth/callback" in said
    assert f"{bad}:5: roles.rf-approvers: 'boss' is not allowed here; use 'viewer'" in said
    missing = subprocess.run(
        [RINGFENCE, "serve", "--oidc-config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2
    assert "absent.yaml: no such file" in " ".join(missing.stderr.split())
    good = _config(
        tmp_path / "good.yaml", "https://login.example", "https://rf.example", lifetime="8h", token_sign_in=True
    )
    short_key = subprocess.run(
        [RINGFENCE, "serve", "--oidc-config", str(good), "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        env=dict(os.environ, **{SECRET_ENV: CLIENT_SECRET, SIGN_IN_KEY_ENV: "short"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert short_key.returncode == 2, short_key.stderr
    said = " ".join(short_key.stderr.split())
    assert f"{SIGN_IN_KEY_ENV}: the sign-in key is 5 characters; give at least 16" in said
    assert "Traceback" not in short_key.stderr


def test_without_the_oidc_extra_the_server_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sys.modules['joserfc'] = None`` is how Python marks a module that cannot be imported (see test_extras)."""
    config = _config(
        tmp_path / "oidc.yaml", "https://login.example", "https://rf.example", lifetime="8h", token_sign_in=True
    )
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    monkeypatch.setitem(sys.modules, "joserfc", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'ringfence\[oidc\]'"):
        RelyingParty(load_oidc_config(config))
    program = "import sys; sys.modules['joserfc'] = None; from ringfence.cli.main import main; main()"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            program,
            "serve",
            "--oidc-config",
            str(config),
            "--database",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        env=dict(os.environ, **{SECRET_ENV: CLIENT_SECRET}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'ringfence[oidc]'" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
