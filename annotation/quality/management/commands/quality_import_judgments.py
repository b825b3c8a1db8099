"""Load public crowdsourcing data as judgments in a (closed) campaign, then optionally compute
its results through the same pipeline as the aggregation task.

    python manage.py quality_import_judgments ../shared/crowd-data/snow2008/rte.standardized.tsv \
        --format long --name "Snow RTE" --compute
    python manage.py quality_import_judgments ../shared/crowd-data/pairwise/food.csv \
        --format pairs --name "food" --compute
"""

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from annotation.quality import crowd_formats
from annotation.quality.services.crowd_import import (
    IMPORT_TYPES,
    crowd_comparisons_import,
    crowd_labels_import,
)
from annotation.quality.services.results import campaign_results_compute


class Command(BaseCommand):
    help = "Import external crowd judgments (labels or pairwise comparisons) into a campaign."

    def add_arguments(self, parser):
        parser.add_argument("path", help="The judgments file.")
        parser.add_argument(
            "--format",
            required=True,
            choices=[*crowd_formats.LABEL_FORMATS, *crowd_formats.PAIR_FORMATS],
        )
        parser.add_argument("--name", required=True, help="Name of the new campaign.")
        parser.add_argument("--truth", help="A file of known answers (item, truth).")
        parser.add_argument(
            "--type",
            default="single_choice",
            choices=IMPORT_TYPES,
            help="Question type of label data (default single_choice).",
        )
        parser.add_argument("--question-key", default=None)
        parser.add_argument(
            "--source", default="", help="Where the data comes from (default: the campaign name)."
        )
        parser.add_argument(
            "--compute",
            action="store_true",
            help="Compute and store the campaign's results after the import.",
        )
        parser.add_argument(
            "--methods", default="", help="Comma-separated consensus methods for --compute."
        )

    def handle(self, *args, **options):
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        # Names the imported raters and model versions: "crowd-<source>-<worker>".
        source = options["source"] or options["name"]
        try:
            if options["format"] in crowd_formats.PAIR_FORMATS:
                data = crowd_formats.read_comparisons(path, fmt=options["format"])
                report = crowd_comparisons_import(
                    name=options["name"],
                    comparisons=data,
                    source=source,
                    question_key=options["question_key"] or "overall",
                )
            else:
                data = crowd_formats.read_labels(
                    path, fmt=options["format"], truth_path=options["truth"]
                )
                report = crowd_labels_import(
                    name=options["name"],
                    labels=data,
                    source=source,
                    question_type=options["type"],
                    question_key=options["question_key"] or "label",
                )
        except (ValueError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        except ValidationError as exc:
            raise CommandError(json.dumps(exc.message_dict)) from exc
        self.stdout.write(
            f"campaign {report.campaign.pk} {report.campaign.name!r}: {report.items} items "
            f"({report.gold_items} gold), {report.judgments} judgments by {report.raters} raters"
            + (
                f", {report.duplicates_dropped} repeated judgments dropped"
                if report.duplicates_dropped
                else ""
            )
            + (f", {report.model_versions} model versions" if report.model_versions else "")
        )
        if options["compute"]:
            methods = [m for m in options["methods"].split(",") if m] or None
            try:
                summary = campaign_results_compute(campaign=report.campaign, methods=methods)
            except ValidationError as exc:
                raise CommandError(json.dumps(exc.message_dict)) from exc
            self.stdout.write(json.dumps(summary, default=str))
