"""The paper's comparison of a recipe's models (`pipelines/comparison.py`) on hand-computed figures: changes from
the baseline per benchmark and averaged, the token cap, the SFT data's length change, and the spread over seed
runs; and a recipe's own plan giving each model its cap and its SFT data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrosearch.pipelines.comparison import (
    compare_models,
    over_seeds,
    seed_rows,
    seed_runs,
    table_rows,
    trained_on,
)
from retrosearch.pipelines.recipe import comparison_of, decontamination, final_table, load_recipe, plan


def bench(accuracy: float, tokens: float, switches: float = 2.0, truncated: int = 0) -> dict:
    return {"accuracy": accuracy, "tokens_mean": tokens, "switches_mean": switches, "truncated": truncated}


RESULTS = {
    "eval-original": {"benchmarks": {"math": bench(0.5, 200.0), "aime": bench(0.25, 400.0, 4.0, 1)}},
    "eval-revised": {"benchmarks": {"math": bench(0.6, 140.0), "aime": bench(0.2, 300.0, 1.0, 2)}},
}


def test_each_model_beside_the_baseline_in_points_and_ratios_per_benchmark_and_averaged():
    caps = {"eval-original": 512, "eval-revised": 512}
    data = {"eval-original": 250.0, "eval-revised": 150.0}
    comparison = compare_models(["eval-original", "eval-revised"], "eval-original", RESULTS, caps, data)
    assert comparison["baseline"] == "eval-original"
    revised = comparison["models"]["eval-revised"]
    assert revised["max_new_tokens"] == 512 and revised["sft_data_tokens_mean"] == 150.0
    assert revised["sft_data_tokens_ratio"] == 0.6
    assert revised["benchmarks"]["math"] == {
        **bench(0.6, 140.0),
        "accuracy_points": 10.0,
        "tokens_ratio": 0.7,
    }
    assert revised["benchmarks"]["aime"]["accuracy_points"] == -5.0
    assert revised["benchmarks"]["aime"]["tokens_ratio"] == 0.75
    # averaged first, then compared: (0.6 + 0.2) / 2 against (0.5 + 0.25) / 2; 220 tokens against 300
    assert revised["averaged"] == {
        "accuracy": pytest.approx(0.4),
        "tokens_mean": 220.0,
        "switches_mean": 1.5,
        "truncated": 2,
        "accuracy_points": 2.5,
        "tokens_ratio": 0.7333,
    }
    original = comparison["models"]["eval-original"]
    assert original["averaged"]["accuracy_points"] == 0.0 and original["averaged"]["tokens_ratio"] == 1.0
    assert original["sft_data_tokens_ratio"] == 1.0


def test_without_a_baseline_there_are_figures_and_no_changes():
    comparison = compare_models(["eval-revised"], None, RESULTS, {}, {})
    row = comparison["models"]["eval-revised"]
    assert "accuracy_points" not in row["averaged"] and "accuracy_points" not in row["benchmarks"]["math"]
    assert "sft_data_tokens_ratio" not in row and row["max_new_tokens"] is None
    headers, (line,) = table_rows(comparison)
    assert dict(zip(headers, line, strict=True)) == {
        "model": "eval-revised",
        "accuracy": "0.400",
        "Δ accuracy (points)": "",
        "avg tokens": "220.0",
        "tokens ×": "",
        "SFT data tokens ×": "",
        "max new tokens": "",
        "avg switches": "1.50",
        "truncated": 2,
    }


HEADERS = [
    "model",
    "accuracy",
    "Δ accuracy (points)",
    "avg tokens",
    "tokens ×",
    "SFT data tokens ×",
    "max new tokens",
    "avg switches",
    "truncated",
]


def test_the_table_row_gives_each_change_beside_its_figure():
    comparison = compare_models(
        ["eval-original", "eval-revised"], "eval-original", RESULTS, {"eval-revised": 512}, {"eval-revised": 1.0}
    )
    headers, rows = table_rows(comparison)
    assert headers == HEADERS
    assert rows[1] == ["eval-revised", "0.400", "+2.5", "220.0", "0.733×", "", 512, "1.50", 2]
    assert rows[0][2:5] == ["+0.0", "300.0", "1.000×"]


def test_a_model_is_matched_with_the_sft_stage_whose_folder_holds_it():
    outputs = {"sft-a": "runs/x/sft-a", "sft-ab": "runs/x/sft-ab", "eval": "runs/x/eval"}
    results = {"sft-a": {"completion_tokens_mean": 10.0}, "sft-ab": {"completion_tokens_mean": 20.0}, "eval": {}}
    assert trained_on("runs/x/sft-ab/final", outputs, results) == 20.0
    assert trained_on("runs/x/sft-a/final", outputs, results) == 10.0
    assert trained_on("organism", outputs, results) is None
    assert trained_on("runs/x/eval/model", outputs, results) is None  # a folder, but no sft stage's


def finished(folder: Path, comparison: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "recipe_summary.json").write_text(json.dumps({"comparison": comparison}))
    return folder


def test_seed_runs_are_the_folder_and_its_finished_repeats_beside_it(tmp_path):
    base = finished(tmp_path / "run", {})
    two, ten = finished(tmp_path / "run-seed2", {}), finished(tmp_path / "run-seed10", {})
    (tmp_path / "run-seed3").mkdir()  # not finished
    finished(tmp_path / "run-seedless", {})  # another recipe's folder
    finished(tmp_path / "run-seed2-copy", {})
    assert seed_runs(str(tmp_path / "run-seed2")) == [base, ten, two]
    assert seed_runs(str(tmp_path / "run")) == [base, ten, two]
    assert seed_runs(str(tmp_path / "other")) == []


def test_the_spread_over_seed_runs_of_every_change():
    def run(points: float, ratio: float, data: float) -> dict:
        averaged = {"accuracy": 0.5, "tokens_mean": 100.0, "accuracy_points": points, "tokens_ratio": ratio}
        return {"models": {"eval-revised": {"averaged": averaged, "sft_data_tokens_ratio": data}}}

    over = over_seeds({"r": run(1.0, 0.70, 0.6), "r-seed2": run(3.0, 0.74, 0.6), "r-seed3": run(2.0, 0.72, 0.66)})
    figures = over["eval-revised"]
    runs = ("r", "r-seed2", "r-seed3")
    assert figures["accuracy_points"] == {
        "mean": 2.0,
        "stdev": 1.0,
        "values": dict(zip(runs, (1.0, 3.0, 2.0), strict=True)),
    }
    assert figures["tokens_ratio"] == {
        "mean": 0.72,
        "stdev": 0.02,
        "values": dict(zip(runs, (0.7, 0.74, 0.72), strict=True)),
    }
    assert figures["sft_data_tokens_ratio"] == {
        "mean": 0.62,
        "stdev": 0.0346,
        "values": dict(zip(runs, (0.6, 0.6, 0.66), strict=True)),
    }
    assert figures["accuracy"] == {"mean": 0.5, "stdev": 0.0, "values": dict.fromkeys(runs, 0.5)}
    headers, (row,) = seed_rows(over)
    assert dict(zip(headers, row, strict=True)) == {
        "model": "eval-revised",
        "runs": 3,
        "accuracy": "0.500 ± 0.000",
        "Δ accuracy (points)": "+2.0 ± 1.0",
        "avg tokens": "100.0 ± 0.0",
        "tokens ×": "0.720× ± 0.020",
        "SFT data tokens ×": "0.620× ± 0.035",
    }
    (only,) = over_seeds({"r": run(1.0, 0.7, 0.6)}).values()
    assert only["tokens_ratio"] == {"mean": 0.7, "stdev": None, "values": {"r": 0.7}}


RECIPE = """
output: {output}
stages:
  - name: sft-original
    command: sft
    options: {{input: traces.jsonl, trace_field: original}}
  - name: sft-revised
    command: sft
    options: {{input: traces.jsonl, trace_field: revised}}
  - name: eval-original
    command: eval
    options: {{benchmarks: [organism], model: "{{sft-original}}/final", max_new_tokens: 300}}
  - name: eval-revised
    command: eval
    options: {{benchmarks: [organism], model: "{{sft-revised}}/final"}}
