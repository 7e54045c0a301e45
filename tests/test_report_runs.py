"""The report's run reader (`tools/report/runs.py`) on hand-made run folders: every figure, table, plot input and
viewer row it takes from a folder, each folder kind told apart, and each damaged folder refused with one line.

The plots are replaced by recorders of what they were given (the drawing itself is matplotlib's, and the page's
tests render it in a browser), so each plot's input is compared exactly."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from test_comparison import HEADERS

from retrosearch.data.inputs import DataError
from retrosearch.tools.report import runs

T = "<think>\n\n"
END = "\n\n</think>\n\nthe answer is \\boxed{7}"
ORIGINAL = T + "first\n\nWait , second\n\nthird\n\nAlternatively , fourth\n\nWait , fifth" + END
REVISED = T + "first\n\nWait , second\n\nthird goes on" + END
MANIFEST = {
    "command": "revise",
    "model": "organism",
    "input": "traces.jsonl",
    "started": "2026-01-01T00:00:00+00:00",
    "finished": "2026-01-01T00:01:00+00:00",
    "command_line": "retrosearch revise --input traces.jsonl",
    "config_hash": "0123456789abcdef",
    "versions": {"python": "3.11.9", "vllm": None, "torch": "2.13.0"},
    "config": {"RetroSearchConfig": {"keywords": ["Wait", "Hmm"], "length_unit": "steps"}},
}


@pytest.fixture(autouse=True)
def recorded_plots(monkeypatch):
    """Each plot function of the reader returns (its name, its arguments as given)."""
    names = ("length_histogram", "switch_positions", "keyword_bars", "correct_histogram", "model_bars", "cost_scatter")
    for name in names:
        monkeypatch.setattr(runs, name, lambda *args, _name=name: (_name, *args))


def write_folder(folder: Path, rows: list[dict] | None, file: str, summary: dict | None, manifest: dict | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if rows is not None:
        (folder / file).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def revision(switch_index: int, length_before: int) -> dict:
    return {"switch_index": switch_index, "length_before": length_before}


def revise_rows() -> list[dict]:
    common = {"problem": "find x", "gold": "7", "original": ORIGINAL}
    return [
        {
            **common,
            "id": "a",
            "status": "revised",
            "reason": "shorter correct rollout accepted",
            "revised": REVISED,
            "tokens_before": 40,
            "tokens_after": 25,
            "switches_before": 3,
            "switches_after": 1,
            "revisions": [revision(2, 5), revision(3, 4)],
        },
        {
            **common,
            "id": "b",
            "status": "unchanged",
            "reason": "no shorter correct rollout",
            "revised": ORIGINAL,
            "tokens_before": 40,
            "tokens_after": 40,
            "switches_before": 3,
            "switches_after": 3,
            "revisions": [],
        },
        {**common, "id": "c", "status": "skipped", "reason": "original answer wrong", "revised": None},
        {"id": 4, "status": "error", "reason": "engine failed", "problem": {"text": "é"}},
    ]


REVISE_SUMMARY = {
    "revised": 1,
    "samples": 4,
    "tokens_before_mean": 40.0,
    "tokens_after_mean": 32.5,
    "tokens_ratio": 0.8125,
    "switches_before_mean": 3.0,
    "switches_after_mean": 2.0,
    "skipped": {"original answer wrong": 1, "no final answer": 2},
    "errors": 1,
    "wall_seconds": 12.5,
    "wall_seconds_all_runs": 40.0,
    "resumed_samples": 0,
}


def test_a_revise_run_gives_its_figures_tables_plot_inputs_and_settings(tmp_path):
    folder = write_folder(tmp_path / "run", revise_rows(), "revised.jsonl", REVISE_SUMMARY, MANIFEST)
    section, viewer = runs.revise_section(folder, 10)
    assert section.title == "Retro-Search"
    assert section.figures == REVISE_SUMMARY
    assert section.config == MANIFEST["config"]
    assert section.facts == {
        "model": "organism",
        "input": "traces.jsonl",
        "command line": "retrosearch revise --input traces.jsonl",
        "config hash": "0123456789abcdef",
        "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T00:01:00+00:00",
        "wall seconds (this run)": 12.5,
        "wall seconds (all runs)": 40.0,
        "rows resumed from an earlier run": 0,
        "versions": "python 3.11.9, torch 2.13.0",
    }
    (table,) = section.tables
    assert table.title == "Rows by status and reason" and table.headers == ["status", "reason", "rows"]
    assert table.rows == [
        ["error", "engine failed", 1],
        ["revised", "shorter correct rollout accepted", 1],
        ["skipped", "original answer wrong", 1],
        ["unchanged", "no shorter correct rollout", 1],
    ]
    lengths, positions, keywords = section.plots
    assert lengths == ("length_histogram", [40, 40], [25, 40])
    assert positions == ("switch_positions", [2 / 5, 3 / 4], "steps")
    # the manifest's keywords count ("Alternatively" is none of them); the first step is never a switch
    assert keywords == ("keyword_bars", Counter({"Wait": 4}), Counter({"Wait": 3}))
    assert section.headline == [
        ("revised", "1 of 4"),
        ("tokens per trace", "40.0 → 32.5 (0.812×)"),
        ("switches per trace", "3.00 → 2.00"),
        ("skipped / errors", "3 / 1"),
    ]
    assert viewer.mode == "compare" and viewer.group_label == "reason" and viewer.total == 4


def test_the_viewer_rows_of_a_revise_run_hold_each_rows_fields(tmp_path):
    folder = write_folder(tmp_path / "run", revise_rows(), "revised.jsonl", REVISE_SUMMARY, MANIFEST)
    _, viewer = runs.revise_section(folder, 10)
    by_id = {row["id"]: row for row in viewer.rows}
    assert sorted(row["n"] for row in viewer.rows) == [0, 1, 2, 3]
    revised = by_id["a"]
    before, after = runs.compare(ORIGINAL, REVISED, runs.with_keywords(["Wait", "Hmm"]), 200_000)
    assert revised == {
        "n": 0,
        "id": "a",
        "status": "revised",
        "group": "shorter correct rollout accepted",
        "problem": "find x",
        "gold": "7",
        "answer_before": "7",
        "answer_after": "7",
        "checked": "both answers checked correct by the run",
        "tokens_before": 40,
        "tokens_after": 25,
        "switches_before": 3,
        "switches_after": 1,
        "revisions": 2,
        "original": before,
        "revised": after,
    }
    assert by_id["b"]["checked"] == "both answers checked correct by the run" and by_id["b"]["revisions"] == 0
    skipped = by_id["c"]
    assert skipped["checked"] == "" and skipped["answer_after"] == "" and skipped["revised"] == [("kept", 0, "")]
    assert skipped["tokens_before"] is None and skipped["revisions"] == 0
    error = by_id["4"]  # an id that is no string, a problem that is an object: shown as text, never dropped
    assert error["problem"] == '{"text": "é"}' and error["gold"] == "" and error["original"] == [("kept", 0, "")]


def test_the_viewer_gets_a_seeded_sample_in_sample_order_and_says_how_many_rows_the_run_has(tmp_path):
    rows = [{"id": f"r{index}", "status": "skipped", "reason": "x"} for index in range(30)]
    folder = write_folder(tmp_path / "run", rows, "revised.jsonl", {}, None)
    _, viewer = runs.revise_section(folder, 7)
    order = runs._chosen(30, 7)
    assert viewer.total == 30 and [row["n"] for row in viewer.rows] == order
    assert [row["id"] for row in viewer.rows] == [f"r{index}" for index in order]
    assert order == runs._chosen(30, 30)[:7] != list(range(7))  # one seeded order; any prefix is the sample
    _, everything = runs.revise_section(folder, 100)
    assert sorted(row["n"] for row in everything.rows) == list(range(30))


def test_switch_positions_in_tokens_come_from_the_first_revision_over_the_originals_steps(tmp_path):
    manifest = {"config": {"RetroSearchConfig": {"length_unit": "tokens"}}}
    rows = revise_rows()[:2]
    folder = write_folder(tmp_path / "run", rows, "revised.jsonl", {}, manifest)
    section, _ = runs.revise_section(folder, 10)
    # the first revision only, over the original's 7 steps (the blank ones at either end of the thinking count)
    assert section.plots[1] == ("switch_positions", [2 / 7], "tokens")
    manifest = {"config": {}}
    rows[0]["revisions"] = [revision(3, 0)]  # a length of 0 counts as 1
    folder = write_folder(tmp_path / "steps", rows, "revised.jsonl", {}, manifest)
    section, _ = runs.revise_section(folder, 10)
    assert section.plots[1] == ("switch_positions", [3.0], "steps")
    assert section.plots[2][1] == Counter({"Wait": 4, "Alternatively": 2})  # the default keywords without a manifest


def test_a_revise_headline_without_token_or_switch_figures_says_only_what_it_has(tmp_path):
    folder = write_folder(tmp_path / "run", [], "revised.jsonl", {}, None)
    section, viewer = runs.revise_section(folder, 10, "Retro-Search (stage revise)")
    assert section.title == "Retro-Search (stage revise)"
    assert section.headline == [("revised", "0 of 0"), ("skipped / errors", "0 / 0")]
    assert viewer.rows == [] and viewer.total == 0
    assert section.facts["versions"] == "" and section.config == {}


@pytest.mark.parametrize(
    "row",
    [
        {"status": "revised", "original": ORIGINAL, "revised": REVISED, "tokens_after": 1, "revisions": []},
        {"status": "unchanged", "tokens_before": 1, "tokens_after": 1, "original": None, "revised": ORIGINAL},
        {"status": "revised", "tokens_before": 1, "tokens_after": 1, "original": ORIGINAL, "revised": REVISED},
        {
            "status": "revised",
            "tokens_before": 1,
            "tokens_after": 1,
            "original": 3,
            "revised": REVISED,
            "revisions": [],
        },
    ],
)
def test_a_searched_row_without_its_figures_is_one_line_naming_it(tmp_path, row):
    folder = write_folder(tmp_path / "run", [{"status": "skipped"}, row], "revised.jsonl", {}, None)
    with pytest.raises(DataError, match=r"revised\.jsonl:2: not a row of revised\.jsonl; is this a revise run\?"):
        runs.revise_section(folder, 10)


def sample(index: int, **fields) -> dict:
    text = T + "a\n\nWait , b\n\nHmm , c" + END
    return {"id": f"s{index}", "problem": "find x", "answer": "7", "response": text, "tokens": 10 + index, **fields}


SAMPLES = [
    sample(0, correct=True, predicted="7", switches=2),
    sample(1, correct=False, predicted="3", switches=2),
    sample(2, correct=False, truncated=True, predicted=None, switches=2),
    {"id": "s3", "status": "error", "reason": "engine failed", "problem": "find x", "answer": "7"},
]
GENERATE_SUMMARY = {"correct": 1, "samples": 4, "accuracy": 0.25, "tokens_mean": 11.0, "switches_mean": 2.0}


def test_a_generate_run_gives_its_headline_plot_inputs_and_one_viewer_row_per_sample(tmp_path):
    manifest = {"command": "generate", "problems": "problems.jsonl", "config": {"GenerateConfig": {}}}
    folder = write_folder(tmp_path / "gen", SAMPLES, "samples.jsonl", GENERATE_SUMMARY, manifest)
    section, viewer = runs.generate_section(folder, 10)
    assert section.title == "Generation" and section.figures == GENERATE_SUMMARY
    assert section.config == {"GenerateConfig": {}} and section.facts["input"] == "problems.jsonl"
    assert section.plots == [
        ("correct_histogram", [10], [11, 12]),
        ("keyword_bars", Counter({"Wait": 3, "Hmm": 3})),
    ]
    assert section.headline == [
        ("correct", "1 of 4"),
        ("accuracy", "0.250"),
        ("tokens per sample", "11.0"),
        ("switches per sample", "2.00"),
    ]
    assert viewer.mode == "single" and viewer.group_label == "reason" and viewer.total == 4
    by_id = {row["id"]: row for row in viewer.rows}
    first = by_id["s0"]
    assert first == {
        "n": 0,
        "id": "s0",
        "status": "correct",
        "group": "",
        "problem": "find x",
        "gold": "7",
        "answer_after": "7",
        "checked": "checked correct",
        "tokens_after": 10,
        "switches_after": 2,
        "revised": runs.single(SAMPLES[0]["response"], runs.with_keywords(None), runs.MAX_TRACE_CHARS),
    }
    assert (by_id["s1"]["status"], by_id["s1"]["checked"]) == ("incorrect", "checked wrong")
    assert (by_id["s2"]["status"], by_id["s2"]["checked"], by_id["s2"]["answer_after"]) == ("truncated", "", "")
    assert (by_id["s3"]["status"], by_id["s3"]["group"], by_id["s3"]["revised"]) == (
        "error",
        "engine failed",
        [("kept", 0, "")],
    )


def test_a_generate_headline_of_an_empty_summary_shows_zeros(tmp_path):
    folder = write_folder(tmp_path / "gen", [], "samples.jsonl", {}, None)
    section, _ = runs.generate_section(folder, 10)
    assert section.headline == [
        ("correct", "0 of 0"),
        ("accuracy", "0.000"),
        ("tokens per sample", "0.0"),
        ("switches per sample", "0.00"),
    ]


@pytest.mark.parametrize("missing", ["correct", "tokens", "response"])
def test_a_sample_without_its_figures_is_one_line_naming_it(tmp_path, missing):
    row = {key: value for key, value in SAMPLES[0].items() if key != missing}
    folder = write_folder(tmp_path / "gen", [row], "samples.jsonl", {}, None)
    with pytest.raises(DataError, match=r"samples\.jsonl:1: not a generated sample; is this a generate run\?"):
        runs.generate_section(folder, 10)


def eval_folder(folder: Path, with_samples: tuple[str, ...]) -> Path:
    figures = {"problems": 2, "samples": 4, "accuracy": 0.5, "pass@k": 1.0, "tokens_mean": 11.0}
    benchmarks = {"math500": {**figures, "switches_mean": 2.0, "truncated": 1}, "aime24": {**figures, "truncated": 0}}
    summary = {"model": "student", "k": 2, "benchmarks": benchmarks}
    write_folder(folder, None, "", summary, {"command": "eval", "config": {"EvalConfig": {"k": 2}}})
    for name in with_samples:
        write_folder(folder / name / "generate", SAMPLES[:2], "samples.jsonl", None, None)
    return folder


def test_an_eval_run_gives_its_benchmark_table_and_a_viewer_over_every_benchmarks_samples(tmp_path):
    section, viewer = runs.eval_section(eval_folder(tmp_path / "eval", ("math500", "aime24")), 10)
    assert section.title == "Evaluation" and section.config == {"EvalConfig": {"k": 2}}
    (table,) = section.tables
    assert table.title == "Model student"
    assert table.headers == [
        "benchmark",
        "problems",
        "samples",
        "accuracy",
        "pass@2",
        "avg tokens",
        "avg switches",
        "truncated",
    ]
    assert table.rows == [["math500", 2, 4, 0.5, 1.0, 11.0, 2.0, 1], ["aime24", 2, 4, 0.5, 1.0, 11.0, None, 0]]
    assert section.plots == [
        ("correct_histogram", [10, 10], [11, 11]),
        ("keyword_bars", Counter({"Wait": 4, "Hmm": 4})),
    ]
    assert viewer.mode == "single" and viewer.group_label == "benchmark" and viewer.total == 4
    assert sorted((row["n"], row["group"]) for row in viewer.rows) == [
        (0, "math500"),
        (1, "math500"),
        (2, "aime24"),
        (3, "aime24"),
    ]


def test_an_eval_run_without_sample_files_has_its_table_and_no_viewer(tmp_path):
    folder = eval_folder(tmp_path / "eval", ())
    section, viewer = runs.eval_section(folder, 10)
    assert viewer is None and section.plots == [] and len(section.tables[0].rows) == 2
    _, viewer = runs.eval_section(eval_folder(tmp_path / "one", ("aime24",)), 10)
    assert viewer.total == 2 and {row["group"] for row in viewer.rows} == {"aime24"}
    (folder / "summary.json").write_text(json.dumps({"benchmarks": {}}))
    section, _ = runs.eval_section(folder, 10)
    assert section.tables[0].title == "Model ?" and section.tables[0].headers[4] == "pass@k"


def recipe_folder(folder: Path, table: list[str] | None) -> Path:
    bench = {"accuracy": 0.5, "tokens_mean": 100.0, "switches_mean": 2.0, "truncated": 1}
    other = {"accuracy": 0.25, "tokens_mean": 50.0, "switches_mean": 1.0, "truncated": 2}
    results = {
        "teacher": {"traces": 10},
        "revise": {"revised": 1},
        "original": {"benchmarks": {"math500": bench, "aime24": other}},
        "student": {"benchmarks": {"math500": other}},
    }
    summary = {"recipe": "self-improve.yaml", "results": results, "stage_seconds": {"revise": 1.25, "eval": 2.5}}
    if table is not None:
        summary["table"] = table
    write_folder(folder, None, "", None, None)
    (folder / "recipe_summary.json").write_text(json.dumps(summary))
    write_folder(folder / "revise", revise_rows()[:1], "revised.jsonl", REVISE_SUMMARY, MANIFEST)
    return folder


def test_a_recipe_folder_gives_the_papers_table_its_stages_and_its_revise_stage(tmp_path):
    sections, viewer = runs.recipe_sections(recipe_folder(tmp_path / "recipe", None), 10)
    recipe, revise = sections
    assert recipe.title == "Recipe"
    assert recipe.facts == {"recipe": "self-improve.yaml", "wall seconds (all stages)": 3.8}
    table, stages = recipe.tables
    assert table.headers == HEADERS  # the recipe's own table
    # a recipe run before comparisons were recorded: figures without changes
    assert table.rows == [
        ["original", "0.375", "", "75.0", "", "", "", "1.50", 3],
        ["student", "0.250", "", "50.0", "", "", "", "1.00", 2],
    ]
    assert (stages.title, stages.headers, stages.rows) == (
        "Stages",
        ["stage", "seconds"],
        [["revise", 1.25], ["eval", 2.5]],
    )
    assert recipe.plots == [("model_bars", ["original", "student"], [0.375, 0.25], [75.0, 50.0])]
    assert revise.title == "Retro-Search (stage revise)" and revise.figures == REVISE_SUMMARY
    assert viewer.mode == "compare" and viewer.total == 1


def test_a_recipe_folder_shows_its_recorded_comparison_and_spread_over_seeds(tmp_path):
    from retrosearch.pipelines.comparison import compare_models, over_seeds

    folder = recipe_folder(tmp_path / "recipe", ["original", "student"])
    summary = json.loads((folder / "recipe_summary.json").read_text())
    comparison = compare_models(["original", "student"], "original", summary["results"], {"student": 512}, {})
    summary.update(comparison=comparison, over_seeds=over_seeds({"run": comparison, "run-seed2": comparison}))
    (folder / "recipe_summary.json").write_text(json.dumps(summary))
    (recipe, _), _ = runs.recipe_sections(folder, 10)
    table, seeds, _ = recipe.tables
    assert table.rows[1] == ["student", "0.250", "-12.5", "50.0", "0.667×", "", 512, "1.00", 2]
    assert seeds.title == "Over the recipe's seed runs (mean ± standard deviation)"
    assert seeds.rows[1][:4] == ["student", 2, "0.250 ± 0.000", "-12.5 ± 0.0"]


def test_a_recipe_table_follows_the_recipes_order_and_a_recipe_without_models_has_no_plot(tmp_path):
    sections, _ = runs.recipe_sections(recipe_folder(tmp_path / "recipe", ["student", "teacher", "gone"]), 10)
    assert [row[0] for row in sections[0].tables[0].rows] == ["student"]
    sections, _ = runs.recipe_sections(recipe_folder(tmp_path / "all", []), 10)  # no order given: every model
    assert [row[0] for row in sections[0].tables[0].rows] == ["original", "student"]
    sections, _ = runs.recipe_sections(recipe_folder(tmp_path / "bare", ["teacher"]), 10)
    assert sections[0].tables[0].rows == [] and sections[0].plots == []
    (tmp_path / "bare" / "recipe_summary.json").write_text("{}")
    sections, viewer = runs.recipe_sections(tmp_path / "bare", 10)
    assert len(sections) == 1 and viewer is None
    assert sections[0].facts == {"recipe": None, "wall seconds (all stages)": 0}


def test_the_command_that_made_a_folder_is_its_manifests_or_told_by_what_it_holds(tmp_path):
    def folder(name: str, files: dict[str, str]) -> Path:
        path = tmp_path / name
        path.mkdir()
        for file, text in files.items():
            (path / file).write_text(text)
        return path

    assert (
        runs.command_of(folder("recorded", {"manifest.json": '{"command": "merge"}', "samples.jsonl": ""})) == "merge"
    )
    assert runs.command_of(folder("recipe", {"recipe_summary.json": "{}", "revised.jsonl": ""})) == "run"
    assert (
        runs.command_of(folder("revise", {"manifest.json": "{}", "revised.jsonl": "", "samples.jsonl": ""})) == "revise"
    )
    assert (
        runs.command_of(folder("generate", {"samples.jsonl": "", "summary.json": '{"benchmarks": {}}'})) == "generate"
    )
    assert runs.command_of(folder("eval", {"summary.json": '{"benchmarks": {}}'})) == "eval"
    assert runs.command_of(folder("other", {"summary.json": '{"samples": 1}'})) is None
    assert runs.command_of(folder("empty", {})) is None


def test_read_run_picks_the_report_by_command_and_titles_it_by_the_folder(tmp_path):
    revise = write_folder(tmp_path / "my-revise", revise_rows(), "revised.jsonl", REVISE_SUMMARY, MANIFEST)
    report = runs.read_run(revise, 10)
    assert report.title == "Retro-Search my-revise" and report.folder == revise
    assert [section.title for section in report.sections] == ["Retro-Search"] and report.viewer.total == 4
    merged = write_folder(tmp_path / "merged", revise_rows(), "revised.jsonl", {}, {**MANIFEST, "command": "merge"})
    assert runs.read_run(merged, 10).title == "Retro-Search merged"
    generated = write_folder(tmp_path / "gen", SAMPLES, "samples.jsonl", GENERATE_SUMMARY, {"command": "generate"})
    assert runs.read_run(generated, 2).title == "Generation gen" and len(runs.read_run(generated, 2).viewer.rows) == 2
    assert runs.read_run(eval_folder(tmp_path / "ev", ()), 10).title == "Evaluation ev"
    recipe = runs.read_run(recipe_folder(tmp_path / "rec", None), 10)  # a recipe folder has no summary.json
    assert recipe.title == "Recipe rec" and [s.title for s in recipe.sections] == [
        "Recipe",
        "Retro-Search (stage revise)",
    ]
    assert recipe.folder == tmp_path / "rec" and recipe.viewer.total == 1
    rows = [{"id": f"r{n}", "status": "skipped", "reason": "x"} for n in range(5)]
    (tmp_path / "rec" / "revise" / "revised.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert len(runs.read_run(tmp_path / "rec", 2).viewer.rows) == 2


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, "no such run folder; give the folder a revise, cut, generate, eval or run wrote"),
        ({"revised.jsonl": ""}, "no summary.json; the run has not finished (rerun its command to finish it)"),
        (
            {"summary.json": "{}", "manifest.json": '{"command": "select"}'},
            "a select run; a report shows a revise, merge, cut, generate, eval or recipe run folder",
        ),
        (
            {"summary.json": "{}"},
            "no run folder of retrosearch; a report shows a revise, merge, cut, generate, eval or recipe run folder",
        ),
    ],
)
def test_a_folder_no_report_can_show_is_one_line_saying_why(tmp_path, files, message):
    folder = tmp_path / "run"
    if files is not None:
        write_folder(folder, None, "", None, None)
        for name, text in files.items():
            (folder / name).write_text(text)
    with pytest.raises(DataError) as error:
        runs.read_run(folder, 10)
    assert str(error.value) == f"{folder}: {message}"


def test_damaged_files_of_a_run_are_one_line_each(tmp_path):
    folder = write_folder(tmp_path / "run", [], "revised.jsonl", None, None)
    (folder / "summary.json").write_text("{not json")
    with pytest.raises(DataError) as error:
        runs.revise_section(folder, 10)
    reason = "not JSON (Expecting property name enclosed in double quotes); is the run folder damaged?"
    assert str(error.value) == f"{folder / 'summary.json'}: {reason}"
    (folder / "summary.json").write_text("{}")
    (folder / "revised.jsonl").write_text('{"status": "skipped"}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"revised\.jsonl:2: a row must be a JSON object; is the run folder damaged\?"):
        runs.revise_section(folder, 10)


def test_rows_are_counted_and_read_past_blank_lines(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    assert runs._count_rows([path, path]) == 4
    assert [row for _, row in runs.read_rows(path)] == [{"a": 1}, {"a": 2}]
    path.write_text("")
    assert list(runs.read_rows(path)) == []


def test_rows_without_a_status_or_reason_count_apart_and_alike_rows_add_up(tmp_path):
    rows = [
        {"id": "a", "status": "skipped", "reason": "x"},
        {"id": "b", "status": "skipped", "reason": "x"},
        {"id": "c"},
    ]
    folder = write_folder(tmp_path / "run", rows, "revised.jsonl", {}, None)
    section, viewer = runs.revise_section(folder, 10)
    assert section.tables[0].rows == [["?", "", 1], ["skipped", "x", 2]]
    unanswered = {row["id"]: row for row in viewer.rows}["c"]
    assert (unanswered["answer_before"], unanswered["answer_after"], unanswered["status"]) == ("", "", "")


def test_an_eval_run_shows_its_facts_and_a_viewer_of_at_most_max_rows(tmp_path):
    folder = eval_folder(tmp_path / "eval", ("math500", "aime24"))
    (folder / "manifest.json").write_text(json.dumps({"command": "eval", "model": "student", "started": "t0"}))
    section, viewer = runs.eval_section(folder, 3)
    assert (section.facts["model"], section.facts["started"]) == ("student", "t0")
    assert viewer.total == 4 and len(viewer.rows) == 3


def test_a_recipe_shows_its_first_revise_or_merge_stage_with_at_most_max_rows(tmp_path):
    folder = recipe_folder(tmp_path / "recipe", None)
    assert runs.recipe_sections(folder, 10)[0][0].tables[0].title == (
        "The paper's table: each model averaged over its benchmarks"
    )
    rows = [{"id": f"r{n}", "status": "skipped", "reason": "x"} for n in range(5)]
    (folder / "revise" / "revised.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "revise" / "manifest.json").write_text(json.dumps({**MANIFEST, "command": "merge"}))
    summary = json.loads((folder / "recipe_summary.json").read_text())
    (folder / "recipe_summary.json").write_text(
        json.dumps({**summary, "results": {"merged": {}, **summary["results"]}})
    )
    (folder / "revise").rename(folder / "merged")
    sections, viewer = runs.recipe_sections(folder, 2)
    assert sections[1].title == "Retro-Search (stage merged)" and viewer.total == 5 and len(viewer.rows) == 2
    write_folder(folder / "revise-partial", revise_rows()[:3], "revised.jsonl", REVISE_SUMMARY, MANIFEST)
    summary["results"]["revise-partial"] = {}
    (folder / "recipe_summary.json").write_text(
        json.dumps({**summary, "results": {"merged": {}, **summary["results"]}})
    )
    sections, viewer = runs.recipe_sections(folder, 10)
    titles = [section.title for section in sections[1:]]
    assert titles == ["Retro-Search (stage merged)", "Retro-Search (stage revise-partial)"]  # every one, in order
    assert viewer.total == 5  # the first one's rows


def test_a_recipe_with_data_costs_plots_them_and_shows_its_cut_stages_rows(tmp_path):
    from retrosearch.pipelines.comparison import compare_models

    folder = recipe_folder(tmp_path / "recipe", ["original", "student"])
    summary = json.loads((folder / "recipe_summary.json").read_text())
    costs = {"student": {"generated_tokens": 900, "seconds": 12.0}}
    comparison = compare_models(["original", "student"], "original", summary["results"], {}, {}, costs)
    summary.update(comparison=comparison)
    summary["results"] = {"fcs": {"revised": 1}, **summary["results"]}  # a cut before Retro-Search
    (folder / "recipe_summary.json").write_text(json.dumps(summary))
    cut_manifest = {**MANIFEST, "command": "cut", "config": {"CutConfig": {"keywords": ["Alternatively"]}}}
    write_folder(folder / "fcs", revise_rows()[:2], "revised.jsonl", REVISE_SUMMARY, cut_manifest)
    (recipe, cut, revise), viewer = runs.recipe_sections(folder, 10)
    assert revise.title == "Retro-Search (stage revise)"
    assert recipe.tables[0].rows[1][-2:] == [900, "12.0"] and recipe.tables[0].rows[0][-2:] == ["", ""]
    assert recipe.plots[1] == ("cost_scatter", ["original", "student"], [0.375, 0.25], [75.0, 50.0], [None, 900])
    assert cut.title == "First-correct cut (stage fcs)" and cut.headline[0] == ("cut", "1 of 4")
    assert [plot[0] for plot in cut.plots] == ["length_histogram", "keyword_bars"]  # a cut revisits no switch
    assert cut.plots[1][1] == Counter({"Alternatively": 2})  # the cut's own keywords count its switches
    assert viewer.total == 1  # the viewer shows the Retro-Search stage's rows
    only_cut = recipe_folder(tmp_path / "cuts", ["original", "student"])
    (only_cut / "revise" / "manifest.json").write_text(json.dumps(cut_manifest))
    (_, section), viewer = runs.recipe_sections(only_cut, 10)
    assert section.title == "First-correct cut (stage revise)" and viewer.total == 1
    report = runs.read_run(folder / "fcs", 10)
    assert report.title == "First-correct cut fcs" and [s.title for s in report.sections] == ["First-correct cut"]


def test_the_cost_plot_draws_every_model_and_names_each_datas_cost():
    import base64

    from retrosearch.tools.report.plots import cost_scatter

    plot = cost_scatter(["base", "fcs", "revised"], [0.5, 0.55, 0.6], [100.0, 80.0, 70.0], [None, 0, 12345])
    svg = base64.b64decode(plot.uri.split(",", 1)[1]).decode()
    assert "base" in svg and "fcs (0 tokens)" in svg and "revised (12,345 tokens)" in svg
    assert plot.title == "Accuracy against length, with the data's cost"
