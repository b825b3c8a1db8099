"""The role × endpoint matrix, generated from the URL configuration.

Every URL pattern the project serves must have a rule in ``RULES`` (the Django admin site has
one rule for its whole namespace): a new endpoint without one fails ``test_every_url_has_a_rule``.
Each rule names the roles let through per method; every other role must be refused. Requests go
over the test client with a real session (pages) or token (API), for real objects made once per
module; each request runs in a savepoint that is rolled back, so one cell never sees another's
writes.

Allowed means any answer but 401/403 (a 400 for an empty body is fine: the gate let it in).
Refused means 403, except anonymous callers: 302 to the login page on pages, 401/403 on the API.
The rating endpoints gate on campaign membership (403 for a non-member, whatever the role), so
only the member rater is let through there; tests/security/test_idor.py covers other campaigns.
"""

import re
import uuid
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Item, ItemLoad
from annotation.quality.models import AggregationRun
from annotation.services.rating import item_next_for_rater
from generation.models import GenerationBatch, PromptEnhancer, PromptImport
from stickerloop.roles import Role
from stickerloop.services import token_issue
from tests import factories as f
from training_bridge.experiments.models import Experiment
from training_bridge.jobs.models import TrainingJob
from training_bridge.models import (
    DatasetExport,
    DatasetRule,
    DatasetVersion,
    TrainingTrigger,
    WeakImport,
    WeakSource,
)
from training_bridge.pipelines.models import Pipeline, PipelineStage
from webhooks.models import Delivery, Event
from webhooks.models import Endpoint as WebhookEndpoint

ANON = "anonymous"
R, C, E, A = Role.RATER.value, Role.CURATOR.value, Role.ML_ENGINEER.value, Role.ADMIN.value
ROLES = (ANON, R, C, E, A)
EVERYONE = frozenset(ROLES)
LOGGED_IN = frozenset({R, C, E, A})
STAFF = frozenset({C, E, A})  # IsCuratorOrEngineer / role_required(CURATOR, ML_ENGINEER)
CURATORS = frozenset({C, A})
ENGINEERS = frozenset({E, A})
RATERS = frozenset({R, A})  # role_required(RATER): admin holds every role
MEMBER = frozenset({R})  # the campaign's member rater; admin is no member of it


@dataclass(frozen=True)
class Rule:
    """Who is let through: ``roles`` for every method, or ``by_method`` where they differ.
    ``kwargs`` maps each URL argument to a key of the module's objects (or a literal value)."""

    roles: frozenset = frozenset()
    by_method: dict = field(default_factory=dict)
    kwargs: dict = field(default_factory=dict)
    # A function view's methods (a class-based view's are read from its handlers).
    methods: tuple = ("GET", "POST")

    def allowed(self, method: str) -> frozenset:
        return self.by_method.get(method, self.roles)


def pk(kind: str) -> dict:
    return {"pk": kind}


POST_ONLY = ("POST",)  # pages under @require_POST: a GET answers 405 before the role gate


