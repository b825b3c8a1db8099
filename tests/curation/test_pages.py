"""Curation pages: the rule page's preview funnel and grid, building from the page, versions,
diff, exports with progress bars, weak corpora."""

import re

import pytest

from tests import factories as f
from tests.conftest import logged_in
from training_bridge.exports.run import dataset_export_run
from training_bridge.models import DatasetExport, DatasetRule, DatasetVersion
from training_bridge.rules import dataset_rule_create
from training_bridge.versions import dataset_version_build, dataset_version_publish

pytestmark = pytest.mark.django_db

T = {"aligned": True, "quality": 4}
F = {"aligned": False, "quality": 1}


@pytest.fixture
def rule(make, curator):
    campaign = make.campaign(name="align")
    raters = [make.rater(f"r{i}", campaign) for i in range(2)]
    for index, prompt in enumerate(["a cat", "a dog", "a frog"]):
        item = make.item(campaign, [make.sticker(prompt)])
        for rater in raters:
            make.judge(item, rater, F if index == 2 else T)
    return f.aligned_rule(campaign, curator, name="align pages", validation_fraction=0)


def test_rule_page_shows_the_funnel_and_grid_and_builds(rule, curator):
    client = logged_in(curator)
    page = client.get(f"/datasets/rules/{rule.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    rows = re.findall(
        r'data-stage="(\w+)"><td>[^<]*</td><td data-field="kept">(\d+)</td>'
        r'<td data-field="dropped">(\d+)</td>',
        html,
    )
    assert rows == [
        ("source", "3", "0"),
        ("gold", "3", "0"),
        ("paused_only", "3", "0"),
        ("min_judgments", "3", "0"),
        ("condition_0", "2", "1"),
        ("kind", "2", "0"),
        ("held_out", "2", "0"),
    ]
    assert html.count('class="candidate"') == 3  # two kept, one dropped sample
    assert "2 entries from 2 prompt(s): 2 train, 0 validation." in html
    built = client.post(f"/datasets/rules/{rule.pk}/build/")
    version = DatasetVersion.objects.get()
    assert built.status_code == 302 and built["Location"] == f"/datasets/versions/{version.pk}/"
    page = client.get(built["Location"]).content.decode()
    assert version.manifest_sha256 in page
    assert "Publish" in page


def test_version_pages_publish_export_and_diff(rule, curator, make):
    client = logged_in(curator)
    v1, _ = dataset_version_build(rule=rule, built_by=curator)
    assert client.post(f"/datasets/versions/{v1.pk}/publish/").status_code == 302
    v1.refresh_from_db()
    assert v1.status == "published"
    response = client.post(
        f"/datasets/versions/{v1.pk}/export/", {"format": "webdataset", "shard_size": "2"}
    )
    assert response.status_code == 302
    export = DatasetExport.objects.get()
    assert (export.format, export.shard_size, export.status) == ("webdataset", 2, "queued")
    page = client.get(f"/datasets/versions/{v1.pk}/").content.decode()
    assert f'data-export="{export.pk}" data-finished="0"' in page
    assert 'class="bar" data-field="bar" data-percent="0"' in page
    dataset_export_run(export_id=export.pk)
    page = client.get("/datasets/exports/").content.decode()
    assert 'data-percent="100"' in page and "train-000000.tar" in page
    # a refused action comes back as a message, and nothing is stored
    client.post(f"/datasets/versions/{v1.pk}/export/", {"format": "webdataset", "shard_size": "x"})
    page = client.get(f"/datasets/versions/{v1.pk}/").content.decode()
    assert "shard_size: Must be a whole number." in page
    assert DatasetExport.objects.count() == 1
    # a second version and the diff page
    campaign = rule.campaigns.get()
    item = make.item(campaign, [make.sticker("an owl")])
    make.judge(item, make.rater("r9", campaign), T)
    v2, _ = dataset_version_build(rule=rule, built_by=curator)
    page = client.get(f"/datasets/versions/{v1.pk}/diff/{v2.pk}/").content.decode()
    assert "1 added, 0 removed, 0 changed, 2 unchanged." in page


def _live_rows(html: str) -> list[tuple]:
    """Each export row of the list's live fragment: id, finished, status, counts, bar."""
    return re.findall(
        r'data-export="(\d+)" data-finished="(\d)">.*?data-field="status">(\w+)</td>.*?'
        r'data-percent="(\d+)".*?data-field="counts">([^<]*)</span>',
        html,
        re.S,
    )


