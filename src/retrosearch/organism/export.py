"""The teacher's traces as a dataset: the "strong model's" data of the weak-to-strong use case."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class TeacherConfig:
    output: str = "runs/teacher"
    count: int = 1000
    split: str = "train"
    seed: int = 0


def export_teacher_run(config: TeacherConfig) -> dict[str, Any]:
    """The teacher's traces as `<output>/traces.jsonl`, the recipe stage for weak-to-strong."""
    path = Path(config.output) / "traces.jsonl"
    return {"traces": export_teacher(path, config.count, config.split, config.seed), "output": str(path)}
