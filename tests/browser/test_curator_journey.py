"""The curator's journey in Debian's Chromium, keyboard and mouse only, no API call from the
test: import a prompt set, generate stickers, animate one, make a campaign of two presets from the
batch, compute its results, write a dataset rule, build and publish a version, export it and
download the export. The tasks (the tiny models, the aggregation, the export) run in the live
server as they are queued (tasks_in_the_server).

The raters' judgments are the one thing the curator does not make: they are stored with the
factories between the campaign's start and its results (the rater's journey is
test_rater_invitation.py and test_rating_orientation.py)."""

import json
import tarfile

import pytest

from annotation.models import Campaign
from generation.models import Candidate, GenerationBatch
from tests import factories as f
from tests.browser import screen
from training_bridge.models import DatasetExport, DatasetVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_curator_goes_from_prompts_to_a_downloaded_export(
    live_server, page, models, tasks_in_the_server, tmp_path
):
    f.user("cora", ["curator"])
    raters = [f.user(name, ["rater"]) for name in ("rae", "rex")]
    screen.log_in(live_server, page, "cora", "/")

    # A prompt set, imported from a file.
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    page.click("nav >> text=Prompts")
    page.fill("input[name=name]", "pets")
    page.set_input_files("input[name=file]", str(tmp_path / "prompts.txt"))
    with page.expect_navigation():
        page.click("button:has-text('Import')")
    assert "Imported 2 prompts" in page.text_content("main")

    # A sticker batch of it; its page shows both stickers drawn.
    page.click("nav >> text=Batches")
    page.click("text=New batch…")
    page.fill("input[name=name]", "pets batch")
    page.select_option("select[name=prompt_set]", label="pets (2)")
    page.get_by_label("sticker-base").check()
    page.fill("input[name=seeds]", "1")
    page.fill("input[name=num_inference_steps]", "2")
    with page.expect_navigation():
        page.click("text=Queue batch")
    batch = GenerationBatch.objects.get(name="pets batch")
    page.wait_for_selector("#batch-progress .status:text-is('succeeded')")
    stickers = list(Candidate.objects.filter(batch=batch).order_by("raw_prompt"))
    assert [(c.raw_prompt, c.seed) for c in stickers] == [("a cat", 1), ("a dog", 1)]

    # An animation batch of the cat, from the gallery.
    page.click("nav >> text=Gallery")
    page.check(f'input[name=sources][value="{stickers[0].pk}"]')
    with page.expect_navigation():
        page.click("text=Animate the ticked stickers")
    page.fill("textarea[name=motion_prompts]", f"{stickers[0].pk},waves its paw\n")
    page.check(f'input[name=model_versions][value="{models["anim-teacher-a"].pk}"]')
    page.fill("input[name=seeds]", "3")
    page.fill("input[name=num_frames]", "2")
    page.fill("input[name=num_inference_steps]", "2")
    with page.expect_navigation():
        page.click("text=Queue animation batch")
    page.wait_for_selector("#batch-progress .status:text-is('succeeded')")
    animation = Candidate.objects.get(kind="animation")
    assert (animation.source_id, animation.motion_prompt) == (stickers[0].pk, "waves its paw")

    # A campaign asking the alignment and the style questions, made from the sticker batch.
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    with page.expect_navigation():
        page.click("text=Make a rating campaign from this batch")
    page.fill("#id_name", "Pets")
    page.check("input[name=presets][value=alignment]")
    page.check("input[name=presets][value=style]")
    page.fill("#id_guidelines", "Judge the sticker against its prompt.")
    page.fill("#id_overlap", "2")
    page.select_option("#id_raters", label=["rae", "rex"])
    with page.expect_navigation():
        page.click("button:has-text('Save')")
    campaign = Campaign.objects.get(name="Pets")
    with page.expect_navigation():
        page.click("button:has-text('Add items')")
    with page.expect_navigation():
        page.click("button:has-text('Start')")
    campaign.refresh_from_db()
    assert (campaign.status, campaign.items.count()) == ("running", 2)
    keys = [q["key"] for q in campaign.question_schema]
    assert keys[:2] == ["aligned", "missing"] and "style_pass" in keys

    # The raters judge (factories): both find the cat aligned and the dog not.
    for item in campaign.items.all():
        aligned = item.candidates.get().raw_prompt == "a cat"
        for rater in raters:
            f.judge(item, rater, {"aligned": aligned, "style_pass": True})

    # The results, computed on request, on the quality page.
    with page.expect_navigation():
        page.click("text=Quality and results")
    with page.expect_navigation():
        page.click("text=Compute results now")
    page.wait_for_selector("tr[data-question=aligned][data-method=majority]")

    # A rule keeping the stickers judged aligned; its preview, then saved.
    page.click("nav >> text=Datasets")
    page.click("text=new rule")
    page.fill("#id_name", "pets aligned")
    page.select_option("#id_purpose", "alignment")
    page.select_option("#id_campaigns", label="Pets")
    page.fill("#id_validation_fraction", "0")
    page.select_option("select[name=conditions-0-question]", "aligned")
    page.fill("input[name=conditions-0-labels]", "true")
    with page.expect_navigation():
        page.click("button:has-text('Preview')")
    with page.expect_navigation():
        page.click("button:has-text('Save')")

    # A version built, published and exported; the export downloaded.
    with page.expect_navigation():
        page.click("button:has-text('Build a version')")
    version = DatasetVersion.objects.get(rule__name="pets aligned")
    assert (version.entry_count, list(version.entries.values_list("candidate", flat=True))) == (
        1,
        [stickers[0].pk],
    )
    with page.expect_navigation():
        page.click("button:has-text('Publish')")
    with page.expect_navigation():
        page.click("button:has-text('Export')")
    export = DatasetExport.objects.get(version=version)
    row = f'tr[data-export="{export.pk}"]'
    page.wait_for_selector(f"{row} [data-field=status]:text-is('succeeded')")
    with page.expect_navigation():
        page.click(f"{row} >> a >> nth=0")
    with page.expect_download() as download:
        page.click("a:has-text('imagefolder.tar')")
    with tarfile.open(download.value.path()) as archive:
        rows = archive.extractfile("train/metadata.jsonl").read().decode().splitlines()
    assert [json.loads(row)["text"] for row in rows] == ["a cat"]
