"""Query counts of the training pages, pinned and independent of how many jobs they list."""

import pytest

from tests.conftest import get_ok
from tests.factories import progress_events, prompt_set
from training_bridge.experiments.models import Experiment
from training_bridge.jobs.lifecycle import training_job_create
from training_bridge.jobs.progress import training_job_progress_report
from training_bridge.pipelines.models import Pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(site, engineer):
    return site(engineer)


def test_job_list_and_progress(browser, models, datasets, flat_queries):
    jobs = []

    def grow(n):
        for _ in range(n):
            job = training_job_create(
                recipe="style_tailoring",
                base_model_version=models["sticker-base"],
                datasets={"content": datasets["alignment"], "style": datasets["style"]},
                params={"max_train_steps": 4, "timestep_split": 650},
                evaluate=False,
            )
            training_job_progress_report(
                job=job, events=progress_events(job, {"content": [1.0], "style": [0.5]})
            )
            jobs.append(job)

    def read():
        get_ok(browser, "/training/jobs/")
        get_ok(browser, "/api/training-jobs/")
        ids = ",".join(str(job.pk) for job in jobs)
        get_ok(browser, f"/api/training-jobs/progress/?ids={ids}")

    flat_queries(grow=grow, read=read, count=16)


def test_pipeline_and_experiment_lists(browser, flat_queries):
    made = iter(range(100))
    prompts = prompt_set(["a held-out cat"], held_out=True)

    def grow(n):
        for _ in range(n):
            i = next(made)
            Pipeline.objects.create(name=f"loop {i}")
            Experiment.objects.create(name=f"arms {i}", kind="image", prompt_set=prompts, seeds=[1])

    # each: session, user, roles, the pager's count, the page, and its prefetch (the pipelines'
    # current stages, the experiments' arms)
    flat_queries(
        grow=grow,
        read=lambda: get_ok(browser, "/training/pipelines/", "/training/experiments/"),
        count=12,
    )
