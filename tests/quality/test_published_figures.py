"""Public crowdsourcing data loaded through the project's import path, results computed by the
project's pipeline and read back from the stored results, against published figures
(``../shared/crowd-data/README.md`` gives each figure and its source).

Majority-vote figures of Snow et al. (2008) and Zhang et al. (2016) count a tie among k labels as
1/k correct; the stored gold accuracy follows that rule, so they match to three decimals. The
Crowd-Kit paper's MV column breaks ties arbitrarily instead, so only its Dawid–Skene, GLAD and
MACE columns are used here (as lower bounds, published value minus 0.01).
"""

import pytest
from django.core.management import call_command

from annotation.quality import crowd_formats
from annotation.quality.models import AgreementResult, QuestionResult, RankingResult
from annotation.quality.services.crowd_import import crowd_comparisons_import, crowd_labels_import
from annotation.quality.services.results import campaign_results_compute

pytestmark = pytest.mark.django_db


def accuracy(campaign, method: str, key: str = "label") -> float:
    return QuestionResult.objects.get(
        campaign=campaign, question_key=key, method=method
    ).gold_accuracy


def import_labels(path, *, name, fmt="long", truth=None, question_type="single_choice"):
    labels = crowd_formats.read_labels(path, fmt=fmt, truth_path=truth)
    return crowd_labels_import(name=name, labels=labels, source=name, question_type=question_type)


def test_snow_rte_through_the_command_matches_published_majority_vote(crowd_data, capsys):
    # when: the management command imports and computes
    call_command(
        "quality_import_judgments",
        str(crowd_data / "snow2008/rte.standardized.tsv"),
        "--format",
        "long",
        "--name",
        "snow-rte",
        "--compute",
        "--methods",
        "majority,dawid_skene",
    )

    # then
    out = capsys.readouterr().out
    assert "800 items (800 gold), 8000 judgments by 164 raters" in out
    result = QuestionResult.objects.get(campaign__name="snow-rte", method="majority")
    assert (result.n_items, result.n_judgments, result.n_gold_items) == (800, 8000, 800)
    assert round(result.gold_accuracy, 3) == 0.897  # Snow et al. 2008
    assert round(1 - result.gold_accuracy, 4) == 0.1031  # Zhang et al. 2016: 10.31 % error
    assert result.n_ties == 65
    ds = QuestionResult.objects.get(campaign__name="snow-rte", method="dawid_skene")
    assert ds.gold_accuracy > result.gold_accuracy
    agreement = AgreementResult.objects.get(campaign__name="snow-rte")
    assert agreement.fleiss_reason == ""  # ten judgments on every item
    assert agreement.fleiss_kappa == pytest.approx(agreement.alpha, abs=1e-3)


def test_snow_wsd_and_temp_majority_vote(crowd_data):
    wsd = import_labels(crowd_data / "snow2008/wsd.standardized.tsv", name="snow-wsd").campaign
    temp = import_labels(crowd_data / "snow2008/temp.standardized.tsv", name="snow-temp").campaign
    for campaign in (wsd, temp):
        campaign_results_compute(campaign=campaign, methods=["majority"])

    assert round(accuracy(wsd, "majority"), 3) == 0.994
    assert round(accuracy(temp, "majority"), 2) == 0.94  # published as "about 0.94"


def test_bluebirds_yaml_majority_vote_and_models(crowd_data):
    report = import_labels(
        crowd_data / "bluebirds/labels.yaml",
        truth=crowd_data / "bluebirds/gt.yaml",
        fmt="cubam",
        question_type="binary",
        name="bluebirds",
    )
    assert (report.items, report.gold_items, report.judgments, report.raters) == (
        108,
        108,
        4212,
        39,
    )

    campaign_results_compute(campaign=report.campaign, methods=["majority", "dawid_skene", "glad"])

    mv = accuracy(report.campaign, "majority")
    assert round(mv, 3) == 0.759
    assert round(1 - mv, 4) == 0.2407  # Zhang et al. 2016: 24.07 % error
    assert accuracy(report.campaign, "dawid_skene") > 0.88
    assert accuracy(report.campaign, "glad") == pytest.approx(78 / 108)