def test_the_export_list_refreshes_its_rows_through_its_live_fragment(rule, curator):
    client = logged_in(curator)
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    client.post(f"/datasets/versions/{version.pk}/export/", {"format": "webdataset"})
    export = DatasetExport.objects.get()
    page = client.get("/datasets/exports/?page=1").content.decode()
    # the page draws its rows with the fragment, and live.js asks for the same page of them
    assert 'data-url="/datasets/exports/live/?page=1"></script>' in page
    assert "js/export_progress.js" not in page
    live = client.get("/datasets/exports/live/?page=1")
    assert live.status_code == 200
    fragment = live.content.decode()
    assert fragment.startswith('<tbody id="live" data-finished="0">')
    assert fragment.strip() in page
    assert _live_rows(fragment) == [(str(export.pk), "0", "queued", "0", "0 / 2")]
    # when the export has run, the next poll shows it finished with its file
    dataset_export_run(export_id=export.pk)
    fragment = client.get("/datasets/exports/live/?page=1").content.decode()
    assert _live_rows(fragment) == [(str(export.pk), "1", "succeeded", "100", "2 / 2")]
    assert f"/api/dataset-exports/{export.pk}/download/?file=train-000000.tar" in fragment
    # a list has no final state: the fragment keeps the script polling (backing off)
    assert fragment.startswith('<tbody id="live" data-finished="0">')


def test_ticking_several_formats_exports_them_in_one_pass(rule, curator):
    client = logged_in(curator)
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    dataset_version_publish(version=version, published_by=curator)
    page = client.get(f"/datasets/versions/{version.pk}/").content.decode()
    assert page.count('type="checkbox" name="format"') == 3
    response = client.post(
        f"/datasets/versions/{version.pk}/export/",
        {"format": ["webdataset", "parquet"], "shard_size": "1"},
    )
    assert response.status_code == 302
    exports = list(DatasetExport.objects.order_by("pk").values_list("format", "shard_size"))
    assert exports == [("webdataset", 1), ("parquet", None)]
    # nothing ticked: a message, and nothing stored
    client.post(f"/datasets/versions/{version.pk}/export/", {"shard_size": ""})
    page = client.get(f"/datasets/versions/{version.pk}/").content.decode()
    assert "formats: Name at least one format." in page
    assert DatasetExport.objects.count() == 2


def test_pages_need_a_staff_role(rule, rater, engineer):
    assert logged_in(rater).get("/datasets/").status_code == 403
    assert logged_in(engineer).get("/datasets/").status_code == 200
    assert logged_in(engineer).get("/datasets/weak-sources/").status_code == 200
    assert logged_in(engineer).post(f"/datasets/rules/{rule.pk}/build/").status_code == 403
    assert DatasetVersion.objects.count() == 0


def test_animation_pages_show_source_and_animation(make, curator):
    from tests.factories import MOTION_SCHEMA

    campaign = make.campaign(kind="best_of_n", schema=MOTION_SCHEMA, name="teachers")
    rater = make.rater("m1", campaign)
    source = make.sticker("a cat waving")
    a = make.animation(source, teacher="anim-teacher-a", seed=1)
    b = make.animation(source, teacher="anim-teacher-b", seed=2)
    item = make.item(campaign, [a, b])
    make.judge(item, rater, {"motion_pass": {str(a.pk): True, str(b.pk): False}})
    rule = dataset_rule_create(
        values={
            "name": "teachers",
            "purpose": "teacher_selection",
            "campaigns": [campaign],
            "conditions": [{"question": "motion_pass", "labels": [True]}],
        },
        created_by=curator,
    )
    client = logged_in(curator)
    page = client.get(f"/datasets/rules/{rule.pk}/").content.decode()
    assert f'src="/media/{source.file}"' in page and f'src="/media/{a.file}"' in page
    version, _ = dataset_version_build(rule=rule, built_by=curator)
    page = client.get(f"/datasets/versions/{version.pk}/").content.decode()
    assert f'src="/media/{source.file}"' in page and "anim-teacher-a" in page


