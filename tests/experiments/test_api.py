"""The experiment API as the loop command drives it: create, list, detail, compute, results
as JSON and CSV, instruments' scores; refusals name the field and store nothing; roles."""

import csv
import io

import pytest

from generation.models import GenerationBatch, PromptSet
from tests import factories
from tests.experiments.conftest import RED, flat
from training_bridge.experiments.models import Experiment, ExperimentArm, ExperimentScore
from training_bridge.jobs.models import TrainingJob, TrainingJobDataset

pytestmark = pytest.mark.django_db


def _counts():
    return (
        Experiment.objects.count(),
        ExperimentArm.objects.count(),
        PromptSet.objects.count(),
        GenerationBatch.objects.count(),
        ExperimentScore.objects.count(),
    )


@pytest.fixture
def body():
    held_out = factories.prompt_set(["a red cat", "a green frog"], held_out=True)
    return {
        "name": "style tailoring",
        "arms": [
            {
                "model_version": factories.model_version("sticker-base").pk,
                "template": "a sticker of {prompt}",
                "is_base": True,
            },
            {"model_version": factories.model_version("sticker-st").pk, "label": "tailored"},
        ],
        "prompt_set": held_out.pk,
        "seeds": [0, 1],
    }


def test_engineers_create_experiments_and_everyone_on_staff_reads_them(
    api, engineer, curator, body
):
    created = api(engineer).post("/api/experiments/create/", body, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert (data["name"], data["kind"], data["status"], data["seeds"], data["overlap"]) == (
        "style tailoring",
        "image",
        "generating",
        [0, 1],
        3,
    )
    assert [(a["label"], a["is_base"], a["template"]) for a in data["arms"]] == [
        ("sticker-base + template", True, "a sticker of {prompt}"),
        ("tailored", False, ""),
    ]
    assert all(a["batch"] for a in data["arms"])
    listed = api(curator).get("/api/experiments/").json()
    assert [e["id"] for e in listed["results"]] == [data["id"]]
    assert api(curator).get(f"/api/experiments/{data['id']}/").json()["arms"] == data["arms"]
    # curators read but do not create
    before = _counts()
    refused = api(curator).post("/api/experiments/create/", {**body, "name": "x"}, format="json")
    assert refused.status_code == 403
    assert _counts() == before


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda b: {**b, "arms": b["arms"][:1]},
            {"arms": ["An experiment compares 2 to 8 arms, not 1."]},
        ),
        (
            lambda b: {
                **b,
                "arms": [
                    b["arms"][0],
                    {"model_version": factories.model_version("anim", kind="animation").pk},
                ],
            },
            {"arms": ["Every arm must be of one kind; animation: anim; image: sticker-base."]},
        ),
        (
            lambda b: {**b, "arms": [{**b["arms"][0], "template": "a sticker"}, b["arms"][1]]},
            {
                "arms.0.template": [
                    "`template` has to hold the slot {prompt}, where the prompt goes, but is "
                    "'a sticker'."
                ]
            },
        ),
        (
            lambda b: {**b, "prompt_set": factories.prompt_set(["a cat"], name="open").pk},
            {
                "prompt_set": [
                    "Prompt set 'open' is not held out; experiments evaluate on held-out prompts "
                    "only."
                ]
            },
        ),
        (
            lambda b: {**b, "arms": [b["arms"][0], {"model_version": 2_000_000_000}]},
            {"arms": ['Arm 2: model_version: Invalid pk "2000000000" - object does not exist.']},
        ),
        (
            lambda b: {**b, "seeds": [0, 2**32]},
            {"seeds": {"1": ["Ensure this value is less than or equal to 4294967295."]}},
        ),
        (
            lambda b: {**b, "arms": "two"},
            {"arms": ['Expected a list of items but got type "str".']},
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(
    api, engineer, body, change, expected
):
    payload = change(body)
    before = _counts()
    answer = api(engineer).post("/api/experiments/create/", payload, format="json")
    assert (answer.status_code, answer.json()) == (400, expected)
    assert _counts() == before


def _rating_experiment(api, engineer, body) -> dict:
    """An experiment whose arms have generated (candidates drawn) and whose campaigns opened."""
    from tests.experiments.conftest import finish_batches, store_candidate
    from training_bridge.experiments.services.experiments import experiment_advance

    data = api(engineer).post("/api/experiments/create/", body, format="json").json()
    experiment = Experiment.objects.get(pk=data["id"])
    for arm in experiment.arms.select_related("batch", "prompt_set", "model_version"):
        for position in (0, 1):
            for seed in (0, 1):
                store_candidate(arm, key=(position, seed), image=flat(RED), inference_ms=12.5)
    finish_batches(experiment)
    experiment_advance(experiment_id=experiment.pk)
    return data


def test_results_trace_every_figure_and_export_as_json_and_csv(api, engineer, curator, body):
    # given: the tailored arm's model version was trained by a job on a style dataset
    base = factories.model_version("sticker-base")
    version = factories.dataset_version({"sticker-base": base}, purpose="style")
    st_model = factories.model_version("sticker-st")
    job = TrainingJob.objects.create(
        recipe="style_tailoring",
        base_model_version=base,
        params={},
        total_steps=10,
        status="succeeded",
        output_model_version=st_model,
    )
    TrainingJobDataset.objects.create(
        job=job, dataset_version=version, role="style", manifest_sha256=version.manifest_sha256
    )
    data = _rating_experiment(api, engineer, body)
    # when
    computed = api(engineer).post(f"/api/experiments/{data['id']}/results/compute/")
    # then
    assert computed.status_code == 200
    results = api(curator).get(f"/api/experiments/{data['id']}/results/").json()
    assert results["axes"] == [
        "alignment",
        "style",
        "diversity",
        "latency_ms",
        "win_alignment",
        "win_style",
        "win_overall",
    ]
    assert results["rows"] == computed.json()["rows"]
    rows = {(r["arm"], r["axis"]): r for r in results["rows"]}
    assert sorted(rows) == [
        ("sticker-base + template", "diversity"),
        ("sticker-base + template", "latency_ms"),
        ("tailored", "diversity"),
        ("tailored", "latency_ms"),
    ]
    arms = {a["label"]: a for a in data["arms"]}
    latency = rows[("tailored", "latency_ms")]
    assert {k: latency[k] for k in latency if k not in ("recorded_at", "details")} == {
        "experiment_id": data["id"],
        "arm_id": arms["tailored"]["id"],
        "arm": "tailored",
        "is_base": False,
        "model_version_id": st_model.pk,
        "model_version": "sticker-st",
        "template": "",
        "job_id": job.pk,
        "dataset_versions": f"style:{version.pk}:{version.manifest_sha256}",
        "prompt_set_id": body["prompt_set"],
        "batch_id": arms["tailored"]["batch"],
        "campaign_id": None,
        "axis": "latency_ms",
        "source": "platform",
        "value": 12.5,
        "low": 12.5,
        "high": 12.5,
        "n": 4,
        "method": "bootstrap",
    }
    base_row = rows[("sticker-base + template", "diversity")]
    assert (base_row["job_id"], base_row["dataset_versions"], base_row["value"]) == (None, "", 0.0)
    assert base_row["prompt_set_id"] == body["prompt_set"]  # the template is the batch's enhancer
    # CSV: the same rows, one line each
    answer = api(curator).get(f"/api/experiments/{data['id']}/results/?format=csv")
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    assert answer["Content-Disposition"] == (
        f'attachment; filename="experiment-{data["id"]}-results.csv"'
    )
    table = list(csv.DictReader(io.StringIO(answer.content.decode())))
    assert [(r["arm"], r["axis"], r["value"]) for r in table] == [
        (r["arm"], r["axis"], str(r["value"])) for r in results["rows"]
    ]
    assert list(table[0]) == list(results["rows"][0])


def test_results_of_an_experiment_still_generating_are_a_409(api, engineer, body):
    data = api(engineer).post("/api/experiments/create/", body, format="json").json()
    answer = api(engineer).post(f"/api/experiments/{data['id']}/results/compute/")
    assert answer.status_code == 409
    assert api(engineer).get(f"/api/experiments/{data['id']}/results/").json()["rows"] == []


def test_instruments_record_scores_beside_the_human_ones(api, engineer, curator, body):
    data = _rating_experiment(api, engineer, body)
    base, tailored = (a["id"] for a in data["arms"])
    url = f"/api/experiments/{data['id']}/scores/"
    scores = [
        {"arm": base, "axis": "alignment", "source": "oracle", "value": 0.4, "low": 0.3,
         "high": 0.5, "n": 40, "method": "oracle-argmax"},
        {"arm": tailored, "axis": "alignment", "source": "oracle", "value": 0.7},
    ]  # fmt: skip
    # curators cannot
    assert api(curator).post(url, {"scores": scores}, format="json").status_code == 403
    answer = api(engineer).post(url, {"scores": scores}, format="json")
    assert (answer.status_code, answer.json()) == (200, {"stored": 2})
    # a second report replaces the first
    api(engineer).post(url, {"scores": [{**scores[1], "value": 0.75}]}, format="json")
    stored = ExperimentScore.objects.filter(source="oracle").order_by("arm__position")
    assert list(stored.values_list("arm__label", "value", "low", "high", "n", "method")) == [
        ("sticker-base + template", 0.4, 0.3, 0.5, 40, "oracle-argmax"),
        ("tailored", 0.75, None, None, None, ""),
    ]
    assert stored[0].recorded_by == engineer
    rows = api(curator).get(f"/api/experiments/{data['id']}/results/").json()["rows"]
    assert [(r["arm"], r["source"]) for r in rows if r["axis"] == "alignment"] == [
        ("sticker-base + template", "oracle"),
        ("tailored", "oracle"),
    ]


AXES = "alignment, style, diversity, latency_ms, win_alignment, win_style, win_overall"


@pytest.mark.parametrize(
    ("score", "field", "message"),
    [
        ({"source": "human"}, "scores.1.source", "The source 'human' is the platform's own; "
         "name yours."),
        ({"source": "Oracle!"}, "scores.1.source", "A source is a lower-case name of at most 40 "
         "letters, digits, - and _, e.g. oracle."),
        ({"axis": "motion"}, "scores.1.axis", f"Unknown axis 'motion' here; use one of {AXES}."),
        ({"value": 1.5}, "scores.1.value", "Figures of alignment lie between 0 and 1, not 1.5."),
        ({"low": 0.9}, "scores.1.low", "The interval's low end 0.9 is above the value."),
        ({"arm": 2_000_000_000}, "scores.1.arm", "Arm 2000000000 is not an arm of this "
         "experiment."),
        ({"value": "many"}, "scores", "Score 2: value: A valid number is required."),
    ],
)  # fmt: skip
def test_bad_scores_are_refused_naming_the_field_and_store_nothing(
    api, engineer, body, score, field, message
):
    data = _rating_experiment(api, engineer, body)
    good = {"arm": data["arms"][0]["id"], "axis": "alignment", "source": "oracle", "value": 0.5}
    before = _counts()
    answer = api(engineer).post(
        f"/api/experiments/{data['id']}/scores/",
        {"scores": [good, {**good, "source": "other", **score}]},
        format="json",
    )
    assert (answer.status_code, answer.json()) == (400, {field: [message]})
    assert _counts() == before


def test_the_list_filters_by_model_version_and_by_job(api, engineer, curator, body):
    data = api(engineer).post("/api/experiments/create/", body, format="json").json()
    other = factories.model_version("elsewhere")
    job = TrainingJob.objects.create(
        recipe="finetune",
        base_model_version=other,
        params={},
        total_steps=1,
        status="succeeded",
        output_model_version=ExperimentArm.objects.get(label="tailored").model_version,
    )

    def ids(query):
        return [e["id"] for e in api(curator).get(f"/api/experiments/?{query}").json()["results"]]

    assert ids(f"model_version={body['arms'][1]['model_version']}") == [data["id"]]
    assert ids(f"model_version={other.pk}") == []
    assert ids(f"job={job.pk}") == [data["id"]]
    answer = api(curator).get("/api/experiments/?job=abc")
    assert (answer.status_code, answer.json()) == (400, {"job": ["A valid integer is required."]})


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": None, "arms": None, "seeds": None},
        {"name": "x", "arms": [1, 2], "seeds": [0, 1]},
        {"name": "x", "arms": [{"model_version": "abc"}, {}], "seeds": [0, 1]},
        {"name": "x", "arms": [{"model_version": 1, "template": ["{prompt}"]}], "seeds": [0]},
        {"name": "x", "arms": [], "seeds": [True, False]},
        {"name": "x", "arms": [{}, {}], "seeds": [], "overlap": 0, "sources": ["a"]},
        {"name": "x" * 201, "arms": [{"is_base": "maybe"}], "seeds": [-1]},
    ],
)
def test_odd_create_bodies_answer_400(api, engineer, payload):
    before = _counts()
    answer = api(engineer).post("/api/experiments/create/", payload, format="json")
    assert answer.status_code == 400, answer.content
    assert _counts() == before


@pytest.mark.parametrize(
    "scores",
    [
        [],
        [1],
        [{"arm": -1, "axis": "nope", "source": "", "value": None}],
        [{"arm": 1, "axis": "latency_ms", "source": "bench", "value": 1e308, "low": -1e308}],
        [{"arm": 1, "axis": "alignment", "source": "x", "value": "NaN"}],
        [{"arm": 1, "axis": "alignment", "source": "x", "value": 0.5, "n": 2**40}],
    ],
)
def test_odd_score_bodies_answer_400(api, engineer, body, scores):
    data = api(engineer).post("/api/experiments/create/", body, format="json").json()
    for score in scores:
        if isinstance(score, dict) and score.get("arm") == 1:
            score["arm"] = data["arms"][0]["id"]
    before = _counts()
    answer = api(engineer).post(
        f"/api/experiments/{data['id']}/scores/", {"scores": scores}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert _counts() == before
