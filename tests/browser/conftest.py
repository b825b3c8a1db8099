"""Debian's Chromium under Playwright, and what its console says about the CSP."""

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser_page(monkeypatch):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make system-deps)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield context, page
        context.close()
        browser.close()


@pytest.fixture
def csp_violations(browser_page) -> list[str]:
    """The console messages in which Chromium refused something the Content-Security-Policy
    forbids (an inline script or style, an image from another origin), as the page runs."""
    context, page = browser_page
    refused: list[str] = []
    # Chromium logs some refusals itself; the event reports each one (a style attribute too).
    context.add_init_script(
        'document.addEventListener("securitypolicyviolation", (e) => console.error('
        "`Content Security Policy: ${e.effectiveDirective} refused ${e.blockedURI}`));"
    )
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return refused