def test_the_rule_form_saves_answer_conditions_and_shows_them_again(rule, curator):
    client = logged_in(curator)
    campaign = rule.campaigns.get()
    body = {
        "name": "aligned and good",
        "purpose": "alignment",
        "campaigns": [campaign.pk],
        "consensus_method": "majority",
        "min_judgments": "2",
        "exclude_gold": "on",
        "validation_fraction": "0.1",
        "split_seed": "3",
        "caption_source": "raw_prompt",
        "conditions-TOTAL_FORMS": "3",
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "10",
        "conditions-0-keep": "answers",
        "conditions-0-question": "aligned",
        "conditions-0-labels": "true",
        "conditions-0-min_confidence": "0.8",
        "conditions-1-keep": "answers",
        "conditions-1-question": "quality",
        "conditions-1-min_mean": "3.5",
        "conditions-2-keep": "answers",
        "save": "1",
    }
    response = client.post("/datasets/rules/new/", body)
    saved = DatasetRule.objects.get(name="aligned and good")
    assert response.status_code == 302
    assert saved.conditions == [
        {"question": "aligned", "labels": [True], "min_confidence": 0.8},
        {"question": "quality", "min_mean": 3.5},
    ]
    assert (saved.min_judgments, saved.exclude_gold, saved.exclude_paused_only) == (2, True, False)
    assert (saved.split_seed, saved.kind, saved.training_trigger) == (3, "image", None)
    page = client.get(f"/datasets/rules/{saved.pk}/edit/").content.decode()
    assert 'name="conditions-0-labels" value="true"' in page
    assert 'name="conditions-1-min_mean" value="3.5"' in page
    # A label the question does not have comes back beside the labels of its row.
    refused = client.post(
        "/datasets/rules/new/", {**body, "name": "other", "conditions-0-labels": "yes"}
    )
    assert refused.status_code == 200
    row = re.search(r'<tr data-condition="0">(.*?)</tr>', refused.content.decode(), re.S)
    assert (
        "&#x27;yes&#x27; is not an answer of question &#x27;aligned&#x27; (answers: true, false)."
        in row.group(1)
    )
    assert DatasetRule.objects.filter(name="other").count() == 0


def _funnel(html: str) -> list[tuple]:
    return re.findall(
        r'data-stage="(\w+)"><td>[^<]*</td><td data-field="kept">(\d+)</td>'
        r'<td data-field="dropped">(\d+)</td>',
        html,
    )


def test_the_rule_form_previews_its_funnel_as_conditions_change(rule, curator):
    client = logged_in(curator)
    form = client.get("/datasets/rules/new/").content.decode()
    assert '<div id="live-preview" aria-live="polite">' in form
    assert 'src="/static/js/rule_preview.js" data-url="/datasets/rules/preview/"' in form
    rules_before = DatasetRule.objects.count()
    body = {
        "name": "",
        "purpose": "alignment",
        "campaigns": [rule.campaigns.get().pk],
        "consensus_method": "majority",
        "min_judgments": "1",
        "exclude_gold": "on",
        "exclude_paused_only": "on",
        "exclude_held_out": "on",
        "validation_fraction": "0",
        "split_seed": "0",
        "caption_source": "raw_prompt",
        "conditions-TOTAL_FORMS": "2",
        "conditions-INITIAL_FORMS": "0",
        "conditions-MIN_NUM_FORMS": "0",
        "conditions-MAX_NUM_FORMS": "10",
        "conditions-0-keep": "answers",
        "conditions-0-question": "aligned",
        "conditions-0-labels": "true",
        "conditions-1-keep": "answers",
    }

    def preview(**changes) -> str:
        response = client.post("/datasets/rules/preview/", {**body, **changes})
        assert response.status_code == 200
        return response.content.decode()

    # one condition: the two aligned items of three, with no name typed yet
    html = preview()
    assert _funnel(html) == [
        ("source", "3", "0"),
        ("gold", "3", "0"),
        ("paused_only", "3", "0"),
        ("min_judgments", "3", "0"),
        ("condition_0", "2", "1"),
        ("kind", "2", "0"),
        ("held_out", "2", "0"),
    ]
    assert "2 entries from 2 prompt(s): 2 train, 0 validation." in html
    # a second condition, on the mean quality, takes its place in the funnel after the first
    html = preview(
        **{
            "conditions-0-labels": "false",
            "conditions-1-question": "quality",
            "conditions-1-max_mean": "2",
        }
    )
    assert _funnel(html)[4:6] == [("condition_0", "1", "2"), ("condition_1", "1", "0")]
    assert "1 entries from 1 prompt(s): 1 train, 0 validation." in html
    # what stops the rule from running, in words, beside the field it names
    html = preview(**{"conditions-0-labels": "yes", "min_judgments": "-1"})
    assert re.findall(r"<li>(.*?)</li>", html) == [
        "Min judgments: Ensure this value is greater than or equal to 0.",
    ]
    html = preview(**{"conditions-0-labels": "yes"})
    assert re.findall(r"<li>(.*?)</li>", html) == [
        "Condition 1, labels: &#x27;yes&#x27; is not an answer of question &#x27;aligned&#x27; "
        "(answers: true, false).",
    ]
    assert DatasetRule.objects.count() == rules_before


def test_each_condition_input_names_its_field_and_row(rule, curator):
    form = logged_in(curator).get("/datasets/rules/new/").content.decode()
    assert 'aria-label="Min confidence, condition 1"' in form
    assert 'aria-label="Question, condition 1"' in form
    assert "None, condition" not in form
