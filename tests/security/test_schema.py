"""The OpenAPI schema is accurate: generated without warnings, behind login in production, and
every real answer of the API matches what the schema documents for its operation and status.

``conform`` checks one answer: its status is documented for the operation, its content type is
one the operation names, and a JSON body validates against the documented schema (OpenAPI 3.0's
``nullable`` turned into JSON Schema's ``null``).
"""

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from annotation.models import ItemLoad
from annotation.quality.models import AggregationRun
from generation.models import GenerationBatch, PromptEnhancer, PromptImport
from tests import factories
from tests.conftest import client_for
from training_bridge.experiments.models import Experiment
from training_bridge.jobs.models import TrainingJob
from training_bridge.models import DatasetExport, WeakImport, WeakSource
from training_bridge.pipelines.models import Pipeline, PipelineStage
from webhooks.models import Delivery, DeliveryAttempt
from webhooks.models import Endpoint as WebhookEndpoint
from webhooks.models import Event as WebhookEvent

pytestmark = pytest.mark.django_db

MISSING = 2_000_000_000


def _json_schema(node):
    """OpenAPI 3.0 schema objects as JSON Schema: ``nullable: true`` becomes a ``null`` option."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _json_schema(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


class Schema:
    def __init__(self):
        document = json.loads(
            OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True))
        )
        self.paths = document["paths"]
        self.components = _json_schema(document["components"])
        # Literal paths first: /api/batches/progress/ before /api/batches/{id}/.
        self.patterns = sorted(
            (
                (re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", template) + "$"), template)
                for template in self.paths
            ),
            key=lambda pair: pair[1].count("{"),
        )
        self.answered: set[tuple[str, str, int]] = set()

    def operation(self, method: str, path: str) -> tuple[str, dict]:
        for pattern, template in self.patterns:
            if pattern.match(path) and method.lower() in self.paths[template]:
                return template, self.paths[template][method.lower()]
        raise AssertionError(f"{method} {path} is not in the schema")

    def conform(self, response):
        method, path = response.request["REQUEST_METHOD"], response.request["PATH_INFO"]
        template, operation = self.operation(method, path)
        code = str(response.status_code)
        assert code in operation["responses"], (
            f"{method} {template}: {code} is not documented ({sorted(operation['responses'])})"
        )
        self.answered.add((method, template, response.status_code))
        content = operation["responses"][code].get("content")
        if not content:
            assert response.content == b"", f"{method} {template} {code}: a body, none documented"
            return response
        media_type = response["Content-Type"].split(";")[0]
        assert media_type in content, f"{method} {template} {code}: {media_type} not documented"
        if media_type == "application/json":
            schema = {**content[media_type]["schema"], "components": self.components}
            errors = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(response.json()),
                key=lambda e: list(e.absolute_path),
            )
            assert not errors, f"{method} {path} {code}: " + "; ".join(
                f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
            )
        return response


@pytest.fixture(scope="module")
def schema():
    return Schema()


@pytest.fixture
def world(rater, curator, engineer, admin_user):
    """One row of each kind the API shows, the ids keyed by the path segment that names them."""
    make = factories.Factory()
    base = make.model("sticker-base")
    rule = make.alignment_rule(["a red fox", "a blue whale"], curator)
    campaign = factories.running_campaign(raters=[rater], n_items=3)
    version = factories.dataset_version({"sticker-base": base}, purpose="alignment")
    enhancer = PromptEnhancer.objects.create(
        name="sticker-art", kind="template", template="a sticker of {prompt}"
    )
    prompt_set = factories.prompt_set(["a cat", "a dog"])
    prompt_set.enhancer = enhancer
    prompt_set.save(update_fields=["enhancer"])
    batch = GenerationBatch.objects.create(
        kind="sticker", prompt_set=prompt_set, enhancer=enhancer, seeds=[1], total=2
    )
    batch.model_versions.add(base)
    export = DatasetExport.objects.create(version=version, format="imagefolder")
    job = TrainingJob.objects.create(
        recipe="finetune", base_model_version=base, params={}, total_steps=10
    )
    source = WeakSource.objects.create(name="web", kind="image")
    weak_import = WeakImport.objects.create(source=source, file_format="tar", location="x.tar")
    prompt_import = PromptImport.objects.create(
        name="queued", file_format="text", location="imports/prompts/x", size_bytes=1
    )
    run = AggregationRun.objects.create(campaign=campaign, trigger="on_demand", methods=["mean"])
    experiment = Experiment.objects.create(
        name="schema experiment",
        kind="image",
        prompt_set=factories.prompt_set(["a held-out cat", "a held-out dog"], held_out=True),
        seeds=[1, 2],
    )
    pipeline = Pipeline.objects.create(name="schema pipeline")
    PipelineStage.objects.create(
        pipeline=pipeline,
        position=0,
        name="corpus",
        kind="dataset",
        rule=version.rule,
        role="train",
        dataset_version=version,
        status="succeeded",
    )
    PipelineStage.objects.create(
        pipeline=pipeline,
        position=1,
        name="base",
        kind="training",
        recipe="finetune",
        base_model_version=base,
        params={"max_train_steps": 10},
        job=job,
        status="running",
    )
    endpoint = WebhookEndpoint.objects.create(
        url="https://93.184.216.34/hook", events=["export.ready"], secret="whsec_schema"
    )
    event = WebhookEvent.objects.create(
        type="export.ready",
        object_type="dataset_export",
        object_id=export.pk,
        occurred_at=timezone.now(),
    )
    delivery = Delivery.objects.create(
        event=event,
        endpoint=endpoint,
        status="failed",
        attempts=1,
        window_started_at=event.occurred_at,
    )
    DeliveryAttempt.objects.create(
        delivery=delivery, number=1, started_at=event.occurred_at, error="No answer within 5 s."
    )
    return {
        "batches": batch.pk,
        "campaigns": campaign.pk,
        "candidates": factories.Candidate.objects.earliest("pk").pk,
        "dataset-exports": export.pk,
        "dataset-rules": rule.pk,
        "dataset-versions": version.pk,
        "experiments": experiment.pk,
        "model-versions": base.pk,
        "pipelines": pipeline.pk,
        "prompt-enhancers": enhancer.pk,
        "prompt-sets": prompt_set.pk,
        "prompt-sets/imports": prompt_import.pk,
        "quality/campaigns": campaign.pk,
        "quality/runs": run.pk,
        "training-jobs": job.pk,
        "weak-imports": weak_import.pk,
        "weak-sources": source.pk,
        "webhooks/deliveries": delivery.pk,
        "webhooks/endpoints": endpoint.pk,
        "users": {"rater": rater, "curator": curator, "engineer": engineer, "admin": admin_user},
        "named": {"load": ItemLoad.objects.create(campaign=campaign, selection={}).pk},
    }


def _fill(template: str, world: dict) -> str:
    """The template's path with the world's ids: the first placeholder's from the path before
    it, a later one's by its name in ``world["named"]`` (the ``other`` version is the same one)."""
    if "{" not in template:
        return template
    first = str(world[template.removeprefix("/api/").split("/{")[0]])
    path = re.sub(r"\{\w+\}", first, template, count=1)
    return re.sub(r"\{(\w+)\}", lambda m: str(world["named"].get(m.group(1), first)), path)


