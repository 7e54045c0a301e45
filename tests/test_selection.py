"""The shortest-correct-of-N baseline: one row per problem, the shortest correct of its first N samples."""

import json

from retrosearch.search.shortest_of_n import shortest_correct_of_n
from retrosearch.selection import SelectConfig, select

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


def test_select_writes_the_chosen_rows(tmp_path):
    source = tmp_path / "samples.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    output = tmp_path / "out" / "shortest.jsonl"
    summary = select(SelectConfig(input=str(source), output=str(output), shortest_correct_of=2))
    assert summary == {"problems_with_a_correct_trace": 3, "output": str(output)}
    assert [json.loads(line)["tokens"] for line in output.read_text().splitlines()] == [20, 7, 3]
