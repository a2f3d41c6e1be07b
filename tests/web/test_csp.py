"""Every response of this origin carries a Content-Security-Policy, nosniff and a Referrer-Policy; /docs works under
its policy in a real Chromium, with no violation, and a script injected into it does not run (issue #12, item 7)."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from ringfence.api.headers import document_policy

from .conftest import CHROMIUM_ARGS, Site, Visitors

# Collected in the page before any of its own scripts run; an init script is the browser's, not the page's,
# so the policy does not stop it.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__violations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + (e.sample || ''));
});
"""


def policy_of(headers: httpx.Headers) -> dict[str, str]:
    directives = (d.strip() for d in headers["content-security-policy"].split(";"))
    return {d.split(" ", 1)[0]: ([*d.split(" ", 1), ""])[1] for d in directives if d}


def watched(page: Page) -> list[str]:
    page.add_init_script(WATCH_VIOLATIONS)
    console: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or message.type == "error":
            console.append(message.text)

    page.on("console", note)
    return console


def test_every_response_has_the_headers(site: Site) -> None:
    with httpx.Client(base_url=site.server.url, timeout=30) as client:
        client.cookies.set("ringfence_token", site.people.vera)
        for path in ("/docs", "/openapi.json", "/v1/health", "/v1/estates", "/static/ringfence.js", "/", "/nope"):
            answer = client.get(path, follow_redirects=False)
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["referrer-policy"] == "same-origin", path
            policy = policy_of(answer.headers)
            assert policy["frame-ancestors"] == "'none'", (path, policy)
            assert policy["default-src"] == "'none'", (path, policy)
            assert "'unsafe-inline'" not in answer.headers["content-security-policy"], path
            assert "'unsafe-eval'" not in answer.headers["content-security-policy"], path

        docs = client.get("/docs")
        policy = policy_of(docs.headers)
        # Swagger UI's own files, and its inline start-up script by hash: nothing else may run.
        scripts = policy["script-src"].split()
        assert scripts[0] == "'self'", scripts
        assert len(scripts) == 2, scripts
        assert scripts[1].startswith("'sha256-"), scripts
        assert docs.headers["content-security-policy"] == document_policy(docs.content)


