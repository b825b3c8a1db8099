"""Debian's Chromium under Playwright, and what its console says about the CSP."""

from pathlib import Path

import pytest
from django.db import connections

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


@pytest.fixture
def page(live_server, browser_page, csp_violations):
    """The browser's page; afterwards the console reported no Content-Security-Policy refusal
    and the page threw no error."""
    _, page = browser_page
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    # The test's queries ran under Playwright's event loop, on a connection of that context
    # only: close it, or the test database cannot be dropped at the end of the session.
    connections.close_all()
    assert (csp_violations, errors) == ([], [])


@pytest.fixture
def tasks_in_the_server():
    """Celery runs each task where it is queued, in the live server's thread, as the request's
    transaction commits: a journey's batches, results and exports are done when the page that
    queued them answers, and a task's error fails the request. A real worker takes 35 s to
    start and load the models on the 2-core machine; test_animation_batch.py and tests/e2e run
    the tasks in one."""
    from stickerloop.celery import app

    names = ("task_always_eager", "task_eager_propagates")
    before = {name: app.conf.get(name) for name in names}
    app.conf.update(dict.fromkeys(names, True))
    yield
    app.conf.update(before)