table: [eval-original, eval-revised]
baseline: eval-original
"""


def test_a_recipes_plan_gives_each_model_its_cap_and_its_sft_data(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(output=tmp_path / "run"))
    recipe = load_recipe(str(path))
    results = {
        "sft-original": {"completion_tokens_mean": 200.0},
        "sft-revised": {"completion_tokens_mean": 130.0},
        "eval-original": {"benchmarks": {"organism": bench(0.5, 100.0)}},
        "eval-revised": {"benchmarks": {"organism": bench(0.55, 80.0)}},
    }
    comparison = comparison_of(recipe, plan(recipe), results)
    revised = comparison["models"]["eval-revised"]
    assert comparison["models"]["eval-original"]["max_new_tokens"] == 300
    assert revised["max_new_tokens"] == 32768  # the engine's default cap
    assert (revised["sft_data_tokens_mean"], revised["sft_data_tokens_ratio"]) == (130.0, 0.65)
    assert revised["averaged"]["tokens_ratio"] == 0.8 and revised["averaged"]["accuracy_points"] == 5.0
    table = final_table(comparison, None, {})
    assert table.splitlines()[-1] == "| eval-revised | 0.550 | +5.0 | 80.0 | 0.800× | 0.650× | 32768 | 2.00 | 0 |"
    assert "seed runs" not in table
    with_seeds = final_table(comparison, over_seeds({"run": comparison, "run-seed2": comparison}), {})
    assert "over the recipe's seed runs (mean ± standard deviation):" in with_seeds
    assert "| eval-revised | 2 | 0.550 ± 0.000 | +5.0 ± 0.0 |" in with_seeds


def test_the_table_says_what_each_decontamination_removed():
    summary = {"rows": 1407, "contaminated": 3, "by_benchmark": {"math500": 2, "aime24": 1}}
    results = {
        "decontaminate": {**summary, "dropped": 3, "against": {"aime24": 30, "math500": 500}},
        "listed": {**summary, "contaminated": 0, "by_benchmark": {}, "against": {"organism": 1702}},
        "sft": {"rows": 9},
    }
    steps = [("decontaminate", "decontaminate", {}), ("listed", "decontaminate", {}), ("sft", "sft", {})]
    found = decontamination(steps, results)
    assert found["decontaminate"] == {**summary, "removed": 3, "against": ["aime24", "math500"]}
    assert found["listed"]["removed"] is None and set(found) == {"decontaminate", "listed"}
    comparison = {"baseline": None, "models": {}}
    assert final_table(comparison, None, found).splitlines()[-3:] == [
        "",
        "- decontaminate: 3 of 1,407 rows removed as benchmark problems (2 math500, 1 aime24), checked against "
        "aime24, math500",
        "- listed: 0 of 1,407 rows matched (kept: the stage has no --drop) as benchmark problems, checked against "
        "organism",
    ]
    assert "decontamination" not in final_table(comparison, None, {})


def test_a_baseline_outside_the_table_is_refused(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(RECIPE.format(output=tmp_path / "run").replace("baseline: eval-original", "baseline: sft-original"))
    with pytest.raises(ValueError, match="baseline 'sft-original' is not in the table"):
        load_recipe(str(path))


def test_the_seeds_script_spreads_any_set_of_finished_runs(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_seeds.py"
    caps = {"eval-original": 512, "eval-revised": 512}
    one = compare_models(["eval-original", "eval-revised"], "eval-original", RESULTS, caps, {})
    shorter = {**RESULTS, "eval-revised": {"benchmarks": {"math": bench(0.6, 100.0), "aime": bench(0.2, 200.0)}}}
    two = compare_models(["eval-original", "eval-revised"], "eval-original", shorter, caps, {})
    folders = [str(finished(tmp_path / "a", one)), str(finished(tmp_path / "b-seed2", two))]
    done = subprocess.run([sys.executable, str(script), *folders], capture_output=True, text=True, check=True)
    ratio = json.loads(done.stdout)["eval-revised"]["tokens_ratio"]
    assert ratio == {"mean": 0.6166, "stdev": 0.165, "values": dict(zip(folders, (0.7333, 0.5), strict=True))}
    missing = subprocess.run(
        [sys.executable, str(script), folders[0], str(tmp_path / "c")], capture_output=True, text=True
    )
    assert missing.returncode == 1 and missing.stderr.startswith(f"recipe_seeds: {tmp_path / 'c'}: no comparison")


COSTED = (
    RECIPE
    + """