RULES: dict[str, Rule] = {
    # Sign-in and the home page
    "home": Rule(LOGGED_IN),
    "favicon": Rule(EVERYONE),
    "login": Rule(EVERYONE),
    "logout": Rule(EVERYONE),
    "admin-login": Rule(EVERYONE),
    "api-token": Rule(EVERYONE),
    "api-token-revoke": Rule(LOGGED_IN),
    "api-me": Rule(LOGGED_IN),
    "password-change": Rule(LOGGED_IN),
    # A new account's one-time page: the token in the URL is the gate (tests/quality/
    # test_rater_pages.py); a bad one shows that the link is used or expired.
    "password-set": Rule(EVERYONE, kwargs={"uidb64": "MQ", "token": "not-a-token"}),
    # Probes for orchestrators: no login (a probe has none), and nothing in the answers but the
    # parts' names and states (tests/test_health.py).
    "healthz": Rule(EVERYONE, methods=("GET",)),
    "readyz": Rule(EVERYONE, methods=("GET",)),
    # Prometheus' bearer token is the gate, not a role (tests/test_metrics.py: 403 without it);
    # with no token set, as here, /metrics answers 404 to everyone.
    "metrics": Rule(EVERYONE, methods=("GET",)),
    # drf-spectacular serves the schema and its docs page with SERVE_PERMISSIONS (AllowAny).
    "api-schema": Rule(EVERYONE),
    "api-docs": Rule(EVERYONE),
    # Media: the gate is the login; which file a role may read is tests/security/test_media.py's.
    "media": Rule(LOGGED_IN, kwargs={"key": "candidates/none/none.png"}),
    "rate-media": Rule(LOGGED_IN, kwargs={"token": "not-a-grant", "position": "0", "part": "file"}),
    # Generation
    "api-model-version-list": Rule(STAFF),
    "api-model-version-register": Rule(ENGINEERS),
    "api-model-version-detail": Rule(STAFF, kwargs=pk("model_version")),
    "api-prompt-set-list": Rule(STAFF),
    "api-prompt-set-import": Rule(STAFF),
    "api-prompt-set-detail": Rule(STAFF, kwargs=pk("prompt_set")),
    "api-prompt-set-enhancer": Rule(STAFF, kwargs=pk("prompt_set")),
    # Curators and engineers register template enhancers; only engineers text-generation ones
    # (a 403 from the service, tested in tests/generation/test_enhancers.py).
    "api-prompt-enhancer-list": Rule(STAFF),
    "api-prompt-enhancer-create": Rule(STAFF),
    "api-prompt-enhancer-detail": Rule(STAFF, kwargs=pk("prompt_enhancer")),
    "api-prompt-import-detail": Rule(STAFF, kwargs=pk("prompt_import")),
    "api-batch-list": Rule(STAFF),
    "api-batch-create": Rule(STAFF),
    "api-batch-progress": Rule(STAFF),
    "api-batch-detail": Rule(STAFF, kwargs=pk("batch")),
    "api-batch-cancel": Rule(STAFF, kwargs=pk("batch")),
    "api-candidate-list": Rule(STAFF),
    "api-candidate-detail": Rule(STAFF, kwargs=pk("candidate")),
    "batch-list": Rule(STAFF),
    "batch-create": Rule(STAFF),
    "animation-batch-create": Rule(STAFF),
    "prompt-set-list": Rule(STAFF),
    "prompt-set-enhancer": Rule(STAFF, kwargs=pk("prompt_set"), methods=POST_ONLY),
    "prompt-enhancer-list": Rule(STAFF),
    "batch-detail": Rule(STAFF, kwargs=pk("batch")),
    "batch-live": Rule(STAFF, kwargs=pk("batch")),
    "candidate-gallery": Rule(STAFF),
    "model-version-list": Rule(STAFF),
    # Campaigns
    "api-campaign-list": Rule(STAFF),
    "api-campaign-create": Rule(STAFF),
    "api-campaign-presets": Rule(STAFF),
    "api-campaign-detail": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-update": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-start": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-pause": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-close": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-items-add": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-items-from-selection": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-items-load": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-item-loads": Rule(STAFF, kwargs=pk("campaign")),
    "api-campaign-item-load": Rule(STAFF, kwargs={"pk": "campaign", "load": "item_load"}),
    "api-campaign-progress": Rule(STAFF, kwargs=pk("campaign")),
    "campaign-list": Rule(STAFF),
    "campaign-create": Rule(STAFF),
    "campaign-detail": Rule(STAFF, kwargs=pk("campaign")),
    "campaign-edit": Rule(STAFF, kwargs=pk("campaign")),
    "campaign-items-from-selection": Rule(STAFF, kwargs=pk("campaign"), methods=POST_ONLY),
    "campaign-action": Rule(STAFF, kwargs={"pk": "campaign", "action": "pause"}, methods=POST_ONLY),
    # Rating: any signed-in caller reaches the view; the campaign's membership is the gate.
    "api-rater-campaigns": Rule(LOGGED_IN),
    "api-rate-ping": Rule(LOGGED_IN),
    "api-rating-step": Rule(MEMBER, kwargs=pk("campaign")),
    "api-rating-config": Rule(MEMBER, kwargs=pk("campaign")),
    "api-item-next": Rule(MEMBER, kwargs=pk("campaign")),
    "api-judgment-submit": Rule(MEMBER, kwargs=pk("campaign")),
    "api-item-skip": Rule(MEMBER, kwargs=pk("campaign")),
    "api-judgment-undo": Rule(MEMBER, kwargs=pk("campaign")),
    "api-items-held": Rule(MEMBER, kwargs=pk("campaign")),
    "api-rater-progress": Rule(MEMBER, kwargs=pk("campaign")),
    "rater-home": Rule(RATERS),
    "rate": Rule(MEMBER, kwargs=pk("campaign")),
    # Quality
    "api-campaign-membership-set": Rule(CURATORS, kwargs=pk("campaign")),
    "api-quality-policy": Rule(by_method={"GET": STAFF, "PATCH": CURATORS}, kwargs=pk("campaign")),
    "api-quality-compute": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-agreement": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-results": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-consensus": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-raters": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-rater-pause": Rule(CURATORS, kwargs={"pk": "campaign", "rater_id": "rater"}),
    "api-quality-rater-resume": Rule(CURATORS, kwargs={"pk": "campaign", "rater_id": "rater"}),
    "api-quality-rankings": Rule(STAFF, kwargs=pk("campaign")),
    "api-quality-gold-set": Rule(CURATORS, kwargs=pk("campaign")),
    "api-quality-gold-add": Rule(CURATORS, kwargs=pk("campaign")),
    "api-quality-gold-promote": Rule(CURATORS, kwargs=pk("campaign")),
    "api-quality-gold-unset": Rule(CURATORS, kwargs={"pk": "campaign", "item_id": "item"}),
    "api-quality-run": Rule(STAFF, kwargs=pk("quality_run")),
    "campaign-membership": Rule(CURATORS, kwargs=pk("campaign"), methods=POST_ONLY),
    # Rater management: curators (and admins) make rater accounts and add raters to campaigns,
    # as they change campaign membership.
    "rater-list": Rule(CURATORS),
    "rater-create": Rule(CURATORS),
    "rater-detail": Rule(CURATORS, kwargs=pk("rater")),
    "rater-link": Rule(CURATORS, kwargs=pk("rater"), methods=POST_ONLY),
    "rater-campaigns-add": Rule(CURATORS, kwargs=pk("rater"), methods=POST_ONLY),
    "quality-index": Rule(STAFF),
    "quality-campaign": Rule(STAFF, kwargs=pk("campaign")),
    "quality-campaign-live": Rule(STAFF, kwargs=pk("campaign")),
    "quality-leaderboard": Rule(STAFF, kwargs=pk("campaign")),
    "quality-compute": Rule(STAFF, kwargs=pk("campaign"), methods=POST_ONLY),
    "quality-animate": Rule(STAFF, kwargs=pk("campaign")),
    "quality-rater-resume": Rule(
        CURATORS, kwargs={"pk": "campaign", "rater_id": "rater"}, methods=POST_ONLY
    ),
    # Datasets
    "api-dataset-rule-list": Rule(STAFF),
    "api-dataset-rule-create": Rule(CURATORS),
    "api-dataset-rule-draft-preview": Rule(STAFF),
    "api-dataset-rule-detail": Rule(STAFF, kwargs=pk("rule")),
    "api-dataset-rule-update": Rule(CURATORS, kwargs=pk("rule")),
    "api-dataset-rule-preview": Rule(STAFF, kwargs=pk("rule")),
    "api-dataset-rule-build": Rule(CURATORS, kwargs=pk("rule")),
    "api-dataset-version-list": Rule(STAFF),
    "api-dataset-version-detail": Rule(STAFF, kwargs=pk("version")),
    "api-dataset-version-entries": Rule(STAFF, kwargs=pk("version")),
    "api-dataset-version-retire": Rule(CURATORS, kwargs=pk("version")),
    "api-dataset-version-diff": Rule(STAFF, kwargs={"pk": "version", "other": "version"}),
    "api-dataset-version-publish": Rule(CURATORS, kwargs=pk("version")),
    "api-dataset-export-create": Rule(STAFF, kwargs=pk("version")),
    "api-dataset-export-batch-create": Rule(STAFF, kwargs=pk("version")),
    "api-dataset-export-list": Rule(STAFF),
    "api-dataset-export-progress": Rule(STAFF),
    "api-dataset-export-detail": Rule(STAFF, kwargs=pk("export")),
    "api-dataset-export-download": Rule(STAFF, kwargs=pk("export")),
    "api-dataset-audit": Rule(STAFF),
    "api-weak-source-list": Rule(STAFF),
    "api-weak-source-create": Rule(CURATORS),
    "api-weak-import-create": Rule(CURATORS, kwargs=pk("weak_source")),
    "api-weak-import-list": Rule(STAFF),
    "api-weak-import-detail": Rule(STAFF, kwargs=pk("weak_import")),
    "dataset-rule-list": Rule(STAFF),
    "dataset-rule-create": Rule(CURATORS),
    "dataset-rule-form-preview": Rule(CURATORS, methods=POST_ONLY),
    "dataset-rule-detail": Rule(STAFF, kwargs=pk("rule")),
    "dataset-rule-edit": Rule(CURATORS, kwargs=pk("rule")),
    "dataset-rule-build": Rule(CURATORS, kwargs=pk("rule"), methods=POST_ONLY),
    "dataset-version-list": Rule(STAFF),
    "dataset-version-detail": Rule(STAFF, kwargs=pk("version")),
    "dataset-version-retire": Rule(CURATORS, kwargs=pk("version"), methods=POST_ONLY),
    "dataset-version-export": Rule(STAFF, kwargs=pk("version"), methods=POST_ONLY),
    "dataset-version-diff": Rule(STAFF, kwargs={"pk": "version", "other": "version"}),
    "dataset-version-publish": Rule(CURATORS, kwargs=pk("version"), methods=POST_ONLY),
    "dataset-export-list": Rule(STAFF),
    "dataset-export-list-live": Rule(STAFF),
    "dataset-export-detail": Rule(STAFF, kwargs=pk("export")),
    "weak-source-list": Rule(STAFF),
    # Training
    "api-training-job-list": Rule(STAFF),
    "api-training-job-create": Rule(ENGINEERS),
    "api-training-job-progress": Rule(STAFF),
    "api-training-job-detail": Rule(STAFF, kwargs=pk("job")),
    "api-training-job-cancel": Rule(ENGINEERS, kwargs=pk("job")),
    "api-training-job-resume": Rule(ENGINEERS, kwargs=pk("job")),
    "api-training-job-report": Rule(ENGINEERS, kwargs=pk("job")),
    "api-training-job-register-output": Rule(ENGINEERS, kwargs=pk("job")),
    "api-training-job-losses": Rule(STAFF, kwargs=pk("job")),
    "api-training-trigger-fire": Rule(STAFF, kwargs=pk("trigger")),
    "training-job-list": Rule(STAFF),
    "training-job-create": Rule(ENGINEERS),
    "training-job-detail": Rule(STAFF, kwargs=pk("job")),
    "training-job-live": Rule(STAFF, kwargs=pk("job")),
    "training-job-action": Rule(
        ENGINEERS, kwargs={"pk": "job", "action": "cancel"}, methods=POST_ONLY
    ),
    "model-version-lineage": Rule(STAFF, kwargs=pk("model_version")),
    # Experiments: ML engineers create them, compute their results and record instruments'
    # scores; curators read them beside the training jobs.
    "api-experiment-list": Rule(STAFF),
    "api-experiment-create": Rule(ENGINEERS),
    "api-experiment-detail": Rule(STAFF, kwargs=pk("experiment")),
    "api-experiment-results": Rule(STAFF, kwargs=pk("experiment")),
    "api-experiment-results-compute": Rule(ENGINEERS, kwargs=pk("experiment")),
    "api-experiment-scores-record": Rule(ENGINEERS, kwargs=pk("experiment")),
    "experiment-list": Rule(STAFF),
    "experiment-detail": Rule(STAFF, kwargs=pk("experiment")),
    "experiment-live": Rule(STAFF, kwargs=pk("experiment")),
    "experiment-compute": Rule(ENGINEERS, kwargs=pk("experiment"), methods=POST_ONLY),
    # Pipelines: engineers declare and resume, curators and engineers read
    "api-pipeline-list": Rule(STAFF),
    "api-pipeline-create": Rule(ENGINEERS),
    "api-pipeline-detail": Rule(STAFF, kwargs=pk("pipeline")),
    "api-pipeline-resume": Rule(ENGINEERS, kwargs=pk("pipeline")),
    "pipeline-list": Rule(STAFF),
    "pipeline-create": Rule(ENGINEERS),
    "pipeline-detail": Rule(STAFF, kwargs=pk("pipeline")),
    "pipeline-live": Rule(STAFF, kwargs=pk("pipeline")),
    "pipeline-resume": Rule(ENGINEERS, kwargs=pk("pipeline"), methods=POST_ONLY),
    # Webhooks: curators and ML engineers register and watch endpoints; raters never.
    "api-webhook-event-types": Rule(STAFF),
    "api-webhook-endpoint-list": Rule(STAFF),
    "api-webhook-endpoint-create": Rule(STAFF),
    "api-webhook-endpoint-detail": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-update": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-rotate-secret": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-enable": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-disable": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-delete": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-endpoint-test": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-delivery-list": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "api-webhook-delivery-detail": Rule(STAFF, kwargs=pk("webhook_delivery")),
    "api-webhook-delivery-redeliver": Rule(STAFF, kwargs=pk("webhook_delivery")),
    "webhook-endpoint-list": Rule(STAFF),
    "webhook-endpoint-create": Rule(STAFF),
    "webhook-endpoint-detail": Rule(STAFF, kwargs=pk("webhook_endpoint")),
    "webhook-endpoint-action": Rule(
        STAFF, kwargs={"pk": "webhook_endpoint", "action": "test"}, methods=POST_ONLY
    ),
    "webhook-delivery-detail": Rule(STAFF, kwargs=pk("webhook_delivery")),
    "webhook-delivery-redeliver": Rule(STAFF, kwargs=pk("webhook_delivery"), methods=POST_ONLY),
}

