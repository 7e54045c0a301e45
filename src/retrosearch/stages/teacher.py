"""The teacher's traces as a dataset: the "strong model's" data of the weak-to-strong use case."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.outputs import write_jsonl
from retrosearch.organism.task import sample_problems
from retrosearch.organism.teacher import Habits, solve
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.template import run_once


def export_teacher(out: Path, count: int, split: str = "train", seed: int = 0, habits: Habits = Habits()) -> int:
    """Write one teacher trace per problem as JSONL (id, problem, answer, response, ...)."""
    rng = random.Random(f"teacher-{split}-{seed}")
    rows = [solve(problem, rng, habits).to_row() for problem in sample_problems(split, count, seed)]
    write_jsonl(out, rows)
    return len(rows)


@dataclass(frozen=True)
class TeacherConfig:
    output: str = option("runs/teacher", "run folder; the traces land in OUTPUT/traces.jsonl")
    count: int = option(1000, "problems, one teacher trace each")
    split: Literal["train", "test"] = option("train", "problem split")
    seed: int = option(0, "problem and habit seed")
    overwrite: bool = overwrite_option()

    def __post_init__(self) -> None:
        at_least(self, 1, "count")


def export_teacher_run(config: TeacherConfig, quiet: bool = False) -> dict[str, Any]:
    """The teacher's traces as `<output>/traces.jsonl`: the strong model's dataset of weak-to-strong."""

    def work(run: RunFolder) -> dict[str, Any]:
        path = run.path / "traces.jsonl"
        return {"traces": export_teacher(path, config.count, config.split, config.seed), "output": str(path)}

    return run_once("teacher", Path(config.output), (config,), config.overwrite, work, quiet=quiet)