def test_spectral_em_web_majority_vote(crowd_data):
    report = import_labels(
        crowd_data / "spectral_em/web_crowd.txt",
        truth=crowd_data / "spectral_em/web_truth.txt",
        name="web",
    )
    assert (report.items, report.gold_items, report.judgments) == (2665, 2653, 15567)

    campaign_results_compute(campaign=report.campaign, methods=["majority"])

    assert round(1 - accuracy(report.campaign, "majority"), 4) == 0.2693  # Zhang et al. 26.93 %


def test_zheng_product_majority_vote_and_dawid_skene(crowd_data):
    folder = crowd_data / "zheng2017/d_jn-product"
    report = import_labels(folder / "answer.csv", truth=folder / "truth.csv", name="product")

    campaign_results_compute(campaign=report.campaign, methods=["majority", "dawid_skene"])

    assert round(accuracy(report.campaign, "majority"), 3) == 0.897  # Crowd-Kit paper
    assert accuracy(report.campaign, "dawid_skene") >= 0.940 - 0.01


def test_zheng_positive_sentiment_dawid_skene_and_mace(crowd_data):
    folder = crowd_data / "zheng2017/d_sentiment"
    report = import_labels(folder / "answer.csv", truth=folder / "truth.csv", name="possent")
    assert (report.items, report.judgments) == (1000, 20000)

    campaign_results_compute(campaign=report.campaign, methods=["majority", "dawid_skene", "mace"])

    assert accuracy(report.campaign, "dawid_skene") >= 0.960 - 0.01
    assert accuracy(report.campaign, "mace") >= 0.950 - 0.01
    # Ties split: 0.9335 (the paper's 0.932 broke its ties arbitrarily).
    assert accuracy(report.campaign, "majority") == pytest.approx(0.9335, abs=5e-5)


# Agreement: the worked examples ------------------------------------------------------------------


def agreement_of(report) -> AgreementResult:
    campaign_results_compute(campaign=report.campaign, methods=["majority"])
    return AgreementResult.objects.get(campaign=report.campaign)


def test_krippendorff_wikipedia_example_nominal_and_interval(crowd_data):
    path = crowd_data / "agreement/krippendorff_wikipedia_example.csv"

    nominal = agreement_of(import_labels(path, fmt="coders", name="kripp-nominal"))
    scale = agreement_of(
        import_labels(path, fmt="coders", name="kripp-scale", question_type="likert")
    )

    assert (nominal.level, round(nominal.alpha, 6)) == ("nominal", 0.691358)
    assert (scale.level, round(scale.alpha_interval, 6)) == ("ordinal", 0.810845)


def test_krippendorff_2011_codings_all_levels(crowd_data):
    path = crowd_data / "agreement/codings.csv"

    nominal = agreement_of(import_labels(path, fmt="coders", name="codings-nominal"))
    scale = agreement_of(
        import_labels(path, fmt="coders", name="codings-scale", question_type="likert")
    )

    assert round(nominal.alpha, 3) == 0.743
    assert round(scale.alpha, 3) == 0.815
    assert round(scale.alpha_interval, 3) == 0.849
    assert nominal.fleiss_kappa is None
    assert nominal.fleiss_reason == "items have different numbers of judgments"


def test_string_valued_codes(crowd_data):
    result = agreement_of(import_labels(crowd_data / "agreement/gcl.csv", fmt="coders", name="gcl"))
    assert round(result.alpha, 7) == 0.0833333