# The Django admin site: every view is behind ``admin_view`` (is_staff, which only the admin role
# sets; everyone else is sent to the admin's login). The model pages also need Django's model
# permissions, which the admin role holds all of (``stickerloop.roles.RoleModelBackend``), as a
# superuser (``createsuperuser``) does: the admin site is also checked with a sixth caller, a
# superuser.
SU = "superuser"
ADMIN_NAMESPACE = "admin"
ADMIN_KWARGS = {
    "object_id": "rater",
    "id": "rater",
    "content_type_id": "content_type",
    "app_label": "auth",
    "url": "nowhere/",
}
ADMIN_SITE_VIEWS = {
    "admin:index",
    "admin:logout",
    "admin:password_change",
    "admin:password_change_done",
    "admin:jsi18n",
    "admin:app_list",
    "admin:view_on_site",
}
ADMIN_SITE_RULE = Rule(frozenset({A, SU}), kwargs=ADMIN_KWARGS)
ADMIN_MODEL_RULE = Rule(frozenset({A, SU}), kwargs=ADMIN_KWARGS)
# No model admin declares autocomplete fields, so the autocomplete view refuses every caller.
ADMIN_CLOSED_RULE = Rule(frozenset(), kwargs=ADMIN_KWARGS)
# Shadowed by ``admin-login`` (the throttled login at the same path): requests reach that view.
ADMIN_OPEN = {"admin:login"}

