"""The API explorer at /docs works on a network that reaches nothing but this server: Swagger UI's script and
stylesheet come from the server itself (the fastapi-offline package ships them), never from a CDN."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route

from .conftest import Site

# What each kind of asset the page names must be served as, so that a browser (with nosniff) uses it.
CONTENT_TYPES = {
    ".css": "text/css",
    ".js": ("text/javascript", "application/javascript"),
    ".png": "image/png",
    ".json": "application/json",
}


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads: src= and href= attributes, and the OpenAPI document Swagger UI fetches."""
    attributes = re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    documents = re.findall(r"""\burl:\s*["']([^"']+)["']""", html)
    return attributes + documents


def test_docs_reference_only_this_server(site: Site) -> None:
    with httpx.Client(base_url=site.server.url) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = referenced_urls(page.text)
        assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
        assert any(u.endswith("swagger-ui.css") for u in urls), urls
        assert "/openapi.json" in urls
        # Nothing absolute at all: no scheme, no other host ("//cdn…" would be one too).
        assert "http://" not in page.text, page.text
        assert "https://" not in page.text, page.text
        for url in urls:
            assert url.startswith("/"), f"/docs loads {url} from elsewhere"
            assert not url.startswith("//"), f"/docs loads {url} from elsewhere"
            answer = client.get(url)
            assert answer.status_code == 200, f"{url} answered {answer.status_code}"
            suffix = re.search(r"\.[a-z]+$", urlsplit(url).path)
            assert suffix is not None, url
            expected = CONTENT_TYPES[suffix.group()]
            assert answer.headers["content-type"].startswith(expected), (url, answer.headers["content-type"])
            assert len(answer.content) > 100, f"{url} is nearly empty"
        bundle = client.get(next(u for u in urls if u.endswith("swagger-ui-bundle.js")))
        assert "SwaggerUIBundle" in bundle.text


@pytest.mark.browser
def test_docs_render_the_operations_with_other_hosts_blocked(browser: Browser, site: Site) -> None:
    ours = urlsplit(site.server.url).netloc
    blocked: list[str] = []

    def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context = browser.new_context(base_url=site.server.url, viewport={"width": 1280, "height": 900})
    try:
        context.route("**/*", only_this_server)
        page = context.new_page()
        page.goto("/docs")
        operations = page.locator(".opblock-summary-path")
        operations.first.wait_for(timeout=15_000)
        paths = set(operations.all_inner_texts())
        assert any("/v1/rollouts/{rollout_id}/approve" in p.replace("\u200b", "") for p in paths), paths
        assert len(paths) >= 20, paths
        assert page.locator(".swagger-ui .info .title").inner_text().startswith("ringfence")
        assert not blocked, f"/docs tried to load {blocked}"
    finally:
        context.close()
