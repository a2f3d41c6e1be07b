"""The relying party: signing a person in at the trust's OpenID Connect provider (Entra ID, or any other).

The authorization code flow with PKCE, as OpenID Connect Core 1.0 and RFC 9700 (OAuth security best
current practice) ask of a web application:

1. :meth:`RelyingParty.begin` makes a fresh ``state`` (the browser's return must be to the sign-in this
   browser started: login CSRF), ``nonce`` (the ID token must be minted for this sign-in: replay) and PKCE
   verifier (S256: a code stolen on its way back is useless without it), and the provider URL to send the
   browser to. The three secrets travel in a :class:`PendingSignIn` the browser keeps in a cookie of its own
   (``HttpOnly``, ``SameSite=Lax`` so it comes back on the provider's redirect, ten minutes, path
   ``/auth/callback`` only); nothing is kept in the server, so any worker can finish what another began.
   The cookie is sealed: HMAC-SHA256 under the server's sign-in key (:data:`SIGN_IN_KEY_ENV`) over the
   secrets, where to go after, and when the sign-in began. Without the seal its contents would be the
   browser's word: a state and verifier made up by whoever can write a cookie for the dashboard's host (a
   sibling subdomain, a proxy on plain http), any page to go to after, and a sign-in kept pending for as
   long as the cookie is (its ``Max-Age`` is the browser's to honour). Sealed, the callback takes only what
   this server issued, and only for :data:`PENDING_SECONDS` by the sealed time; anything else is refused
   with a page saying which, before the code is used.
2. :meth:`RelyingParty.finish` takes the provider's answer: the ``state`` must equal the cookie's (compared in
   constant time), an ``iss`` parameter, when sent, must be the issuer (RFC 9207: mix-up), the code is
   redeemed at the token endpoint with the verifier and the client's credentials, and the ID token is
   verified: its signature against the provider's JWKS (asymmetric algorithms only, never ``none`` or a
   shared-secret HMAC; an unknown key id fetches the JWKS once more, as after the provider rotates keys), its
   ``iss``, ``aud`` (and ``azp`` when there are several audiences), ``exp``, ``iat`` and ``nonce``.

The provider's discovery document (``{issuer}/.well-known/openid-configuration``) names the endpoints; its
``issuer`` must be the configured one exactly. It and the JWKS are fetched when first needed and kept for an
hour. The ID token is the only thing trusted: the access token is not used.

Refusals are :class:`SignInError` (a :class:`PermissionDeniedError`: the dashboard shows the sentence on a
page); a provider that cannot be reached or answers nonsense is :class:`ProviderError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from ringfence.core.clock import utc_now
from ringfence.core.errors import PermissionDeniedError, RingfenceError
from ringfence.files.extras import require_extra
from ringfence.files.oidc_config import OidcConfig

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

METADATA_SECONDS = 3600.0
"""How long the discovery document and the JWKS are kept before they are fetched again."""

PENDING_SECONDS = 600
"""How long a browser may take at the provider: the pending sign-in cookie lasts this long."""

SIGN_IN_KEY_ENV = "RINGFENCE_SIGN_IN_KEY"
"""The secret pending sign-ins are sealed with. ``ringfence serve`` makes one for its workers when it is not
set; set it yourself (the same on each) when several servers sit behind one address."""
SIGN_IN_KEY_SHORTEST = 16
"""Characters a configured sign-in key must have at least (``ringfence serve`` refuses a shorter one)."""

CLOCK_SKEW_SECONDS = 60
"""Leeway on ``exp`` and ``iat``: the provider's clock and ours may differ by this much."""

SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
"""Asymmetric algorithms only: ``none`` proves nothing, and an HMAC keyed by the client secret would let
anyone holding the secret (every replica of this server) mint ID tokens."""


class SignInError(PermissionDeniedError):
    """The sign-in is refused: the sentence says why (shown to the person on the sign-in page)."""