# Body per URL name for the endpoints that check the input before the gate's last step (the
# membership check runs in the rating service): a well-formed body reaches it.
BODIES = {
    "api-item-skip": lambda o: {
        "item": o["leased_item"],
        "client_id": str(uuid.uuid4()),
        "reason": "x",
    },
    "api-judgment-submit": lambda o: {
        "item": o["leased_item"],
        "client_id": str(uuid.uuid4()),
        "answers": {"aligned": True},
        "seconds_on_item": 1.0,
    },
}


@dataclass(frozen=True)
class Endpoint:
    key: str  # the URL name (namespaced), or the route for an unnamed admin pattern
    route: str  # the route as written, prefixes joined
    view: object

    @property
    def is_admin(self) -> bool:
        return self.key.startswith(f"{ADMIN_NAMESPACE}:") or self.route.startswith("admin/^")

    @property
    def is_api(self) -> bool:
        return self.route.startswith("api/")


def _walk(resolver, prefix: str = "", namespace: str | None = None):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern, route, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            in_admin = namespace == ADMIN_NAMESPACE
            key = name or (f"{ADMIN_NAMESPACE}:<unnamed {route}>" if in_admin else route)
            yield Endpoint(key=key, route=route, view=pattern.callback)


ENDPOINTS = list(_walk(get_resolver()))


