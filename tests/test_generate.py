"""`generate` on a user's own file, with a scripted engine: every field of every row, the requests the engine
got, the summary, a prompt the model cannot take, and which organism problems a seed picks."""

from __future__ import annotations

import json

import pytest
from scripted import PIECES, Script, ScriptedEngine

from retrosearch.engines import EngineConfig, SamplingConfig
from retrosearch.seeds import derive_seed
from retrosearch.stages.generate import LONGER_THAN_CONTEXT, GenerateConfig, generate

SHORT = "<think>\nso 4\n\nWait, yes 4\n</think>\n\nThe answer is \\boxed{4}"
LONG = "<think>\n" + "try 5 then 5 again\n\n" * 12 + "</think>\n\nThe answer is \\boxed{5}"
PROBLEMS = [
    {"key_x": "p-a", "text_x": "What is 2 + 2 ?", "gold_x": "4"},
    {"key_x": "p-b", "text_x": "What is 3 + 3 , said at more length than the first ?", "gold_x": "6"},
]


def tokens(text: str) -> int:
    return len(PIECES.findall(text))


def write_problems(path) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in PROBLEMS))
    return str(path)


RUN_FIGURES = {
    "problems",
    "samples",
    "correct",
    "accuracy",
    "truncated",
    "skipped",
    "errors",
    "error_ids",
    "traces_written",
    "tokens_mean",
    "switches_mean",
    "generated_tokens",
}


def respond(prompt: str, seed: int) -> list[str]:
    return [SHORT if "2 + 2" in prompt else LONG]


def run(tmp_path, name: str, engine: ScriptedEngine, **options) -> tuple[dict, dict]:
    config = GenerateConfig(
        problems=write_problems(tmp_path / "problems.jsonl"),
        output=str(tmp_path / name),
        samples=2,
        problem_field="text_x",  # names no reader would guess
        answer_field="gold_x",
        id_field="key_x",
        sampling=SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=40, seed=3),
        **options,
    )
    summary = generate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)
    rows = [json.loads(line) for line in (tmp_path / name / "samples.jsonl").read_text().splitlines()]
    return summary, {row["id"]: row for row in rows}


def test_every_field_of_every_row_the_requests_and_the_summary(tmp_path):
    engine = ScriptedEngine(respond)
    summary, rows = run(tmp_path, "run", engine)
    assert tokens(SHORT) < 40 < tokens(LONG)
    for sample in (0, 1):
        assert rows[f"p-a#{sample}"] == {
            "id": f"p-a#{sample}",
            "problem_id": "p-a",
            "sample": sample,
            "problem": "What is 2 + 2 ?",
            "answer": "4",
            "response": SHORT,
            "predicted": "4",
            "correct": True,
            "truncated": False,
            "tokens": tokens(SHORT),
            "switches": 1,
            "skipped": None,
            "details": {},
        }
        cut = rows[f"p-b#{sample}"]
        assert (cut["problem_id"], cut["answer"], cut["predicted"], cut["correct"]) == ("p-b", "6", None, False)
        assert (cut["truncated"], cut["tokens"], cut["switches"]) == (True, 40, 0)
    assert {(seen.request.temperature, seen.request.top_p, seen.request.max_new_tokens) for seen in engine.seen} == {
        (0.7, 0.9, 40)
    }
    assert sorted(seen.request.seed for seen in engine.seen) == sorted(
        derive_seed(3, problem, sample) for problem in ("p-a", "p-b") for sample in (0, 1)
    )
    assert {key: summary[key] for key in RUN_FIGURES} == {
        "problems": 2,
        "samples": 4,
        "correct": 2,
        "accuracy": 0.5,
        "truncated": 2,
        "skipped": {},
        "errors": 0,
        "error_ids": [],
        "traces_written": 4,
        "tokens_mean": (tokens(SHORT) + 40) / 2,
        "switches_mean": 0.5,
        "generated_tokens": 2 * tokens(SHORT) + 80,
    }
    traces = (tmp_path / "run" / "traces.jsonl").read_text().splitlines()
    assert len(traces) == 4
    kept_summary, _ = run(tmp_path, "kept", ScriptedEngine(respond), keep_correct=True)
    assert kept_summary["traces_written"] == 2
    assert [json.loads(line)["id"] for line in (tmp_path / "kept" / "traces.jsonl").read_text().splitlines()] == [
        "p-a#0",
        "p-a#1",
    ]


