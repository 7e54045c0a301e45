"""Read an organism trace back as lines of thought, to measure its habits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrosearch.organism.task import Problem, check_step
from retrosearch.trace import parse

LINE_HEAD = re.compile(r"try x = (\d)$")


@dataclass(frozen=True)
class Habits:
    computation_steps: int
    valid_steps: int
    under_thinking: bool  # abandoned a line whose candidate was the answer
    over_thinking: bool  # started another line after one that succeeded


def analyze(problem: Problem, response: str) -> Habits:
    lines: list[tuple[int, bool, bool]] = []  # (candidate, completed, succeeded)
    computation = valid = 0
    for step in parse(response).steps:
        head = LINE_HEAD.search(step.strip())
        if head:
            lines.append((int(head.group(1)), False, False))
            continue
        verdict = check_step(step, problem.target)
        if verdict is None:
            continue
        computation += 1
        valid += verdict
        if lines and step.rstrip().endswith((", yes", f", not {problem.target}")):
            candidate = lines[-1][0]
            lines[-1] = (candidate, True, step.rstrip().endswith(", yes"))
    under = any(not completed and candidate == problem.answer for candidate, completed, _ in lines)
    over = any(succeeded for _, _, succeeded in lines[:-1])
    return Habits(computation, valid, under, over)