def _rule(endpoint: Endpoint) -> Rule | None:
    if endpoint.key.startswith(f"{ADMIN_NAMESPACE}:"):
        if endpoint.key == "admin:autocomplete":
            return ADMIN_CLOSED_RULE
        if endpoint.route.endswith("(?P<url>.*)$"):  # the catch-all: 404 for staff
            return ADMIN_SITE_RULE
        return ADMIN_SITE_RULE if endpoint.key in ADMIN_SITE_VIEWS else ADMIN_MODEL_RULE
    return RULES.get(endpoint.key)


def _methods(endpoint: Endpoint, rule: Rule) -> list[str]:
    """An API view's own handlers; pages are checked with GET and POST (the role gate comes
    before the method check); the admin site with GET."""
    if endpoint.is_admin:
        return ["GET"]
    view_class = getattr(endpoint.view, "view_class", None)
    if view_class is not None:
        return [
            m.upper()
            for m in view_class.http_method_names
            if m not in ("options", "head") and hasattr(view_class, m)
        ]
    return list(rule.methods)


def _path(endpoint: Endpoint, rule: Rule, objects: dict) -> str:
    def value(name: str) -> str:
        wanted = rule.kwargs.get(name)
        assert wanted is not None, f"{endpoint.key}: no value for URL argument {name!r}"
        return str(objects.get(wanted, wanted))

    path = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: value(m.group(1)), endpoint.route)
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: value(m.group(1)), path)
    return "/" + path.replace("^", "").replace("$", "")


