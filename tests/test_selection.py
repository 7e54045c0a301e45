"""The shortest-correct-of-N baseline: one row per problem, the shortest correct of its first N samples."""

import json
from dataclasses import asdict

import pytest

from retrosearch.data.inputs import DataError
from retrosearch.search.shortest_of_n import shortest_correct_of_n
from retrosearch.stages.folder import RunError
from retrosearch.stages.generate import SampleRow
from retrosearch.stages.select import SelectConfig, select

ROWS = [
    {"problem_id": "a", "sample": 0, "correct": True, "tokens": 30},
    {"problem_id": "a", "sample": 1, "correct": True, "tokens": 20},
    {"problem_id": "a", "sample": 2, "correct": True, "tokens": 10},  # beyond N = 2
    {"problem_id": "b", "sample": 0, "correct": False, "tokens": 5},
    {"problem_id": "c", "sample": 1, "correct": True, "tokens": 7},
    {"problem_id": "c", "sample": 0, "correct": True, "tokens": 7},  # a tie: the earlier sample wins
    {"problem_id": "d", "sample": 0, "status": "error", "reason": "boom"},
    {"problem_id": "e", "sample": 1, "correct": True, "tokens": 3},
    {"problem_id": "e", "sample": 0, "correct": True, "tokens": 9, "status": "error"},
]


def test_the_shortest_correct_of_the_first_n_samples_per_problem():
    chosen = shortest_correct_of_n(ROWS, 2)
    assert [(r["problem_id"], r["sample"]) for r in chosen] == [("a", 1), ("c", 0), ("e", 1)]
    assert [(r["problem_id"], r["sample"]) for r in shortest_correct_of_n(ROWS, 3)] == [("a", 2), ("c", 0), ("e", 1)]
    assert [(r["problem_id"], r["sample"]) for r in shortest_correct_of_n(ROWS, 1)] == [("a", 0), ("c", 0)]
    assert shortest_correct_of_n([], 4) == []


def as_generate_row(row: dict) -> dict:
    """A row of a generate run's samples.jsonl with the figures of `row`."""
    row_id = f"{row['problem_id']}#{row['sample']}"
    if row.get("status") == "error":
        return {"id": row_id, "reason": "boom", "status": "error"}
    sample = SampleRow(row_id, row["problem_id"], row["sample"], "p", "1", "r", "1", row["correct"], False, 0, 0)
    return {**asdict(sample), "tokens": row["tokens"]}


def test_select_writes_the_chosen_rows_in_its_run_folder_and_a_rerun_reuses_them(tmp_path, capsys):
    source = tmp_path / "samples.jsonl"
    source.write_text("".join(json.dumps(as_generate_row(row)) + "\n" for row in ROWS))
    output = tmp_path / "out"
    summary = select(SelectConfig(input=str(source), output=str(output), shortest_correct_of=2), quiet=True)
    assert summary["problems_with_a_correct_trace"] == 3
    assert [json.loads(line)["tokens"] for line in (output / "traces.jsonl").read_text().splitlines()] == [20, 7, 3]
    assert select(SelectConfig(input=str(source), output=str(output), shortest_correct_of=2), quiet=True) == summary
    with pytest.raises(RunError, match=r"other settings \(SelectConfig.shortest_correct_of\)"):
        select(SelectConfig(input=str(source), output=str(output), shortest_correct_of=3), quiet=True)
    source.write_text(source.read_text().replace('"tokens": 20', '"tokens": 2'))
    with pytest.raises(RunError, match=r"other input contents \(input changed since\)"):
        select(SelectConfig(input=str(source), output=str(output), shortest_correct_of=2), quiet=True)


def test_select_refuses_a_file_that_is_no_generate_output_in_one_line(tmp_path):
    source = tmp_path / "traces.jsonl"
    source.write_text(json.dumps({"id": "a", "problem": "p", "answer": "1", "response": "r"}) + "\n")
    with pytest.raises(DataError, match=r"traces.jsonl:1: not a SampleRow \(missing fields"):
        select(SelectConfig(input=str(source), output=str(tmp_path / "out")), quiet=True)
    assert not (tmp_path / "out" / "manifest.json").exists()  # a failed start binds the folder to nothing
