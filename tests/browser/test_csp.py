"""A curator's pages in Chromium under the Content-Security-Policy: the scripts that left the
templates for static files still run (progress polling, table sorting, the delete confirmation,
the rule form's live funnel, the export list's live rows), the API docs and the admin work, and
the console reports no refusal."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from annotation.quality.services.membership import rater_pause
from annotation.quality.services.results import campaign_results_compute
from generation.models import GenerationBatch
from stickerloop import events
from tests import factories as f
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion
from webhooks.models import Endpoint
from webhooks.services.endpoints import endpoint_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A function, not a string: the CSP allows no eval.
TEXT_IS = "([sel, text]) => document.querySelector(sel)?.textContent === text"


def test_curator_pages_run_under_the_policy(live_server, browser_page, csp_violations, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    errors: list[str] = []
    _, page = browser_page
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        _curator_pages(live_server, page)
    finally:
        # The test's queries ran under Playwright's event loop, on a connection of that context
        # only: close it, or the test database cannot be dropped at the end of the session.
        connections.close_all()
    assert (csp_violations, errors) == ([], [])


def _log_in_as_curator(live_server, page, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f.PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    # Staff land on what needs their attention (stickerloop.home).
    assert page.url == f"{live_server.url}/"
    assert page.text_content("h1") == "What needs my attention"


def _curator_pages(live_server, page):
    f.user("cora", ["curator"])
    _log_in_as_curator(live_server, page, "cora")

    # The batch list polls the progress API (static/js/batch_list.js) and moves the bar.
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1], total=4, status="running")
    GenerationBatch.objects.filter(pk=batch.pk).update(done_count=1)
    page.goto(f"{live_server.url}/batches/")
    bar = f'tr[data-batch="{batch.pk}"] [data-field=bar]'
    assert page.get_attribute(bar, "data-percent") == "25"
    assert page.eval_on_selector(bar, "el => el.getBoundingClientRect().width") == 40.0
    GenerationBatch.objects.filter(pk=batch.pk).update(done_count=3)
    page.wait_for_function("(bar) => document.querySelector(bar).dataset.percent === '75'", arg=bar)
    assert page.text_content(f'tr[data-batch="{batch.pk}"] [data-field=counts]') == "3 / 4"

    # The quality page sorts its rater table (static/js/sortable.js).
    campaign = f.campaign(questions=f.BINARY_SCHEMA, overlap=3)
    a, b = f.items(campaign, 2)
    raters = f.raters(3, campaign=campaign)
    for rater, first, second in zip(raters, [True, True, False], [False, True, True], strict=True):
        f.judge(a, rater, {"ok": first})
        f.judge(b, rater, {"ok": second})
    f.judge(f.items(campaign, 1)[0], raters[1], {"ok": True})
    campaign_results_compute(campaign=campaign, methods=["majority"])
    rater_pause(campaign=campaign, rater_id=raters[2].pk, reason="Too fast.")
    page.goto(f"{live_server.url}/quality/campaigns/{campaign.pk}/")
    page.click("#raters th:has-text('Judgments')")
    page.click("#raters th:has-text('Judgments')")
    assert page.get_attribute("#raters th:has-text('Judgments')", "data-dir") == "desc"
    first_row = page.get_attribute("#raters tbody tr:first-child", "data-rater")
    assert first_row == str(raters[1].pk)

    # The rule form's funnel follows its conditions (static/js/rule_preview.js), saving nothing.
    aligned = f.campaign(questions=f.ALIGNMENT_SCHEMA, overlap=1, name="align")
    for item, yes in zip(f.items(aligned, 3), [True, True, False], strict=True):
        f.judge(item, raters[0], {"aligned": yes, "quality": 4})
    page.goto(f"{live_server.url}/datasets/rules/new/")
    page.select_option("#id_campaigns", str(aligned.pk))
    page.select_option("#id_conditions-0-question", "aligned")
    page.fill("#id_conditions-0-labels", "true")
    kept = "#live-preview tr[data-stage=condition_0] [data-field=kept]"
    page.wait_for_function(TEXT_IS, arg=[kept, "2"])
    page.fill("#id_conditions-0-labels", "false")
    page.wait_for_function(TEXT_IS, arg=[kept, "1"])
    assert DatasetRule.objects.count() == 0

    # The export list swaps in its live rows (static/js/live.js) as an export runs.
    rule = DatasetRule.objects.create(name="old", purpose="alignment", kind="image")
    version = DatasetVersion.objects.create(
        rule=rule,
        number=1,
        purpose="alignment",
        kind="image",
        rule_snapshot={},
        manifest_sha256="0" * 64,
        entry_count=4,
        train_count=4,
        validation_count=0,
    )
    export = DatasetExport.objects.create(
        version=version, format="parquet", status="running", total=4, done=1
    )
    page.goto(f"{live_server.url}/datasets/exports/")
    row = f'#live tr[data-export="{export.pk}"]'
    assert page.text_content(f"{row} [data-field=counts]") == "1 / 4"
    DatasetExport.objects.filter(pk=export.pk).update(done=3)
    page.wait_for_function(TEXT_IS, arg=[f"{row} [data-field=counts]", "3 / 4"])
    assert page.get_attribute(f"{row} [data-field=bar]", "data-percent") == "75"

    # The webhook page asks before deleting (static/js/confirm.js): no, then yes.
    endpoint, _ = endpoint_create(url="http://127.0.0.1:9/hook", events=[events.BATCH_FINISHED])
    page.goto(f"{live_server.url}/webhooks/{endpoint.pk}/")
    questions: list[str] = []

    def answer(dialog, accept: bool):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda dialog: answer(dialog, False))
    page.click("button:has-text('Delete')")
    assert Endpoint.objects.filter(pk=endpoint.pk).exists()
    page.once("dialog", lambda dialog: answer(dialog, True))
    with page.expect_navigation():
        page.click("button:has-text('Delete')")
    assert not Endpoint.objects.filter(pk=endpoint.pk).exists()
    assert questions == ["Delete this endpoint and its delivery log?"] * 2

    # The API docs (Swagger UI, its script served by the docs view) draw the schema.
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert page.text_content(".swagger-ui .info .title").startswith("Stickerloop API")

    # The admin's pages, for a superuser.
    get_user_model().objects.create_superuser(username="root", password=f.PASSWORD)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", f.PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{live_server.url}/admin/auth/user/add/")
    page.wait_for_selector("#id_password1")
    page.goto(f"{live_server.url}/admin/auth/user/")
    assert page.locator("#result_list tbody tr").count() == 5