# The table --------------------------------------------------------------------------------------


def test_every_url_has_a_rule():
    missing = sorted(e.key for e in ENDPOINTS if _rule(e) is None)
    assert missing == [], f"URLs without a rule in RULES (add who may call them): {missing}"


def test_every_rule_names_a_url():
    names = {e.key for e in ENDPOINTS}
    assert sorted(set(RULES) - names) == []
    assert names >= ADMIN_OPEN


def test_rules_list_only_known_roles_and_methods():
    by_key = {e.key: e for e in ENDPOINTS}
    for name, rule in RULES.items():
        assert rule.roles | set().union(*rule.by_method.values()) <= EVERYONE, name
        assert set(rule.by_method) <= set(_methods(by_key[name], rule)), name


# The matrix -------------------------------------------------------------------------------------


def _make_objects() -> dict:
    users = {
        R: f.user("matrix-rater", [R]),
        C: f.user("matrix-curator", [C]),
        E: f.user("matrix-engineer", [E]),
        A: f.user("matrix-admin", [A]),
        SU: f.user("matrix-superuser", [A]),
    }
    users[SU].is_superuser = True
    users[SU].save(update_fields=["is_superuser"])
    campaign = f.running_campaign(raters=[users[R]], n_items=3)
    items = list(Item.objects.filter(campaign=campaign).order_by("pk"))
    [leased] = item_next_for_rater(campaign=campaign, rater=users[R], count=1)
    model = f.model_version("matrix-model")
    candidate = leased.candidates.first()
    rule = DatasetRule.objects.create(name="matrix-rule", purpose="alignment", kind="image")
    version = DatasetVersion.objects.create(
        rule=rule,
        number=1,
        purpose="alignment",
        kind="image",
        status="published",
        rule_snapshot={"name": rule.name},
        manifest_sha256="0" * 64,
        entry_count=1,
        train_count=1,
        validation_count=0,
        published_at=timezone.now(),
    )
    source = WeakSource.objects.create(name="matrix-source", kind="image")
    data = {
        "users": users,
        "campaign": campaign.pk,
        "item": next(i.pk for i in items if i.pk != leased.pk),
        "leased_item": leased.pk,
        "rater": users[R].pk,
        "candidate": candidate.pk,
        "model_version": model.pk,
        "prompt_set": f.prompt_set(["a matrix prompt"]).pk,
        "prompt_enhancer": PromptEnhancer.objects.create(
            name="matrix-enhancer", kind="template", template="a sticker of {prompt}"
        ).pk,
        "prompt_import": PromptImport.objects.create(
            name="matrix import", file_format="text", location="imports/prompts/x", size_bytes=1
        ).pk,
        "batch": GenerationBatch.objects.create(kind="sticker", seeds=[1], total=1).pk,
        "item_load": ItemLoad.objects.create(campaign=campaign, selection={}).pk,
        "quality_run": AggregationRun.objects.create(
            campaign=campaign, trigger="on_demand", methods=["majority"]
        ).pk,
        "rule": rule.pk,
        "version": version.pk,
        "export": DatasetExport.objects.create(version=version, format="imagefolder").pk,
        "weak_source": source.pk,
        "weak_import": WeakImport.objects.create(source=source, file_format="tar").pk,
        "job": TrainingJob.objects.create(
            recipe="finetune", base_model_version=model, params={}, total_steps=1
        ).pk,
        "trigger": TrainingTrigger.objects.create(version=version, trigger={}, status="failed").pk,
        "experiment": Experiment.objects.create(
            name="matrix experiment",
            kind="image",
            prompt_set=f.prompt_set(["a held-out matrix prompt"], held_out=True),
            seeds=[1, 2],
        ).pk,
        "pipeline": PipelineStage.objects.create(
            pipeline=Pipeline.objects.create(
                name="matrix pipeline", status="failed", error="Stage 0 (corpus): matrix."
            ),
            position=0,
            name="corpus",
            kind="dataset",
            rule=rule,
            role="content",
            status="failed",
            error="matrix.",
        ).pipeline_id,
        "content_type": ContentType.objects.get_for_model(type(users[R])).pk,
    }
    endpoint = WebhookEndpoint.objects.create(
        url="https://93.184.216.34/hook", events=["export.ready"], secret="whsec_matrix"
    )
    event = Event.objects.create(
        type="export.ready",
        object_type="dataset_export",
        object_id=data["export"],
        data={},
        occurred_at=timezone.now(),
    )
    data["webhook_endpoint"] = endpoint.pk
    data["webhook_delivery"] = Delivery.objects.create(
        event=event,
        endpoint=endpoint,
        status="succeeded",
        attempts=1,
        window_started_at=timezone.now(),
    ).pk
    data["tokens"] = {role: token_issue(user=u).key for role, u in users.items()}
    data["sessions"] = {}
    for role, u in users.items():
        browser = Client()
        browser.force_login(u)
        data["sessions"][role] = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return data


