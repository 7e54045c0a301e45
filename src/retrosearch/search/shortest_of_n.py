"""The baseline users try first: of N sampled traces per problem, keep the shortest correct one."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def shortest_correct_of_n(rows: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """One row per problem that has a correct trace among its first `n` samples (the shortest one).

    Rows are `generate` samples (`problem_id`, `sample`, `correct`, `tokens`); ties go to the earlier sample.
    """
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row.get("status") != "error" and row["sample"] < n:
            by_problem[row["problem_id"]].append(row)
    chosen = []
    for samples in by_problem.values():
        correct = [row for row in samples if row.get("correct")]
        if correct:
            chosen.append(min(correct, key=lambda row: (row["tokens"], row["sample"])))
    return chosen