data_cost:
  eval-revised: [revise, sft-revised]
"""
)


def test_each_models_data_cost_sums_the_stages_that_made_its_data(tmp_path):
    path = tmp_path / "recipe.yaml"
    recipe_text = COSTED.format(output=tmp_path / "run").replace(
        "stages:\n", "stages:\n  - name: revise\n    command: revise\n    options: {input: traces.jsonl}\n"
    )
    path.write_text(recipe_text)
    recipe = load_recipe(str(path))
    results = {
        "revise": {"generated_tokens": 1200, "wall_seconds": 30.25},
        "sft-original": {"completion_tokens_mean": 200.0, "wall_seconds": 5.0},
        "sft-revised": {"completion_tokens_mean": 130.0, "wall_seconds": 4.5},
        "eval-original": {"benchmarks": {"organism": bench(0.5, 100.0)}},
        "eval-revised": {"benchmarks": {"organism": bench(0.55, 80.0)}},
    }
    comparison = comparison_of(recipe, plan(recipe), results)
    assert comparison["models"]["eval-revised"]["data_cost"] == {"generated_tokens": 1200, "seconds": 34.8}
    # trained on data no listed stage made: nothing beyond the original traces
    assert comparison["models"]["eval-original"]["data_cost"] == {"generated_tokens": 0, "seconds": 0.0}
    headers, rows = table_rows(comparison)
    assert headers[-2:] == ["data cost: generated tokens", "data cost: seconds"]
    assert [row[-2:] for row in rows] == [[0, "0.0"], [1200, "34.8"]]
    slower = comparison_of(recipe, plan(recipe), {**results, "revise": {"generated_tokens": 1000, "wall_seconds": 40}})
    over = over_seeds({"run": comparison, "run-seed2": slower})
    assert over["eval-revised"]["data_cost_generated_tokens"] == {
        "mean": 1100,
        "stdev": 141.4214,
        "values": {"run": 1200, "run-seed2": 1000},
    }
    headers, rows = seed_rows(over)
    assert headers[-2:] == ["data cost: generated tokens", "data cost: seconds"]
    assert rows[1][-2:] == ["1100 ± 141", "39.6 ± 6.9"]
    # a revise killed and resumed: every run's seconds, not only the last one's
    resumed = {**results, "revise": {"generated_tokens": 1200, "wall_seconds": 3.0, "wall_seconds_all_runs": 30.25}}
    assert comparison_of(recipe, plan(recipe), resumed)["models"]["eval-revised"]["data_cost"]["seconds"] == 34.8
    plain = comparison_of(load_recipe(str(_written(tmp_path, RECIPE))), plan(recipe), results)
    assert all("data_cost" not in model for model in plain["models"].values())
    assert "data cost" not in " ".join(table_rows(plain)[0])


def test_a_base_model_without_sft_data_has_no_data_cost():
    comparison = compare_models(
        ["base", "student"],
        None,
        {"base": RESULTS["eval-original"], "student": RESULTS["eval-revised"]},
        {},
        {"student": 100.0},
        {"student": {"generated_tokens": 5, "seconds": 1.0}},
    )
    assert comparison["models"]["base"]["data_cost"] is None
    assert [row[-2:] for row in table_rows(comparison)[1]] == [["", ""], [5, "1.0"]]
    over = over_seeds({"a": comparison, "b-seed2": comparison})
    assert "data_cost_seconds" not in over["base"] and over["student"]["data_cost_seconds"]["mean"] == 1.0
    assert [row[-2:] for row in seed_rows(over)[1]] == [["", ""], ["5 ± 0", "1.0 ± 0.0"]]


@pytest.mark.parametrize(
    ("data_cost", "error"),
    [
        ("  sft-revised: [revise]\n", "data_cost names 'sft-revised', not a stage of the table"),
        ("  eval-revised: [nowhere]\n", r"data_cost of 'eval-revised' takes a list of the recipe's stage names"),
        ("  eval-revised: sft-revised\n", r"data_cost of 'eval-revised' takes a list"),
    ],
)
def test_a_data_cost_naming_what_the_recipe_lacks_is_refused(tmp_path, data_cost, error):
    text = RECIPE + "data_cost:\n" + data_cost
    with pytest.raises(ValueError, match=error):
        load_recipe(str(_written(tmp_path, text)))


def _written(folder: Path, text: str) -> Path:
    path = folder / "plain.yaml"
    path.write_text(text.format(output=folder / "run"))
    return path