@pytest.fixture(scope="module")
def objects(django_db_setup, django_db_blocker):
    """One of each kind of object, made once for the module inside a transaction that is rolled
    back at its end (each test's own transaction is a savepoint inside it)."""
    outer = transaction.atomic()
    with django_db_blocker.unblock():
        outer.__enter__()
        try:
            data = _make_objects()
        except BaseException:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            raise
    yield data
    with django_db_blocker.unblock():
        transaction.set_rollback(True)
        outer.__exit__(None, None, None)


def _request(endpoint: Endpoint, role: str, method: str, path: str, body, objects):
    if endpoint.is_api:
        client = APIClient()
        if role != ANON:
            client.credentials(HTTP_AUTHORIZATION=f"Token {objects['tokens'][role]}")
        return getattr(client, method.lower())(path, body, format="json")
    client = Client()
    if role != ANON:
        client.cookies[settings.SESSION_COOKIE_NAME] = objects["sessions"][role]
    return getattr(client, method.lower())(path)


def _refused(endpoint: Endpoint, role: str, response) -> bool:
    code = response.status_code
    if endpoint.is_admin:
        if role in (A, SU):
            # Staff: 403 without the model permission; 302 to the admin's index (a missing
            # object) or to the change page (an object's bare address), which is refused itself.
            return code in (302, 403)
        return code == 302 and response["Location"].startswith("/admin/")
    if role == ANON:
        if endpoint.is_api:
            return code in (401, 403)
        return code == 302 and response["Location"].startswith("/login/?next=")
    return code == 403