def test_schema_generates_without_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_every_get_answers_as_documented(schema, world, api):
    admin, rater = api(world["users"]["admin"]), api(world["users"]["rater"])
    problems, not_ok = [], []

    def check(client, path):
        try:
            return schema.conform(client.get(path))
        except AssertionError as problem:
            problems.append(str(problem).splitlines()[0])

    for template, operations in schema.paths.items():
        if "get" not in operations:
            continue
        path = _fill(template, world)
        answer = check(admin, path)
        if answer is not None and answer.status_code != 200:
            not_ok.append((template, answer.status_code))
        if "format" in {p["name"] for p in operations["get"].get("parameters", [])}:
            check(admin, path + "?format=csv")
        check(rater, path)
        check(client_for(None), path)
        if "{" in template:
            check(admin, re.sub(r"\{\w+\}", str(MISSING), template))
    assert problems == []
    assert sorted(not_ok) == [
        ("/api/campaigns/{id}/held/", 403),  # the admin is not one of the campaign's raters
        ("/api/campaigns/{id}/rate/config/", 403),  # nor can it read the rating configuration
        ("/api/campaigns/{id}/rate/progress/", 403),  # nor a rater's counters
        ("/api/dataset-exports/{id}/download/", 409),  # the export has not run
        ("/api/quality/campaigns/{id}/consensus/", 400),  # needs ?question_key=
    ]


