"""axe-core (from the npm registry, `make install` puts it under node_modules) on the main pages
in Debian's Chromium: no violation of impact serious or critical, on pages that show real
objects (a running campaign with judgments and results, a batch, a rule, a published version
and its export, a finished job and the model version it made)."""

from pathlib import Path

import pytest
from django.conf import settings

from annotation.models import Judgment
from annotation.quality.services.results import campaign_results_compute
from generation.models import GenerationBatch
from tests import factories as f
from tests.browser import screen
from training_bridge.exports.create import dataset_export_create
from training_bridge.exports.run import dataset_export_run
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.output import training_job_register_output
from training_bridge.jobs.progress import training_job_progress_report

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
SEVERE = ("serious", "critical")


def _severe_violations(page) -> list[str]:
    """axe's serious and critical violations on the page as it stands: rule, impact, and the
    elements it names, one line each."""
    # Only the violations: collecting every rule's passes too doubles axe's time on a page.
    violations = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['id']} ({v['impact']}): {[node['target'] for node in v['nodes']]}"
        for v in violations
        if v["impact"] in SEVERE
    ]


@pytest.fixture
def objects(models, settings, tmp_path):
    """One of each object the main pages show, and the admin who sees them all."""
    settings.TRAINING_DIR = tmp_path / "training"
    admin = f.user("ada", ["admin"])
    campaign = f.running_campaign(raters=[admin], n_items=3, preset="alignment", name="Align")
    raters = f.raters(2, campaign=campaign)
    for item in campaign.items.order_by("pk")[:2]:
        for rater in raters:
            f.judge(item, rater, {"aligned": True})
    campaign_results_compute(campaign=campaign, methods=["majority"])
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1], total=2, status="succeeded")
    for _ in range(2):
        f.sticker(version=models["sticker-base"], batch=batch)
    GenerationBatch.objects.filter(pk=batch.pk).update(done_count=2)
    rule = f.aligned_rule(campaign, admin)
    version = f.dataset_version(models, purpose="alignment")
    export = dataset_export_create(version=version, export_format="imagefolder")
    dataset_export_run(export_id=export.pk)
    job = training_job_create(
        recipe="finetune",
        base_model_version=models["sticker-base"],
        datasets={"train": version},
        params={"max_train_steps": 4, "train_batch_size": 2},
        evaluate=False,
    )
    training_job_progress_report(
        job=job, events=f.progress_events(job, {"train": [1.0, 0.8, 0.7, 0.6]})
    )
    f.fake_finished_output(job)
    model = training_job_register_output(job=job)
    return {
        "campaign": campaign,
        "batch": batch,
        "rule": rule,
        "version": version,
        "job": job,
        "model": model,
        "rater": raters[0],
    }


def test_the_main_pages_have_no_serious_or_critical_violation(live_server, page, objects):
    # The strict CSP refuses a <script> tag added to the page (add_script_tag), but not a script
    # the browser itself runs in each new document: the pages keep their policy as served.
    page.context.add_init_script(path=AXE)
    o = objects
    paths = [
        "/",
        f"/campaigns/{o['campaign'].pk}/",
        "/campaigns/",
        "/batches/",
        f"/batches/{o['batch'].pk}/",
        "/candidates/",
        "/datasets/rules/new/",
        f"/datasets/rules/{o['rule'].pk}/edit/",
        f"/datasets/versions/{o['version'].pk}/",
        "/datasets/exports/",
        "/training/jobs/",
        "/training/jobs/new/",
        f"/training/jobs/{o['job'].pk}/",
        "/models/",
        f"/training/models/{o['model'].pk}/",
        "/quality/",
        f"/quality/campaigns/{o['campaign'].pk}/",
        "/raters/",
        f"/raters/{o['rater'].pk}/",
        f"/rate/{o['campaign'].pk}/",
    ]
    page.goto(f"{live_server.url}/login/")
    found = {"/login/": _severe_violations(page)}
    screen.log_in(live_server, page, "ada", "/")
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        if path.startswith("/rate/"):
            screen.item(page)
        found[path] = _severe_violations(page)
    report = [f"{path}: {line}" for path, lines in found.items() for line in lines]
    assert report == [], "\n".join(report)


def _read_in_order(snapshot: str) -> list[str]:
    """The controls, headings and regions of an ARIA snapshot, in the order a screen reader
    meets them (text lines, which hold the item's own prompt, left out)."""
    roles = ("heading", "region", "img", "group", "button", "textbox")
    lines = [line.strip().removeprefix("- ").rstrip(":") for line in snapshot.splitlines()]
    return [line for line in lines if line.split(" ")[0] in roles]


def test_the_rating_screen_reads_in_order_and_keeps_the_focus_on_a_chosen_answer(live_server, page):
    # given a rater on the rating screen of an alignment campaign
    r = f.user("kim", ["rater"])
    campaign = f.running_campaign(raters=[r], n_items=2, preset="alignment", name="Align")
    screen.log_in(live_server, page, "kim", f"/rate/{campaign.pk}/")
    item = screen.item(page)
    # then a screen reader meets the campaign, the item, each question with its options by
    # name, and the buttons, in that order
    assert _read_in_order(page.locator("main").aria_snapshot()) == [
        'heading "Align" [level=1]',
        'button "Guidelines G"',
        'button "Background B"',
        'button "Keys ?"',
        'region "Item to judge"',
        'img "candidate"',
        'group "Does the sticker show what the prompt asks?"',
        'button "y Pass"',
        'button "n Fail"',
        'group "What is missing or wrong? (optional)"',
        'button "1 Subject"',
        'button "2 Action"',
        'button "3 Attribute"',
        'button "4 Count"',
        'button "5 Other"',
        'textbox "Note"',
        'button "Submit Enter" [disabled]',
        'button "Skip S"',
        'button "Undo U"',
    ]
    # when the reader activates "Fail", then the focus stays on it, pressed, not at the start
    page.get_by_role("button", name="n Fail").click()
    focused = "() => [document.activeElement.textContent, document.activeElement.ariaPressed]"
    assert page.evaluate(focused) == ["n Fail", "true"]
    # and a key answers the next question without moving it; Enter submits
    page.keyboard.press("1")
    assert page.evaluate(focused) == ["n Fail", "true"]
    page.keyboard.press("Enter")
    screen.wait_item_change(page, item)
    screen.wait_sent(page)
    [judgment] = Judgment.objects.filter(campaign=campaign)
    assert (judgment.item_id, judgment.answers) == (
        item,
        {"aligned": False, "missing": ["subject"]},
    )
    # and the next item starts from the page, not from the last item's answer
    assert page.evaluate("() => document.activeElement.tagName") == "BODY"
