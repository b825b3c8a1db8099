"""The batch page in Chromium updates itself while the batch runs (static/js/live.js): a
candidate stored and the batch's end show without a reload by the user, under the CSP."""

import pytest
from django.db import connections

from generation.models import GenerationBatch
from generation.services.batches import generation_batch_create
from generation.services.prompts import prompt_set_import
from tests import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_batch_page_follows_the_batch_until_it_ends(
    live_server, browser_page, csp_violations, models
):
    errors: list[str] = []
    _, page = browser_page
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # given a queued batch, its page open
        f.user("cur", ["curator"])
        prompt_set, _ = prompt_set_import(name="b", content="a cat\n", file_format="text")
        batch = generation_batch_create(
            kind="sticker",
            prompt_set=prompt_set,
            model_versions=[models["sticker-base"]],
            seeds=[1],
            params={},
        )
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", "cur")
        page.fill("#id_password", f.PASSWORD)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        page.goto(f"{live_server.url}/batches/{batch.pk}/")
        assert page.text_content("#batch-progress .status") == "queued"
        assert page.get_attribute("#live", "data-finished") == "0"

        # when a worker stores a candidate and the batch runs
        candidate = f.sticker(
            version=models["sticker-base"],
            on_prompt=prompt_set.prompts.get(),
            seed=1,
            batch=batch,
        )
        GenerationBatch.objects.filter(pk=batch.pk).update(status="running", done_count=1)

        # then the page shows it without being reloaded
        page.wait_for_selector(f'#live figure[data-candidate="{candidate.pk}"]')
        assert page.text_content("#batch-progress .status") == "running"
        assert page.get_attribute("#batch-progress .bar", "data-percent") == "100"

        # and once the batch ends, the page settles and stops asking
        GenerationBatch.objects.filter(pk=batch.pk).update(status="succeeded")
        page.wait_for_selector('#live[data-finished="1"]', timeout=20_000)
        assert page.text_content("#batch-progress .status") == "succeeded"
    finally:
        # Playwright's event loop held a connection of its own: close it (see test_csp.py).
        connections.close_all()
    assert (csp_violations, errors) == ([], [])