@pytest.mark.browser
def test_docs_work_under_the_policy_with_no_violation(browser: Browser, site: Site) -> None:
    context = browser.new_context(base_url=site.server.url, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        console = watched(page)
        answer = page.goto("/docs")
        assert answer is not None
        assert "content-security-policy" in answer.headers
        operations = page.locator(".opblock-summary-path")
        operations.first.wait_for(timeout=15_000)
        assert len(set(operations.all_inner_texts())) >= 20

        # Try an operation out: Swagger UI calls the API from the page (connect-src 'self').
        health = page.locator(".opblock").filter(has=page.locator(".opblock-summary-path", has_text="/v1/health"))
        health.locator(".opblock-summary").click()
        health.get_by_role("button", name="Try it out").click()
        health.get_by_role("button", name="Execute").click()
        status = health.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for(timeout=15_000)
        assert status.inner_text().strip() == "200"
        assert '"status": "ok"' in health.locator(".live-responses-table tbody .microlight").first.inner_text()

        assert page.evaluate("window.__violations") == []
        assert console == [], console
    finally:
        context.close()


@pytest.mark.browser
def test_a_script_injected_into_docs_does_not_run(browser: Browser, site: Site) -> None:
    context = browser.new_context(base_url=site.server.url)
    try:
        page = context.new_page()
        watched(page)
        page.goto("/docs")
        page.locator(".opblock-summary-path").first.wait_for(timeout=15_000)
        # What an injection into the page would do: an inline script, and a script from another site.
        page.evaluate(
            """() => {
              const inline = document.createElement('script');
              inline.textContent = 'window.__ran = true';
              document.body.appendChild(inline);
              const foreign = document.createElement('script');
              foreign.src = 'https://cdn.example.invalid/evil.js';
              document.body.appendChild(foreign);
            }"""
        )
        page.wait_for_function("window.__violations.length >= 2", timeout=10_000)
        assert page.evaluate("window.__ran === undefined")
        violations = page.evaluate("window.__violations")
        assert any(v.startswith("script-src") and "inline" in v for v in violations), violations
        assert any("cdn.example.invalid" in v for v in violations), violations
    finally:
        context.close()


@pytest.mark.browser
def test_the_dashboard_pages_run_under_their_policy_with_no_violation(visitors: Visitors, site: Site) -> None:
    page = visitors.sign_in(site.people.olga)
    page.add_init_script(WATCH_VIOLATIONS)
    console = watched(page)
    for path in ("/", "/rollouts", "/incidents", "/audit", "/drills", f"/estates/{site.estate}/spofs"):
        answer = page.goto(path)
        assert answer is not None, path
        assert answer.status == 200, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert re.search(r"frame-ancestors 'none'", answer.headers["content-security-policy"])
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == [], path
    assert console == [], console


@pytest.mark.browser
def test_docs_on_a_named_host_ask_no_other_host(browser: Browser, chromium_executable: str, site: Site) -> None:
    """Served under a real host name (not localhost), nothing is asked of another host and nothing is blocked.

    Swagger UI's validator badge (its StandaloneLayout) would fetch validator.swagger.io with the OpenAPI URL
    on such a host; the BaseLayout /docs uses has none, and this keeps it that way."""
    port = urlsplit(site.server.url).port
    rules = "--host-resolver-rules=MAP ringfence.example.test 127.0.0.1"
    # A browser of its own (the host name mapped), from the same Playwright as the session's.
    named = browser.browser_type.launch(executable_path=chromium_executable, args=[*CHROMIUM_ARGS, rules])
    try:
        page = named.new_page(base_url=f"http://ringfence.example.test:{port}")
        console = watched(page)
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto("/docs")
        page.locator(".opblock-summary-path").first.wait_for(timeout=15_000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.__violations") == []
        assert console == [], console
        assert all(urlsplit(url).hostname == "ringfence.example.test" for url in requested), requested
    finally:
        named.close()


def test_an_inline_block_is_allowed_by_its_hash_and_nothing_else() -> None:
    html = b"<html><style>p { color: red }</style><script>start()</script><script src='/a.js'></script></html>"
    policy = document_policy(html)
    script = "'sha256-" + base64.b64encode(hashlib.sha256(b"start()").digest()).decode() + "'"
    style = "'sha256-" + base64.b64encode(hashlib.sha256(b"p { color: red }").digest()).decode() + "'"
    assert f"script-src 'self' {script};" in policy
    assert f"style-src 'self' {style};" in policy
    assert policy.count("'sha256-") == 2
    assert "unsafe" not in policy


@pytest.mark.browser
def test_the_incident_review_page_keeps_its_stylesheet_and_runs_nothing_injected(
    visitors: Visitors, site: Site
) -> None:
    """The review is a document of its own with an inline stylesheet: allowed by its hash, while a title
    written as a script stays text."""
    with httpx.Client(base_url=site.server.url, timeout=30) as client:
        declared = client.post(
            "/v1/incidents",
            json={"estate": site.estate, "fail": ["supplier:crowdstrike"], "title": "<script>window.__ran=1</script>"},
            headers={"Authorization": f"Bearer {site.people.olga}"},
        )
        assert declared.status_code == 201, declared.text
    page = visitors.sign_in(site.people.olga)
    page.add_init_script(WATCH_VIOLATIONS)
    console = watched(page)
    answer = page.goto(f"/v1/incidents/{declared.json()['id']}/review")
    assert answer is not None
    assert answer.status == 200
    assert "'sha256-" in answer.headers["content-security-policy"].split("style-src", 1)[1].split(";")[0]
    # The inline stylesheet applied: the page's width is the review's, not the browser's default.
    assert page.evaluate("getComputedStyle(document.body).maxWidth") != "none"
    assert page.evaluate("window.__ran === undefined")
    assert page.evaluate("window.__violations") == []
    assert console == [], console