def test_fleiss_worked_examples(crowd_data):
    diagnoses = agreement_of(
        import_labels(crowd_data / "agreement/diagnoses.csv", fmt="subjects", name="diagnoses")
    )
    wikipedia = agreement_of(
        import_labels(
            crowd_data / "agreement/fleiss_wikipedia_example.csv",
            fmt="counts",
            name="fleiss-wikipedia",
        )
    )

    assert round(diagnoses.fleiss_kappa, 7) == 0.4302445
    assert round(wikipedia.fleiss_kappa, 3) == 0.210
    assert (wikipedia.n_items, wikipedia.n_judgments) == (10, 140)


# Bradley–Terry -----------------------------------------------------------------------------------


def golden(path) -> dict[str, float]:
    import csv

    with open(path) as fh:
        return {
            r["item"]: float(r["score"])
            for r in csv.DictReader(fh)
            if r["algorithm"] == "bradley_terry"
        }


def ranking_of(path, *, fmt, name, n_bootstrap=50) -> RankingResult:
    comparisons = crowd_formats.read_comparisons(path, fmt=fmt)
    report = crowd_comparisons_import(name=name, comparisons=comparisons, source=name)
    campaign_results_compute(
        campaign=report.campaign, methods=["majority"], n_bootstrap=n_bootstrap
    )
    return RankingResult.objects.get(campaign=report.campaign)


def scores(ranking) -> dict[str, float]:
    return {
        s.model_version.description: s.score
        for s in ranking.strengths.select_related("model_version")
    }


def test_food_bradley_terry_matches_evalica(crowd_data):
    ranking = ranking_of(crowd_data / "pairwise/food.csv", fmt="pairs", name="food")

    expected = golden(crowd_data / "pairwise/food-golden.csv")
    got = scores(ranking)
    assert list(got) == sorted(expected, key=expected.get, reverse=True)
    assert got == pytest.approx(expected, rel=1e-4)
    strengths = list(ranking.strengths.all())
    assert all(s.ci_low <= s.strength <= s.ci_high for s in strengths)
    assert (ranking.n_comparisons, ranking.regularization) == (30, 0.0)
    assert round(ranking.tie_share, 4) == round(2 / 30, 4)


def test_llmfao_bradley_terry_matches_evalica(crowd_data):
    ranking = ranking_of(
        crowd_data / "pairwise/llmfao.csv", fmt="pairs", name="llmfao", n_bootstrap=20
    )

    expected = golden(crowd_data / "pairwise/llmfao-golden.csv")
    got = scores(ranking)
    assert len(got) == 59
    assert got == pytest.approx(expected, rel=1e-4)
    assert list(got)[:3] == ["GPT 4", "Platypus-2 Instruct (70B)", "command"]
    assert ranking.n_comparisons == 8931
    assert round(ranking.tie_share, 4) == round(3471 / 8931, 4)


def test_baseball_bradley_terry_log_abilities(crowd_data):
    ranking = ranking_of(crowd_data / "pairwise/baseball.csv", fmt="pair_counts", name="baseball")

    strengths = {
        s.model_version.description: s.strength
        for s in ranking.strengths.select_related("model_version")
    }
    relative = {team: round(v - strengths["Baltimore"], 2) for team, v in strengths.items()}
    assert relative == {  # Agresti (2002) Table 10.11, Baltimore = 0
        "Milwaukee": 1.58,
        "Detroit": 1.44,
        "Toronto": 1.29,
        "New York": 1.25,
        "Boston": 1.11,
        "Cleveland": 0.68,
        "Baltimore": 0.0,
    }


def test_citations_bradley_terry(crowd_data):
    ranking = ranking_of(
        crowd_data / "pairwise/citations.csv", fmt="pair_counts", name="citations", n_bootstrap=10
    )

    strengths = {
        s.model_version.description: s.strength
        for s in ranking.strengths.select_related("model_version")
    }
    relative = {k: round(v - strengths["Biometrika"], 4) for k, v in strengths.items()}
    assert relative == {
        "Biometrika": 0.0,
        "Comm Statist": -2.9491,
        "JASA": -0.4796,
        "JRSS-B": 0.2690,
    }
