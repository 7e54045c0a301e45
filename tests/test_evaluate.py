import json
from pathlib import Path

import pytest

from retrosearch.answers import _verify, is_correct
from retrosearch.engines import SamplingConfig
from retrosearch.pipelines.recipe import run_recipe
from retrosearch.runner import ErrorRow
from retrosearch.stages.eval import BENCHMARKS, EvalConfig, evaluate, gold_answer, load_benchmark, pass_at_k, score
from retrosearch.stages.folder import RunError
from retrosearch.stages.generate import SampleRow

# Known-equivalent answer forms, each pair taken from a real gold answer of ../shared/data/benchmarks.
EQUIVALENT = [
    ("math500", "\\$18.90", "18.9"),
    ("math500", "\\$32,\\!348", "32348"),
    ("math500", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
    ("math500", "\\frac{1}{2}", "0.5"),
    ("amc23", "27", "27.0"),
    ("gsm8k", "18", "18.0"),
    ("olympiadbench", "\\sqrt{2}-1, \\frac{3-\\sqrt{2}}{7}", "\\sqrt{2}-1,\\frac{3-\\sqrt{2}}{7}"),
]


def test_all_seven_files_parse_and_every_gold_verifies_against_itself(tmp_path):
    from tests.conftest import BENCHMARKS as folder

    if not folder.exists():
        pytest.skip(f"../shared/data/benchmarks is absent ({folder})")
    counts = {}
    for name in BENCHMARKS:
        rows, no_gold = load_benchmark(name, str(folder), None)
        counts[name] = (len(rows), no_gold)
        failures = [row.gold for row in rows if not _verify(row.gold, row.gold)]
        assert not failures, (name, failures[:5])
    assert counts == {
        "aime24": (30, 0),
        "aime25": (30, 0),
        "amc23": (40, 0),
        "math500": (500, 0),
        "gsm8k": (1319, 0),
        "olympiadbench": (675, 0),
        "gaokao2023en": (383, 2),
    }


@pytest.mark.parametrize(("benchmark", "gold", "predicted"), EQUIVALENT)
def test_known_equivalent_forms(benchmark, gold, predicted):
    assert is_correct(gold, predicted)


def test_gold_answers_are_normalized_per_benchmark():
    assert gold_answer("gsm8k", "She makes 9 * 2 = $18.\n#### 1,018") == "1018"
    assert gold_answer("amc23", 27.0) == "27"
    assert gold_answer("olympiadbench", ["$\\sqrt{2}-1$,$\\frac{3-\\sqrt{2}}{7}$"]) == (
        "\\sqrt{2}-1, \\frac{3-\\sqrt{2}}{7}"
    )


def test_avg_and_pass_at_k_come_from_one_function():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - (3 * 2) / (5 * 4))
    scores = score([[True, False, False, False], [False] * 4, [True] * 4], k=4)
    assert scores["avg@k"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert scores["pass@k"] == pytest.approx(2 / 3)


def test_eval_on_the_organism_writes_samples_summary_and_table(tmp_path, organism_engine, monkeypatch):
    from retrosearch.engines import EngineConfig

    def run(limit: int) -> dict:
        config = EvalConfig(
            benchmarks=("organism",),
            output=str(tmp_path),
            samples=2,
            limit=limit,
            sampling=SamplingConfig(max_new_tokens=400),
        )
        return evaluate(config, EngineConfig(model="organism"), engine=organism_engine, quiet=True)

    summary = run(8)
    result = summary["benchmarks"]["organism"]
    assert result["problems"] == 8 and result["samples"] == 16
    assert 0.0 <= result["accuracy"] <= result["pass@k"] <= 1.0
    samples_file = tmp_path / "organism" / "generate" / "samples.jsonl"
    samples = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert len(samples) == 16 and all("truncated" in s for s in samples)
    assert len((tmp_path / "organism" / "problems.jsonl").read_text().splitlines()) == 8
    table = (tmp_path / "results.md").read_text()
    assert table.splitlines()[0].startswith("| organism | accuracy (avg@2) | pass@2 | avg tokens")

    monkeypatch.setattr(organism_engine, "generate", None)  # a finished eval reruns without generating
    assert run(8) == summary
    with pytest.raises(RunError, match=r"other settings \(EvalConfig.limit\); pass --overwrite"):
        run(2)  # results follow their settings: 8 problems are never reported as the run of 2


@pytest.mark.parametrize(
    "recipe",
    [
        "recipes/self-improve/r1-distill-qwen-7b.yaml",
        "recipes/weak-to-strong/openthoughts-r1-distill-32b.yaml",
        "recipes/organism/self-improve.yaml",
        "recipes/organism/weak-to-strong.yaml",
        "recipes/organism/compare.yaml",
        "recipes/compare/r1-distill-qwen-7b.yaml",
    ],
)
def test_recipes_validate_without_loading_a_model(recipe):
    plan = run_recipe(str(Path(__file__).parents[1] / recipe), dry_run=True)
    assert "retrosearch eval" in plan and "retrosearch sft" in plan


def test_failed_samples_are_counted_not_scored():
    from retrosearch.stages.eval import summarize_samples

    rows = [
        SampleRow("p1#0", "p1", 0, "p", "1", "r", "1", correct=True, truncated=False, tokens=10, switches=1),
        ErrorRow("p1#1", "ServerError: gave up"),
        SampleRow("p2#0", "p2", 0, "p", "1", "r", "2", correct=False, truncated=True, tokens=20, switches=3),
    ]
    summary = summarize_samples(rows, 2)
    assert summary == {
        "problems": 2,
        "samples": 2,
        "accuracy": 0.5,
        "pass@k": 0.5,
        "tokens_mean": 15.0,
        "switches_mean": 2.0,
        "truncated": 1,
        "skipped": {},
        "failed_samples": 1,
    }