class ProviderError(RingfenceError):
    """The identity provider could not be reached, or answered something that is not OpenID Connect."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What ringfence uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    signing_algorithms: frozenset[str]


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in begun and not yet finished: what the browser keeps, sealed, while it is at the provider."""

    state: str
    nonce: str
    verifier: str
    next_path: str
    begun_at: int = 0
    """When the sign-in began (seconds since the epoch): sealed with the rest, so its age is ours to judge."""

    def seal(self, key: bytes) -> str:
        """The cookie's value: URL-safe base64 of a JSON object, a dot, and its HMAC-SHA256 under ``key``
        (no character a cookie must quote)."""
        document = {
            "state": self.state,
            "nonce": self.nonce,
            "verifier": self.verifier,
            "next": self.next_path,
            "at": self.begun_at,
        }
        payload = _b64(json.dumps(document, separators=(",", ":")).encode())
        return f"{payload}.{_b64(_mac(key, payload))}"

    @classmethod
    def unseal(cls, text: str, key: bytes, *, now: float) -> PendingSignIn | None:
        """The pending sign-in a cookie holds: None for no cookie; SignInError for one whose seal does not
        hold under ``key`` (changed, forged, or sealed by another server) or that is past its time."""
        if not text:
            return None
        payload, _, mac = text.partition(".")
        try:
            sent_mac = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        except ValueError:
            sent_mac = b""
        # Constant time: a forger learns nothing from how quickly a guess is refused.
        if not hmac.compare_digest(sent_mac, _mac(key, payload)):
            raise SignInError(TAMPERED)
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            found = cls(
                str(data["state"]), str(data["nonce"]), str(data["verifier"]), str(data["next"]), int(data["at"])
            )
        except (ValueError, TypeError, KeyError):
            raise SignInError(TAMPERED) from None  # sealed by us, so never in practice: an old format
        if not (found.state and found.nonce and found.verifier):
            raise SignInError(TAMPERED)
        if not -CLOCK_SKEW_SECONDS <= now - found.begun_at <= PENDING_SECONDS:
            raise SignInError(EXPIRED)
        return found


TAMPERED = (
    "this sign-in's cookie was changed after ringfence set it, or was set by another server, so its state and "
    "PKCE verifier cannot be trusted; nothing was signed in. Start again"
)
EXPIRED = f"this sign-in took longer than {PENDING_SECONDS // 60} minutes at the identity provider; start again"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _mac(key: bytes, payload: str) -> bytes:
    # The purpose is part of what is signed: the key could never vouch for another kind of value by mistake.
    return hmac.new(key, b"ringfence.pending-sign-in." + payload.encode("ascii", "replace"), hashlib.sha256).digest()


def sign_in_key(environ: Mapping[str, str] = os.environ) -> bytes:
    """The key pending sign-ins are sealed with: ``RINGFENCE_SIGN_IN_KEY`` when set (every server that may
    finish another's sign-in must share it), else a random one for this process."""
    configured = environ.get(SIGN_IN_KEY_ENV, "")
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    return secrets.token_bytes(32)


