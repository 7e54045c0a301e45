import json
from pathlib import Path

from retrosearch.cli import main
from retrosearch.tools.report import write_report

TINY = """
name: tiny
output: {output}
stages:
  - name: generate
    command: generate
    options: {{problems: "organism:train", limit: 6, samples: 2, keep_correct: true, max_new_tokens: 400}}
  - name: decontaminate
    command: decontaminate
    options: {{input: "{{generate}}/traces.jsonl", against: [organism], drop: true}}
  - name: revise
    command: revise
    options: {{input: "{{decontaminate}}/clean.jsonl", max_new_tokens: 400}}
  - name: shortest
    command: select
    options: {{input: "{{generate}}/samples.jsonl", shortest_correct_of: 2}}
  - name: sft-revised
    command: sft
    options: {{input: "{{revise}}/revised.jsonl", trace_field: revised, epochs: 1, batch_size: 16, max_length: 512}}
  - name: eval-revised
    command: eval
    options: {{benchmarks: [organism], model: "{{sft-revised}}/final", samples: 1, limit: 4, max_new_tokens: 400}}
table: [eval-revised]
"""


def test_a_recipe_runs_every_stage_and_resumes(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.format(output=tmp_path / "run"))
    assert main(["run", str(recipe)]) == 0
    *table, report_line = capsys.readouterr().out.splitlines()
    traces = len((tmp_path / "run" / "generate" / "traces.jsonl").read_text().splitlines())
    assert report_line == f"see the run in a browser: retrosearch report {tmp_path / 'run'}"
    assert [line for line in table if line.startswith("| eval-revised | ")]
    found = table.index("decontamination:")
    assert (
        table[found + 2]
        == f"- decontaminate: 0 of {traces} rows removed as benchmark problems, checked against organism"
    )
    runs = table[table.index("runs (`retrosearch show-config FOLDER` prints the command that reproduces each):") + 2 :]
    stages = ["generate", "decontaminate", "revise", "shortest", "sft-revised", "eval-revised"]
    hashes = [json.loads((tmp_path / "run" / stage / "manifest.json").read_text())["config_hash"] for stage in stages]
    assert runs == [
        f"- {stage}: {tmp_path / 'run' / stage} (config {digest})" for stage, digest in zip(stages, hashes, strict=True)
    ]
    summary = json.loads((tmp_path / "run" / "recipe_summary.json").read_text())
    assert set(summary["stage_seconds"]) == {
        "generate",
        "decontaminate",
        "revise",
        "shortest",
        "sft-revised",
        "eval-revised",
    }
    assert summary["table"] == ["eval-revised"]
    page = Path(write_report(tmp_path / "run")["report"]).read_text()
    accuracy = summary["results"]["eval-revised"]["benchmarks"]["organism"]["accuracy"]
    assert f'<td>eval-revised</td><td class="num">{accuracy:,.3f}</td>' in page  # the paper's table
    assert "Decontamination before SFT" in page and f'<td>decontaminate</td><td class="num">{traces}</td>' in page
    assert "Retro-Search (stage revise)" in page and page.count('<img src="data:image/svg+xml;base64,') == 4
    products = {
        path: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in (tmp_path / "run").rglob("*")
        if path.is_file() and path.suffix in (".jsonl", ".safetensors")
    }
    assert {path.name for path in products} >= {"samples.jsonl", "revised.jsonl", "model.safetensors"}

    def no_more_work(*args, **kwargs):
        raise AssertionError("a finished stage was run again")

    from transformers import Trainer

    from retrosearch.engines.transformers_engine import TransformersEngine

    monkeypatch.setattr(TransformersEngine, "generate", no_more_work)
    monkeypatch.setattr(TransformersEngine, "run_batch", no_more_work)
    monkeypatch.setattr(Trainer, "train", no_more_work)
    assert main(["run", str(recipe)]) == 0  # everything finished: the rerun only reads results
    assert capsys.readouterr().out.splitlines()[-2] == table[-1]
    for path, (content, modified) in products.items():
        assert path.read_bytes() == content, path
        if path.name in ("samples.jsonl", "revised.jsonl", "model.safetensors"):  # work, not derived files
            assert path.stat().st_mtime_ns == modified, path
    model = summary["comparison"]["models"]["eval-revised"]
    assert model["max_new_tokens"] == 400
    assert model["sft_data_tokens_mean"] == summary["results"]["sft-revised"]["completion_tokens_mean"] > 0
    # a repeat with --seed beside it: the table gains the mean and spread over both runs
    repeat = tmp_path / "run-seed7"
    repeat.mkdir()
    (repeat / "recipe_summary.json").write_text(json.dumps({"comparison": summary["comparison"]}))
    assert main(["run", str(recipe)]) == 0
    printed = capsys.readouterr().out
    assert "over the recipe's seed runs (mean ± standard deviation):" in printed
    assert "| eval-revised | 2 | " in printed
    recorded = json.loads((tmp_path / "run" / "recipe_summary.json").read_text())["over_seeds"]["eval-revised"]
    accuracy = round(model["averaged"]["accuracy"], 4)
    assert recorded["accuracy"]["values"] == {"run": accuracy, "run-seed7": accuracy}


def test_a_seed_repeats_a_recipe_in_a_folder_of_its_own(tmp_path):
    from retrosearch.pipelines.recipe import load_recipe, plan

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.format(output=tmp_path / "run"))
    seeded = load_recipe(str(recipe), seed=5)
    assert seeded.output == f"{tmp_path / 'run'}-seed5"
    options = {name: resolved for name, _, resolved in plan(seeded)}
    assert {name for name, resolved in options.items() if resolved.get("seed") == 5} == {
        "generate",
        "revise",
        "sft-revised",
        "eval-revised",
    }
    assert "seed" not in options["shortest"]  # select takes no seed
    assert options["revise"]["input"].startswith(f"{tmp_path / 'run'}-seed5/")
    assert load_recipe(str(recipe), output=str(tmp_path / "mine"), seed=5).output == str(tmp_path / "mine")


def test_a_stage_runs_under_its_launcher_and_the_plan_shows_it(tmp_path):
    import sys

    import pytest

    from retrosearch.pipelines.recipe import launched, run_recipe
    from retrosearch.stages.folder import RunError

    # the plainest launcher: the same Python, one process (accelerate and torchrun are measured elsewhere)
    summary = launched(sys.executable, "teacher", {"output": str(tmp_path / "t"), "count": 8, "split": "train"})
    assert summary == json.loads((tmp_path / "t" / "summary.json").read_text()) and summary["traces"] == 8
    with pytest.raises(RunError, match="exited with 2; rerun the recipe to resume the stage"):
        launched(sys.executable, "teacher", {"output": str(tmp_path / "u"), "count": 0})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY.format(output=tmp_path / "run"))
    plan = run_recipe(str(recipe), dry_run=True, sft_launcher="torchrun --nproc-per-node 2").splitlines()
    launched_lines = [line for line in plan if "-m retrosearch.cli" in line]
    assert [line.split(":")[0].strip() for line in launched_lines] == ["sft-revised"]
    assert launched_lines[0].split(": ", 1)[1].startswith("torchrun --nproc-per-node 2 -m retrosearch.cli sft --")
    own = TINY.replace("command: sft\n", "command: sft\n    launcher: ' '\n")
    recipe.write_text(own.format(output=tmp_path / "run"))
    with pytest.raises(ValueError, match="launcher is a command line"):
        run_recipe(str(recipe), dry_run=True)
