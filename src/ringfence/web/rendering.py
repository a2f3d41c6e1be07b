"""How a dashboard page is answered: rendered from its template with the security headers, a posted form
read, a button press acted on and shown. The page families' routes (``ringfence.web.routes``) share these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine

from ringfence import __version__
from ringfence.files.templating import template_environment
from ringfence.service.tokens import Caller
from ringfence.web.security import PageError, shown_as_page

REFRESH_SECONDS = 5
"""How often a rollout's live page asks for a fresh fragment."""
MAX_FORM_BYTES = 16_384

# Everything the page loads comes from this server: scripts and styles only from /static, no inline script
# (so an injected <script> would not run), no framing (clickjacking), forms post only here.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Same-origin requests carry a Referer (the CSRF check's fallback); other sites learn nothing.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_ENV = template_environment(
    package="ringfence.web",
    keep_trailing_newline=False,
    filters={"phase_words": lambda phase: str(phase).replace("_", " ")},
)


def render(
    request: Request, template: str, *, caller: Caller | None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = _ENV.get_template(template).render(
        caller=caller,
        path=request.url.path,
        version=__version__,
        refresh_seconds=REFRESH_SECONDS,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def is_fragment_request(request: Request) -> bool:
    """A request from ringfence.js (htmx's ``HX-Request`` header) wants a fragment, not a page."""
    return request.headers.get("hx-request") == "true"


@dataclass(frozen=True)
class FormFields:
    """A posted ``application/x-www-form-urlencoded`` form (the only kind the dashboard sends)."""

    values: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)


async def form_fields(request: Request) -> FormFields:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise PageError(415, "Unsupported form", f"the dashboard's forms are url-encoded, not {kind}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise PageError(413, "Form too large", f"a dashboard form is at most {MAX_FORM_BYTES:,} bytes")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise PageError(400, "Unreadable form", "the form was not UTF-8 text") from None
    # No text kept by ringfence holds a NUL (PostgreSQL cannot store one): refused here, once, for every form,
    # naming the field, rather than by the database as an error page of another kind.
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            shown = name.replace("\x00", "\\0")
            raise PageError(422, "Invalid form", f"the field '{shown}' cannot hold a NUL character; remove it")
    return FormFields(dict(pairs))


Form = Annotated[FormFields, Depends(form_fields)]


@dataclass(frozen=True)
class LivePage:
    """A page with a part that changes (a rollout's, an incident's), at ``/{section}/{id}``: ``template`` is the
    whole page, ``live`` the part ringfence.js asks for every few seconds; both are given the view model
    ``view`` builds as ``model``."""

    section: str
    template: str
    live: str
    model: str
    view: Callable[[Engine, str, Caller], object]

    def show(
        self,
        request: Request,
        caller: Caller,
        engine: Engine,
        ident: str,
        *,
        fragment: bool,
        error: str = "",
        notice: str = "",
        status: int = 200,
    ) -> HTMLResponse:
        """The page of ``ident``, or (``fragment``) its live part, with what a button press said."""
        with shown_as_page():
            page = self.view(engine, ident, caller)
        template = self.live if fragment else self.template
        context = {self.model: page, "error": error, "notice": notice}
        return render(request, template, caller=caller, section=self.section, status=status, **context)

    def pressed(
        self, request: Request, caller: Caller, engine: Engine, ident: str, press: Callable[[], str]
    ) -> Response:
        """A button pressed on the page: ``press`` acts and says what it did. A plain form is then sent back to
        the page (so reloading it presses nothing again); the live part asks for itself again with the notice.
        A refusal (not allowed, or not now) changes nothing and is shown with its reason."""
        error = notice = ""
        status = 200
        try:
            with shown_as_page():
                notice = press()
        except PageError as exc:
            error, status = exc.message, exc.status
        fragment = is_fragment_request(request)
        if not fragment and not error:
            return RedirectResponse(f"/{self.section}/{quote(ident)}", status_code=303, headers=SECURITY_HEADERS)
        return self.show(request, caller, engine, ident, fragment=fragment, error=error, notice=notice, status=status)