@dataclass(frozen=True)
class Identity:
    """The person an ID token vouches for: who they are at the provider, and their groups there."""

    issuer: str
    subject: str
    person: str
    """The configured ``person_claim`` (an email address or user principal name): how the audit names them."""
    display_name: str
    groups: tuple[str, ...]
    """The values of the claim roles are mapped from (``OidcConfig.role_claim``): groups, or app roles."""
    groups_sent: bool
    """Whether the ID token carried that claim at all (Entra ID leaves the groups out past 200 groups)."""
    overage: bool = False
    """Whether the provider named the claim in ``_claim_names`` instead of sending it (OpenID Connect Core
    §5.6.2 distributed claims): Entra ID's groups overage, for a person in more than 200 groups."""


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(SHA-256(verifier)), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class RelyingParty:
    """ringfence as a client of one OpenID Connect provider (thread-safe; one per server worker)."""

    def __init__(self, config: OidcConfig, *, timeout: float = 10.0, key: bytes | None = None) -> None:
        require_extra("oidc", "Sign-in at an OpenID Connect provider (--oidc-config)")
        self.config = config
        self.timeout = timeout
        self._key = key if key is not None else sign_in_key()
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    # ------------------------------------------------------------------------------ the provider's documents

    def metadata(self) -> ProviderMetadata:
        """The provider's discovery document (kept for :data:`METADATA_SECONDS`)."""
        now = utc_now().timestamp()
        with self._lock:
            if self._metadata is not None and now - self._metadata_at < METADATA_SECONDS:
                return self._metadata
        url = f"{self.config.issuer}/.well-known/openid-configuration"
        document = self._get_json(url, "discovery document")
        metadata = _metadata_of(document, self.config.issuer, url)
        with self._lock:
            self._metadata, self._metadata_at = metadata, now
        return metadata

    def _key_set(self, *, fresh: bool = False) -> KeySet:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        now = utc_now().timestamp()
        with self._lock:
            if not fresh and self._keys is not None and now - self._keys_at < METADATA_SECONDS:
                return self._keys
        url = self.metadata().jwks_uri
        document = self._get_json(url, "JWKS")
        try:
            keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise ProviderError(f"the provider's JWKS at {url} holds no usable keys: {exc}") from None
        with self._lock:
            self._keys, self._keys_at = keys, now
        return keys

    def _get_json(self, url: str, what: str) -> Mapping[str, Any]:
        try:
            response = httpx.get(url, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ProviderError(f"the identity provider's {what} at {url} could not be read: {exc}") from None
        if response.status_code != 200:
            raise ProviderError(f"the identity provider's {what} at {url} answered {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            raise ProviderError(f"the identity provider's {what} at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise ProviderError(f"the identity provider's {what} at {url} is not a JSON object")
        return document

    # ------------------------------------------------------------------------------ the flow

    def begin(self, next_path: str) -> tuple[str, PendingSignIn]:
        """The provider URL to send the browser to, and the pending sign-in it must bring back."""
        metadata = self.metadata()
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(48),  # 64 characters of the unreserved set: RFC 7636 asks 43–128
            next_path=next_path,
            begun_at=int(utc_now().timestamp()),
        )
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_url,
            "scope": " ".join(self.config.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{urlencode(query)}", pending

    def seal(self, pending: PendingSignIn) -> str:
        """The pending sign-in cookie's value (see :meth:`PendingSignIn.seal`)."""
        return pending.seal(self._key)

    def unseal(self, cookie: str) -> PendingSignIn | None:
        """The pending sign-in in the cookie (None: no cookie); SignInError when it was changed or is too old."""
        return PendingSignIn.unseal(cookie, self._key, now=utc_now().timestamp())

    def finish(self, pending: PendingSignIn | None, answer: Mapping[str, str]) -> Identity:
        """Check the provider's answer (the callback's query) against ``pending``; the verified identity."""
        if "error" in answer:
            said = answer.get("error_description") or answer["error"]
            raise SignInError(f"the identity provider did not sign you in: {said}")
        if pending is None:
            raise SignInError(
                "this sign-in was not started from this browser, or took longer than 10 minutes "
                "(its state and PKCE verifier are gone); start again"
            )
        returned = answer.get("state", "")
        if not hmac.compare_digest(returned.encode(), pending.state.encode()):
            raise SignInError("the state the identity provider sent back is not this sign-in's; start again")
        issuer = answer.get("iss")
        if issuer is not None and issuer != self.config.issuer:
            raise SignInError(f"the answer came from {issuer}, not from {self.config.issuer}; start again")
        code = answer.get("code", "")
        if not code:
            raise SignInError("the identity provider sent back no authorization code; start again")
        id_token = self.redeem(code, pending.verifier)
        return self.verify_id_token(id_token, pending.nonce)

    def redeem(self, code: str, verifier: str) -> str:
        """Exchange ``code`` (with the PKCE ``verifier``) for an ID token at the token endpoint."""
        metadata = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_url,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.config.secret()
        if secret is None:
            form["client_id"] = self.config.client_id  # a public client: PKCE is its only proof
        else:
            # client_secret_basic, each part form-encoded first as RFC 6749 §2.3.1 says.
            pair = f"{quote(self.config.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = httpx.post(metadata.token_endpoint, data=form, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise ProviderError(f"the token endpoint {metadata.token_endpoint} could not be reached: {exc}") from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderError(f"the token endpoint answered {response.status_code} with no JSON object")
        if response.status_code != 200:
            said = document.get("error_description") or document.get("error") or f"status {response.status_code}"
            raise SignInError(f"the identity provider would not redeem the sign-in: {said}; start again")
        id_token = document.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInError("the identity provider sent no ID token (is 'openid' among the scopes?)")
        return id_token

    def verify_id_token(self, id_token: str, nonce: str) -> Identity:
        """The identity in ``id_token`` once its signature, issuer, audience, times and nonce hold."""
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError, MissingKeyError
        from joserfc.jws import extract_compact

        allowed = sorted(self.metadata().signing_algorithms & SIGNING_ALGORITHMS)
        try:
            header = extract_compact(id_token.encode()).protected
        except (JoseError, ValueError):
            raise SignInError("the ID token is not a signed JWT") from None
        if header.get("alg") not in allowed:
            raise SignInError(f"the ID token is signed with {header.get('alg')!r}; ringfence accepts {allowed}")
        keys = self._key_set()
        kid = header.get("kid")
        if kid is not None and not _has_kid(keys, str(kid)):
            keys = self._key_set(fresh=True)  # the provider may have rotated its keys since the last look
        try:
            token = jwt.decode(id_token, keys, algorithms=allowed)
        except (InvalidKeyIdError, MissingKeyError):
            raise SignInError("the ID token is signed with a key the provider does not publish") from None
        except JoseError as exc:
            raise SignInError(f"the ID token's signature does not hold ({exc.error})") from None
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            now=int(utc_now().timestamp()),
            leeway=CLOCK_SKEW_SECONDS,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": self.config.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInError(f"the ID token does not hold: {exc.description or exc.error}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise SignInError("the ID token names several audiences and was not issued to ringfence (azp)")
        sent_nonce = claims.get("nonce")
        if not isinstance(sent_nonce, str) or not hmac.compare_digest(sent_nonce.encode(), nonce.encode()):
            raise SignInError("the ID token was not minted for this sign-in (its nonce differs); start again")
        return _identity(claims, self.config)

    def sign_out_url(self) -> str | None:
        """Where to send the browser to sign out at the provider too (RP-initiated logout), or None."""
        if not self.config.provider_sign_out:
            return None
        try:
            endpoint = self.metadata().end_session_endpoint
        except ProviderError:
            return None  # signed out here already; the provider's own session ends when it ends
        if endpoint is None:
            return None
        query = {"client_id": self.config.client_id, "post_logout_redirect_uri": self.config.after_logout_url}
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{urlencode(query)}"


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _metadata_of(document: Mapping[str, Any], issuer: str, url: str) -> ProviderMetadata:
    if document.get("issuer") != issuer:
        # OpenID Connect Discovery §4.3: a document naming another issuer must not be used (mix-up, spoofing).
        raise ProviderError(
            f"the discovery document at {url} names the issuer {document.get('issuer')!r}, not {issuer!r} "
            "(check `issuer` in the sign-in configuration)"
        )
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not document.get(k)]
    if missing:
        raise ProviderError(f"the discovery document at {url} has no {', '.join(missing)}")
    methods = document.get("code_challenge_methods_supported")
    if isinstance(methods, list) and "S256" not in methods:
        raise ProviderError(f"the provider at {issuer} does not support PKCE with S256, which ringfence needs")
    algorithms = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    end_session = document.get("end_session_endpoint")
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=str(document["authorization_endpoint"]),
        token_endpoint=str(document["token_endpoint"]),
        jwks_uri=str(document["jwks_uri"]),
        end_session_endpoint=str(end_session) if end_session else None,
        signing_algorithms=frozenset(str(a) for a in algorithms),
    )