def _let_in(endpoint: Endpoint, response) -> bool:
    code = response.status_code
    if code in (401, 403):
        return False
    if code == 302:
        location = response["Location"]
        return not location.startswith(("/login/?next=", "/admin/login/?next="))
    return True


def _superuser_refused(endpoint: Endpoint, superuser) -> bool:
    """The read-only model admins (no add, no delete) refuse even a superuser those pages, and
    so the admin role too."""
    action = endpoint.key.rsplit("_", 1)[-1]
    if action not in ("add", "delete"):
        return False
    request = RequestFactory().get("/")
    request.user = superuser
    for model, model_admin in admin.site._registry.items():
        prefix = f"{ADMIN_NAMESPACE}:{model._meta.app_label}_{model._meta.model_name}_"
        if endpoint.key == prefix + action:
            if action == "add":
                return not model_admin.has_add_permission(request)
            return not model_admin.has_delete_permission(request)
    return False


@pytest.fixture(autouse=True)
def _media_folder(_media_root):
    """The media folder exists, as ``preflight`` leaves it: /readyz answers 503 without it."""
    _media_root.mkdir(parents=True, exist_ok=True)


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.key for e in ENDPOINTS])
def test_roles(endpoint, objects):
    rule = _rule(endpoint)
    assert rule is not None, f"{endpoint.key} has no rule"
    wrong = []
    for method in _methods(endpoint, rule):
        allowed = EVERYONE if endpoint.key in ADMIN_OPEN else rule.allowed(method)
        if _superuser_refused(endpoint, objects["users"][SU]):
            allowed = allowed - {A, SU}
        for role in (*ROLES, SU) if endpoint.is_admin else ROLES:
            path = _path(endpoint, rule, objects)
            body = BODIES[endpoint.key](objects) if endpoint.key in BODIES else {}
            with transaction.atomic():
                response = _request(endpoint, role, method, path, body, objects)
                transaction.set_rollback(True)
            assert response.status_code < 500, (method, path, role, response.status_code)
            ok = (
                _let_in(endpoint, response)
                if role in allowed
                else _refused(endpoint, role, response)
            )
            if not ok:
                expected = "allowed" if role in allowed else "refused"
                wrong.append(f"{method} {path} as {role}: {response.status_code}, {expected}")
    assert not wrong, "\n".join(wrong)
