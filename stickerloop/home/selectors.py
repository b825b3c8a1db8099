"""What needs a curator's or an ML engineer's attention, for the home page. Every read goes
through the selector of the app that owns the concept; only the choice of what to show, and
for how long, lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Q

from annotation.models import Campaign, CampaignStatus
from annotation.quality.selectors import campaigns_results_behind
from annotation.selectors import campaigns_all_done
from training_bridge.jobs.models import EvaluationStatus, JobStatus, TrainingJob
from training_bridge.jobs.selectors import training_job_list
from training_bridge.models import DatasetExport, DatasetRule, TaskStatus
from training_bridge.pipelines.models import Pipeline, PipelineStatus
from training_bridge.pipelines.selectors import pipeline_list
from training_bridge.selectors import dataset_export_list, dataset_rules_with_new_matches

# Failures and finished work stay on the home page this long: long enough to be seen after a
# weekend, short enough that old news does not bury new.
RECENT = timedelta(days=7)
# Rows per section; each section links to its full list.
LIMIT = 10


@dataclass
class CuratorAttention:
    campaigns_done: list[Campaign]
    results_behind: list[Campaign]
    exports_done: list[DatasetExport]
    rules_new_matches: list[DatasetRule]


@dataclass
class EngineerAttention:
    jobs_running: list[TrainingJob]
    jobs_failed: list[TrainingJob]
    evaluations: list[TrainingJob]
    pipelines_failed: list[Pipeline]


def curator_attention(*, now: datetime) -> CuratorAttention:
    """Running campaigns with every item judged, campaigns whose results are behind their
    judgments, exports finished lately, and rules whose campaigns were judged since their
    newest version."""
    return CuratorAttention(
        campaigns_done=campaigns_all_done()[:LIMIT],
        results_behind=list(campaigns_results_behind()[:LIMIT]),
        exports_done=list(
            dataset_export_list()
            .filter(status=TaskStatus.SUCCEEDED, finished_at__gte=now - RECENT)
            .order_by("-finished_at", "-id")[:LIMIT]
        ),
        rules_new_matches=list(dataset_rules_with_new_matches()[:LIMIT]),
    )


def engineer_attention(*, now: datetime) -> EngineerAttention:
    """Running jobs, jobs failed lately, lately finished jobs whose evaluation was skipped or
    failed or whose pair campaign is closed, and pipelines stopped at a failed stage."""
    recent = now - RECENT
    troubled = [EvaluationStatus.SKIPPED, EvaluationStatus.FAILED]
    return EngineerAttention(
        jobs_running=list(
            training_job_list(status=JobStatus.RUNNING).order_by("-started_at", "-id")[:LIMIT]
        ),
        jobs_failed=list(
            training_job_list(status=JobStatus.FAILED)
            .filter(finished_at__gte=recent)
            .order_by("-finished_at", "-id")[:LIMIT]
        ),
        evaluations=list(
            training_job_list()
            .select_related("evaluation__campaign")
            .filter(finished_at__gte=recent)
            .filter(
                Q(evaluation__status__in=troubled)
                | Q(
                    evaluation__status=EvaluationStatus.OPEN,
                    evaluation__campaign__status=CampaignStatus.CLOSED,
                )
            )
            .order_by("-finished_at", "-id")[:LIMIT]
        ),
        pipelines_failed=list(pipeline_list(status=PipelineStatus.FAILED)[:LIMIT]),
    )