def test_main_actions_answer_as_documented(schema, world, api):
    users = world["users"]
    curator, rater = api(users["curator"]), api(users["rater"])
    campaign = world["campaigns"]

    schema.conform(client_for(None).post(reverse("api-token"), {"username": "x", "password": "y"}))
    token = schema.conform(
        client_for(None).post(
            reverse("api-token"), {"username": "rater", "password": factories.PASSWORD}
        )
    )
    assert token.status_code == 200
    revoke = schema.conform(rater.post(reverse("api-token-revoke")))
    assert revoke.status_code == 204

    imported = schema.conform(
        curator.post(
            "/api/prompt-sets/import/",
            {"name": "imported", "content": "a cat\na cat\n\na dog"},
            format="json",
        )
    )
    assert (imported.status_code, imported.json()["imported"]) == (201, 2)
    enhancer = schema.conform(
        curator.post(
            "/api/prompt-enhancers/create/",
            {"name": "outline", "kind": "template", "template": "{prompt}, thick outline"},
            format="json",
        )
    )
    assert enhancer.status_code == 201
    no_slot = schema.conform(
        curator.post(
            "/api/prompt-enhancers/create/",
            {"name": "bad", "kind": "template", "template": "a cat"},
            format="json",
        )
    )
    assert no_slot.status_code == 400
    chosen = schema.conform(
        curator.post(
            f"/api/prompt-sets/{imported.json()['prompt_set']['id']}/enhancer/",
            {"enhancer": enhancer.json()["id"]},
            format="json",
        )
    )
    assert chosen.status_code == 200
    created = schema.conform(
        curator.post(
            "/api/campaigns/create/",
            {"name": "new", "kind": "single", "preset": "alignment"},
            format="json",
        )
    )
    assert created.status_code == 201
    assert schema.conform(curator.post("/api/campaigns/create/", {}, format="json")).status_code
    assert schema.conform(
        curator.post(f"/api/campaigns/{created.json()['id']}/start/")
    ).status_code in (200, 409)

    lease = schema.conform(rater.post(f"/api/campaigns/{campaign}/next/"))
    assert lease.status_code == 200
    item = lease.json()["items"][0]["id"]
    submitted = schema.conform(
        rater.post(
            f"/api/campaigns/{campaign}/submit/",
            {"item": item, "client_id": str(uuid.uuid4()), "answers": {}},
            format="json",
        )
    )
    assert submitted.status_code == 400
    skipped = schema.conform(
        rater.post(
            f"/api/campaigns/{campaign}/skip/",
            {"item": item, "client_id": str(uuid.uuid4()), "reason": "unsure"},
            format="json",
        )
    )
    assert skipped.status_code == 201
    stepped = schema.conform(rater.post(f"/api/campaigns/{campaign}/rate/", {}, format="json"))
    assert stepped.status_code == 200
    missing = schema.conform(
        rater.post(
            f"/api/campaigns/{campaign}/skip/",
            {"item": MISSING, "client_id": str(uuid.uuid4()), "reason": "unsure"},
            format="json",
        )
    )
    assert missing.status_code == 404
    for action in ("pause", "start", "close"):
        schema.conform(curator.post(f"/api/campaigns/{campaign}/{action}/"))
    schema.conform(curator.post(f"/api/batches/{world['batches']}/cancel/"))
    schema.conform(curator.post(f"/api/batches/{MISSING}/cancel/"))
    schema.conform(curator.post("/api/batches/create/", {"kind": "sticker"}, format="json"))
    schema.conform(
        api(users["engineer"]).post("/api/model-versions/register/", {"name": "x"}, format="json")
    )
    schema.conform(
        curator.post(
            f"/api/dataset-versions/{world['dataset-versions']}/exports/",
            {"format": "imagefolder"},
            format="json",
        )
    )
    schema.conform(curator.post(f"/api/dataset-rules/{world['dataset-rules']}/build/"))
    schema.conform(
        curator.post("/api/campaigns/create/", "[" * 100, content_type="application/json")
    )
    assert schema.conform(curator.get("/api/campaigns/not-a-number/")).status_code == 404


def test_a_queued_prompt_import_answers_as_documented(schema, api, curator, settings):
    settings.PROMPT_IMPORT_SYNC_BYTES = 8
    client = api(curator)
    queued = schema.conform(
        client.post(
            "/api/prompt-sets/import/",
            {"name": "large", "content": "a cat\na dog\n"},
            format="json",
        )
    )
    assert queued.status_code == 202
    followed = schema.conform(client.get(queued.json()["status_url"]))
    assert (followed.status_code, followed.json()["status"]) == (200, "queued")


def test_schema_and_docs_need_login_in_production():
    check = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "print(c.get('/api/schema/', secure=True).status_code, "
        "c.get('/api/docs/', secure=True).status_code)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STICKERLOOP_"))}
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=Path(__file__).resolve().parents[2],
        env={
            **env,
            "STICKERLOOP_ENV": "production",
            "DJANGO_SECRET_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMN",
            "DJANGO_SETTINGS_MODULE": "stickerloop.settings",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["403", "403"]


def test_schema_and_docs_are_open_in_development():
    assert client_for(None).get("/api/schema/").status_code == 200
    assert client_for(None).get("/api/docs/").status_code == 200


def test_an_empty_table_as_csv_is_its_header_line(api, curator):
    campaign = factories.running_campaign(raters=[], n_items=1)
    answer = api(curator).get(f"/api/quality/campaigns/{campaign.pk}/agreement/?format=csv")
    assert (answer.status_code, answer["Content-Type"]) == (200, "text/csv; charset=utf-8")
    assert answer.content == (
        b"question_key,level,alpha,alpha_interval,fleiss_kappa,fleiss_reason,observed_agreement,"
        b"n_items,n_judgments,n_raters,distribution,computed_at\n"
    )


def test_an_api_path_that_matches_no_route_answers_json_404(api, curator):
    answer = api(curator).get("/api/campaigns/%C2%84/")
    assert (answer.status_code, answer.json()) == (404, {"detail": "Not found."})


def test_a_page_that_matches_no_route_keeps_the_html_404(site, curator):
    answer = site(curator).get("/campaigns/%C2%84/")
    assert (answer.status_code, answer["Content-Type"]) == (404, "text/html; charset=utf-8")


def test_an_unparsable_api_body_answers_json_400(api, curator):
    answer = api(curator).post("/api/prompt-sets/import/", b"x", content_type="multipart/form-data")
    assert (answer.status_code, answer.json()) == (
        400,
        {"detail": "The request could not be parsed."},
    )
