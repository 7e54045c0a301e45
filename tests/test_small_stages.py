"""The small stages as run folders: `teacher`, `select` and `organism train` — what each summary says, what each
refuses in one line, and what each records as written (so `--overwrite` removes it and nothing else)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from retrosearch.cli import main
from retrosearch.data.inputs import DataError
from retrosearch.data.outputs import LEDGER
from retrosearch.organism.task import sample_problems
from retrosearch.organism.teacher import Habits, solve
from retrosearch.stages.select import SelectConfig, select
from retrosearch.stages.teacher import TeacherConfig, export_teacher, export_teacher_run

SAMPLE = {"id": "p#0", "problem_id": "p", "sample": 0, "problem": "q", "answer": "1", "response": "r"}
SAMPLE |= {"predicted": "1", "correct": True, "truncated": False, "tokens": 3, "switches": 0}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_teacher_writes_one_trace_per_problem_of_its_split_and_seed_with_its_habits(tmp_path):
    summary = export_teacher_run(TeacherConfig(output=str(tmp_path / "t"), count=5, split="test", seed=3), quiet=True)
    assert summary == {
        "traces": 5,
        "output": str(tmp_path / "t" / "traces.jsonl"),
        "wall_seconds": summary["wall_seconds"],
        "wall_seconds_all_runs": summary["wall_seconds"],
    }
    written = rows(tmp_path / "t" / "traces.jsonl")
    problems = sample_problems("test", 5, 3)
    assert [row["id"] for row in written] == [problem.id for problem in problems]
    rng = random.Random("teacher-test-3")  # the habits' draws follow the split and the seed too
    assert [row["response"] for row in written] == [solve(problem, rng).text for problem in problems]
    assert "traces.jsonl" in (tmp_path / "t" / LEDGER).read_text().splitlines()
    never = Habits(under_thinking=0.0, prune=0.0, over_thinking=0.0)
    assert export_teacher(tmp_path / "plain.jsonl", 5, "test", 3, never) == 5
    assert all(row["teacher"]["switches"] == row["teacher"]["lines"] - 1 for row in rows(tmp_path / "plain.jsonl"))
    other = export_teacher_run(TeacherConfig(output=str(tmp_path / "u"), count=5, split="test", seed=4), quiet=True)
    assert rows(Path(other["output"]))[0]["id"] != written[0]["id"]


def test_the_teacher_refuses_a_count_below_one_and_takes_overwrite(tmp_path):
    with pytest.raises(ValueError, match="--count must be at least 1"):
        TeacherConfig(count=0)
    config = TeacherConfig(output=str(tmp_path / "t"), count=2)
    export_teacher_run(config, quiet=True)
    (tmp_path / "t" / "traces.jsonl").write_text("")
    assert export_teacher_run(config, quiet=True)["traces"] == 2  # finished: its summary, the file left alone
    assert (tmp_path / "t" / "traces.jsonl").read_text() == ""
    export_teacher_run(TeacherConfig(output=str(tmp_path / "t"), count=2, overwrite=True), quiet=True)
    assert len(rows(tmp_path / "t" / "traces.jsonl")) == 2


def test_the_teacher_and_select_print_their_summaries_and_the_teacher_defaults_to_the_training_split(tmp_path, capsys):
    assert main(["organism", "teacher", "--count", "2", "--output", str(tmp_path / "t")]) == 0
    assert "traces" in capsys.readouterr().out
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps(SAMPLE) + "\n")
    assert main(["select", "--input", str(samples), "--output", str(tmp_path / "s")]) == 0
    assert "problems_with_a_correct_trace" in capsys.readouterr().out
    export_teacher(tmp_path / "default.jsonl", 3)
    export_teacher(tmp_path / "train.jsonl", 3, "train", 0, Habits())
    assert (tmp_path / "default.jsonl").read_text() == (tmp_path / "train.jsonl").read_text()


def test_select_names_a_missing_input_and_its_summary_names_its_traces(tmp_path):
    with pytest.raises(DataError) as error:
        select(SelectConfig(input="", output=str(tmp_path / "s")), quiet=True)
    assert str(error.value) == "--input: no such file; give the samples.jsonl of a generate run"
    with pytest.raises(DataError) as error:
        select(SelectConfig(input=str(tmp_path), output=str(tmp_path / "s")), quiet=True)  # a folder, no file
    assert str(error.value) == f"{tmp_path}: no such file; give the samples.jsonl of a generate run"
    with pytest.raises(ValueError, match="--shortest-correct-of must be at least 1"):
        SelectConfig(shortest_correct_of=0)
    source = tmp_path / "samples.jsonl"
    source.write_text(json.dumps(SAMPLE) + "\n")
    summary = select(SelectConfig(input=str(source), output=str(tmp_path / "s")), quiet=True)
    traces = str(tmp_path / "s" / "traces.jsonl")
    seconds = summary["wall_seconds"]
    assert summary == {
        "problems_with_a_correct_trace": 1,
        "traces": traces,
        "wall_seconds": seconds,
        "wall_seconds_all_runs": seconds,
    }
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert set(manifest["input_fingerprints"]) == {"input"}  # a changed samples file is another run


def test_organism_train_records_its_checkpoint_files_and_says_when_it_stopped_early(tmp_path):
    from retrosearch.organism.train_config import TrainConfig, TrainRun
    from retrosearch.stages.organism_train import train_run

    config = TrainConfig(steps=2, batch_size=2, eval_every=2, eval_problems=1, warmup_steps=1, threads=1)
    summary = train_run(TrainRun(output=str(tmp_path / "o")), config, quiet=True)
    assert summary["checkpoint"] == str(tmp_path / "o") and summary["step"] == 2
    assert summary["stopped_early"] is False
    ledger = set((tmp_path / "o" / LEDGER).read_text().splitlines())
    assert {"training_state.pt", "*.json", "*.safetensors", "*.jinja"} <= ledger
    written = {path.name for path in (tmp_path / "o").iterdir()}
    assert {"model.safetensors", "config.json", "chat_template.jinja"} <= written
    log = tmp_path / "o" / "training_log.jsonl"
    log.write_text(log.read_text() * 2)
    train_run(TrainRun(output=str(tmp_path / "o"), overwrite=True), config, quiet=True)
    assert len(log.read_text().splitlines()) == 1  # trained afresh, not the finished run returned
    assert not {path.name for path in (tmp_path / "o").iterdir()} - written  # --overwrite removed all it wrote
    stopped = TrainConfig(**{**config.__dict__, "steps": 4, "minutes": 0.0})
    assert train_run(TrainRun(output=str(tmp_path / "p")), stopped, quiet=True)["stopped_early"] is True
