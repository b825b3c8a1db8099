"""Query counts of the generation pages, pinned and independent of how many rows they list."""

import pytest

from generation.services.batches import generation_batch_create
from generation.services.enhancers import prompt_enhancer_create
from generation.services.prompts import prompt_set_import
from tests import factories as f
from tests.conftest import get_ok

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(site, engineer):
    return site(engineer)


def test_batch_list(browser, models, flat_queries):
    prompt_set, _ = prompt_set_import(name="p", content="a cat\n", file_format="text")

    def grow(n):
        for seed in range(n):
            generation_batch_create(
                kind="sticker",
                prompt_set=prompt_set,
                model_versions=[models["sticker-base"]],
                seeds=[seed],
                params={},
            )

    flat_queries(grow=grow, read=lambda: get_ok(browser, "/batches/", "/api/batches/"), count=12)


def test_batch_page(browser, models, flat_queries):
    prompt_set, _ = prompt_set_import(name="p", content="a cat\n", file_format="text")
    batch = generation_batch_create(
        kind="sticker",
        prompt_set=prompt_set,
        model_versions=[models["sticker-base"]],
        seeds=[1],
        params={},
    )

    seeds = iter(range(100))

    def grow(n):
        for _ in range(n):
            f.sticker(
                version=models["sticker-base"],
                on_prompt=prompt_set.prompts.get(),
                seed=next(seeds),
                batch=batch,
            )

    flat_queries(grow=grow, read=lambda: get_ok(browser, f"/batches/{batch.pk}/"), count=7)
    # What static/js/live.js polls reads the batch as the page does: the same queries.
    flat_queries(grow=grow, read=lambda: get_ok(browser, f"/batches/{batch.pk}/live/"), count=7)


def test_prompt_set_list(browser, flat_queries):
    made = iter(range(100))

    def grow(n):
        for _ in range(n):
            prompt_set_import(
                name=f"set {next(made)}", content="a cat, animal\na dog\n", file_format="text"
            )

    # 12: the page also lists the latest prompt imports by a task and the enhancers a set may
    # choose, and counts its sets for the pager (one query each)
    flat_queries(
        grow=grow, read=lambda: get_ok(browser, "/prompt-sets/", "/api/prompt-sets/"), count=12
    )


def test_candidate_gallery(browser, flat_queries):
    def grow(n):
        for _ in range(n):
            source = f.sticker(on_prompt=f.prompt(tags=("animal",)))
            f.animation(source=source)

    flat_queries(
        grow=grow, read=lambda: get_ok(browser, "/candidates/", "/api/candidates/"), count=11
    )


def test_model_version_list(browser, flat_queries):
    def grow(n):
        for _ in range(n):
            f.model_version()

    # The page counts its rows for its pages: one query more than an unpaged list.
    flat_queries(
        grow=grow, read=lambda: get_ok(browser, "/models/", "/api/model-versions/"), count=10
    )


def test_prompt_enhancer_list(browser, flat_queries):
    made = iter(range(100))

    def grow(n):
        for _ in range(n):
            prompt_enhancer_create(
                name=f"flair-{next(made)}", kind="template", template="{prompt}, sticker"
            )

    # session, user, roles, the pager's count and the page of enhancers
    flat_queries(grow=grow, read=lambda: get_ok(browser, "/prompt-enhancers/"), count=5)
