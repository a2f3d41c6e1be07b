"""The browser's protections on every response of this origin: Content-Security-Policy, nosniff, Referrer-Policy.

The dashboard's cookie can write through ``/v1``, so a script that ran on this origin could act as the person
signed in. Every HTML document served here is therefore held to a Content-Security-Policy that lets no script
run but this server's own files and the inline scripts the document was served with:

* a page that sets its own policy keeps it (the dashboard's, ``ringfence.web.rendering.SECURITY_HEADERS``);
* any other HTML document (``/docs``, whose Swagger UI is started by an inline script; the incident review
  with its inline stylesheet; the page of a database outage) gets :data:`DOCUMENT_POLICY`, with the sha256 of
  each of its inline ``<script>`` and ``<style>`` blocks added to ``script-src`` and ``style-src``: exactly
  those run, byte for byte, never ``'unsafe-inline'``; anything injected into the page would not match;
* everything else (JSON, problem+json, Markdown, scripts, stylesheets) gets :data:`RESOURCE_POLICY`, which
  lets nothing run should a browser be made to open it as a document.

Every response also gets ``X-Content-Type-Options: nosniff`` (a JSON or text answer is never run as a script
or read as HTML), ``Referrer-Policy: same-origin`` (other sites learn nothing of the URLs here; this site's own
requests keep the Referer its CSRF check falls back on) and ``X-Frame-Options: DENY`` (older browsers'
``frame-ancestors 'none'``), unless the response set them itself.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCUMENT_POLICY = (
    "default-src 'none'; script-src 'self'{scripts}; style-src 'self'{styles}; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""For an HTML document without a policy of its own; ``{scripts}`` and ``{styles}``: its inline blocks' hashes."""

RESOURCE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
"""For anything that is not an HTML document: nothing it could contain runs, nothing may frame it."""

ALWAYS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}

MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""An HTML document is held until complete to hash its inline blocks; a larger one gets no inline block at all."""

_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
_INLINE_STYLE = re.compile(rb"<style[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)


def document_policy(html: bytes) -> str:
    """:data:`DOCUMENT_POLICY` allowing exactly the inline scripts and stylesheets of ``html``."""
    return DOCUMENT_POLICY.format(scripts=_hashes(_INLINE_SCRIPT, html), styles=_hashes(_INLINE_STYLE, html))


def _hashes(pattern: re.Pattern[bytes], html: bytes) -> str:
    # The hash is over the block's text exactly as served (CSP level 2), whitespace included.
    found = dict.fromkeys(
        "'sha256-" + base64.b64encode(hashlib.sha256(block).digest()).decode("ascii") + "'"
        for block in pattern.findall(html)
        if block.strip()
    )
    return "".join(" " + each for each in found)


class SecurityHeaders:
    """ASGI middleware adding the headers of the module docstring to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        body: list[bytes] = []
        size = 0

        async def with_headers(message: Message) -> None:
            nonlocal held, size
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ALWAYS.items():
                    if name not in headers:
                        headers[name] = value
                if "content-security-policy" in headers:
                    await send(message)
                elif headers.get("content-type", "").startswith("text/html"):
                    held = message  # sent with its policy once the whole document is here
                else:
                    headers["content-security-policy"] = RESOURCE_POLICY
                    await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            size += len(body[-1])
            if message.get("more_body", False) and size <= MAX_DOCUMENT_BYTES:
                return
            document = b"".join(body)
            policy = (
                document_policy(document)
                if size <= MAX_DOCUMENT_BYTES
                else DOCUMENT_POLICY.format(scripts="", styles="")
            )
            MutableHeaders(scope=held)["content-security-policy"] = policy
            start, held = held, None
            body.clear()
            await send(start)
            await send({"type": "http.response.body", "body": document, "more_body": message.get("more_body", False)})

        await self.app(scope, receive, with_headers)


__all__ = ["DOCUMENT_POLICY", "RESOURCE_POLICY", "SecurityHeaders", "document_policy"]
