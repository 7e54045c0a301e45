"""The teacher's traces as a dataset: the "strong model's" data of the weak-to-strong use case."""

from __future__ import annotations

import random
from pathlib import Path

from retrosearch.data import write_jsonl
from retrosearch.organism.task import sample_problems
from retrosearch.organism.teacher import Habits, solve


def export_teacher(out: Path, count: int, split: str = "train", seed: int = 0, habits: Habits = Habits()) -> int:
    """Write one teacher trace per problem as JSONL (id, problem, answer, response, ...)."""
    rng = random.Random(f"teacher-{split}-{seed}")
    rows = [solve(problem, rng, habits).to_row() for problem in sample_problems(split, count, seed)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    return len(rows)
