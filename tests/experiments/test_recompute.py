"""Beat recomputes an experiment's results once its campaigns have judgments the stored results
have not read, and leaves the others alone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Item, Judgment
from tests import factories
from tests.experiments.conftest import item_keys
from tests.experiments.test_results import draw
from training_bridge.experiments import tasks
from training_bridge.experiments.models import Experiment, ExperimentScore
from training_bridge.experiments.selectors import experiments_with_new_judgments
from training_bridge.experiments.services.results import experiment_results_compute

pytestmark = pytest.mark.django_db


def _judge_one(experiment, rater):
    item_id = sorted(item_keys(experiment.rating_campaign))[0]
    return factories.judge(
        Item.objects.get(pk=item_id), rater, {"aligned": True, "style_pass": True}
    )


def test_only_experiments_with_unread_judgments_are_found(image_experiment, raters):
    judged = image_experiment(draw)
    # in rating, with no judgment yet
    assert experiments_with_new_judgments() == []
    # a judgment and no results yet
    _judge_one(judged, raters[0])
    assert experiments_with_new_judgments() == [judged.pk]
    # computed after it: nothing new
    experiment_results_compute(experiment=judged)
    Judgment.objects.filter(campaign=judged.rating_campaign).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    assert experiments_with_new_judgments() == []
    # a judgment on the pair campaign, made after the computation
    pair_item = Item.objects.filter(campaign=judged.pair_campaign).order_by("pk").first()
    factories.judge(pair_item, raters[1], {"overall": "tie", "alignment": "tie"})
    assert experiments_with_new_judgments() == [judged.pk]
    # an experiment that failed is not recomputed, whatever its campaigns hold
    Experiment.objects.filter(pk=judged.pk).update(status="failed", error="stopped")
    assert experiments_with_new_judgments() == []


def test_the_beat_task_computes_the_results_of_a_newly_judged_experiment(
    image_experiment, raters, settings
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    experiment = image_experiment(draw)
    _judge_one(experiment, raters[0])
    # when
    tasks.recompute_periodic.apply()
    # then: computed once, with the human pass rate of the one judged item's arm
    experiment.refresh_from_db()
    assert experiment.results_computed_at is not None
    human = ExperimentScore.objects.filter(arm__experiment=experiment, source="human")
    assert [(s.axis, s.value, s.n) for s in human] == [("alignment", 1.0, 1), ("style", 1.0, 1)]
    # the judgment was made within NEW_JUDGMENT_LOOKBACK of the computation: found once more,
    # and not after that
    assert experiments_with_new_judgments() == [experiment.pk]
    Judgment.objects.update(created_at=timezone.now() - timedelta(minutes=5))
    assert experiments_with_new_judgments() == []