def _identity(claims: Mapping[str, Any], config: OidcConfig) -> Identity:
    subject = str(claims["sub"])
    person = claims.get(config.person_claim)
    if not isinstance(person, str) or not person.strip():
        raise SignInError(
            f"the ID token has no '{config.person_claim}' claim to name you by (person_claim in the sign-in "
            "configuration); ask your administrator"
        )
    name = claims.get("name")
    claim = config.role_claim
    groups = claims.get(claim)
    sent = groups is not None
    # Entra ID's groups overage: past 200 groups the token names where to fetch them (Microsoft Graph) instead.
    # ringfence does not follow it (that needs a Graph permission over the whole directory): the person is
    # refused with the fix named (see sessions._no_role).
    distributed = claims.get("_claim_names")
    overage = not sent and isinstance(distributed, dict) and claim in distributed
    if isinstance(groups, str):
        groups = [groups]
    if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
        raise SignInError(f"the ID token's '{claim}' claim is not a list of names")
    person = _printable(person)
    shown = _printable(name) if isinstance(name, str) and _printable(name) else person
    if not person:
        raise SignInError(f"the ID token's '{config.person_claim}' claim is empty; ask your administrator")
    return Identity(
        issuer=config.issuer,
        subject=subject,
        person=person,
        display_name=shown,
        groups=tuple(groups or ()),
        groups_sent=sent,
        overage=overage,
    )


def _printable(text: str) -> str:
    """``text`` without control characters (a NUL is refused by PostgreSQL), stripped, at most 200 characters
    (the width of a token's name): a name from the provider is shown on pages and kept in the audit log."""
    return "".join(c for c in text if c.isprintable()).strip()[:200]


__all__ = [
    "PENDING_SECONDS",
    "SIGN_IN_KEY_ENV",
    "SIGN_IN_KEY_SHORTEST",
    "Identity",
    "PendingSignIn",
    "ProviderError",
    "ProviderMetadata",
    "RelyingParty",
    "SignInError",
    "pkce_challenge",
    "sign_in_key",
]