def test_a_prompt_that_fills_the_context_is_never_sent(tmp_path):
    engine = ScriptedEngine(respond)
    long_prompt = tokens(engine.chat_prompt(PROBLEMS[1]["text_x"]))
    engine.context_length = long_prompt  # not one token of an answer would fit
    summary, rows = run(tmp_path, "run", engine)
    assert rows["p-b#0"]["skipped"] == LONGER_THAN_CONTEXT
    assert rows["p-b#0"]["details"] == {"prompt_tokens": long_prompt, "context": long_prompt}
    assert (rows["p-b#1"]["response"], rows["p-b#1"]["tokens"], rows["p-b#1"]["correct"]) == ("", 0, False)
    assert rows["p-a#0"]["skipped"] is None and rows["p-a#0"]["correct"]
    assert {seen.prompt for seen in engine.seen} == {engine.chat_prompt(PROBLEMS[0]["text_x"])}
    assert summary["skipped"] == {LONGER_THAN_CONTEXT: 2} and summary["tokens_mean"] == tokens(SHORT)


def test_the_seed_picks_which_organism_problems_are_generated(tmp_path):
    def problem_ids(name: str, seed: int) -> set[str]:
        engine = ScriptedEngine(Script().otherwise(SHORT))
        config = GenerateConfig(
            problems="organism", output=str(tmp_path / name), limit=4, sampling=SamplingConfig(seed=seed)
        )
        generate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)
        lines = (tmp_path / name / "samples.jsonl").read_text().splitlines()
        return {json.loads(line)["problem_id"] for line in lines}

    first = problem_ids("seed0", 0)
    assert len(first) == 4
    assert problem_ids("seed0-again", 0) == first
    assert problem_ids("seed1", 1) != first


def test_a_run_whose_every_prompt_is_too_long_has_zero_figures(tmp_path):
    engine = ScriptedEngine(respond)
    engine.context_length = 1
    summary, rows = run(tmp_path, "run", engine)
    assert all(row["skipped"] == LONGER_THAN_CONTEXT for row in rows.values()) and not engine.seen
    assert (summary["accuracy"], summary["tokens_mean"], summary["switches_mean"]) == (0.0, 0.0, 0.0)
    assert summary["skipped"] == {LONGER_THAN_CONTEXT: 4} and summary["traces_written"] == 0


def test_the_manifest_and_the_progress_bar_count_correct_samples(tmp_path):
    import asyncio

    from retrosearch.data.inputs import ProblemRow
    from retrosearch.stages.generate import Job, Sampler

    run(tmp_path, "run", ScriptedEngine(respond))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["counts"] == {"samples": 4, "correct": 2, "errors": 0}
    sampler = Sampler(ScriptedEngine(respond), SamplingConfig(max_new_tokens=40))
    assert sampler.progress() == {"correct": 0}
    for index, (text, gold) in enumerate([("What is 2 + 2 ?", "4"), ("What is 3 + 3 ?", "6"), ("2 + 2 ?", "4")]):
        asyncio.run(sampler(Job(f"p{index}#0", ProblemRow(f"p{index}", text, gold), 0)))
    assert sampler.progress() == {"correct": 2}


def test_a_run_whose_every_row_failed_has_zero_figures_and_settings_below_one_are_refused():
    from retrosearch.runner import ErrorRow
    from retrosearch.stages.generate import summarize

    summary = summarize([ErrorRow("p#0", "engine failed"), ErrorRow("p#1", "engine failed")], 1, False)
    assert (summary["samples"], summary["errors"], summary["accuracy"], summary["correct"]) == (2, 2, 0.0, 0)
    for option in ("samples", "limit"):
        with pytest.raises(ValueError, match=f"--{option}"):
            GenerateConfig(**{option: 0})


def test_generate_prints_its_summary_unless_quiet(tmp_path, capsys):
    config = GenerateConfig(
        problems=write_problems(tmp_path / "problems.jsonl"),
        output=str(tmp_path / "run"),
        problem_field="text_x",
        answer_field="gold_x",
        id_field="key_x",
    )
    generate(config, EngineConfig(model="scripted"), engine=ScriptedEngine(respond))
    assert "accuracy" in capsys.readouterr().out
