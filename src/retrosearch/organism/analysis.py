"""Read an organism trace back as lines of thought, to measure its habits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from retrosearch.organism.task import Problem, check_step
from retrosearch.trace import parse

LINE_HEAD = re.compile(r"(?:try|check) x = (\d)(?: again)?$")
VERDICT = re.compile(r", (need|want) \d , (yes|no)$")


@dataclass
class Line:
    head: str
    candidate: int
    cue: bool | None = None  # what its cue said (None: the line ended before it)
    completed: bool = False
    succeeded: bool = False


def lines_of_thought(response: str) -> list[Line]:
    """The lines of thought of a trace: each tries one candidate, says yes or no at its cue, and is completed once it
    reaches the target's verdict."""
    lines: list[Line] = []
    for step in parse(response).steps:
        head = LINE_HEAD.search(step.strip())
        verdict = VERDICT.search(step.rstrip())
        if head:
            lines.append(Line(step.strip(), int(head.group(1))))
        elif lines and verdict and verdict.group(1) == "need":
            lines[-1].cue = verdict.group(2) == "yes"
        elif lines and verdict:
            lines[-1].completed = True
            lines[-1].succeeded = verdict.group(2) == "yes"
    return lines


@dataclass(frozen=True)
class ObservedHabits:
    """What one response shows (the teacher's `Habits` are the rates it writes them with)."""

    computation_steps: int
    valid_steps: int
    under_thinking: bool  # abandoned a line whose candidate was the answer
    over_thinking: bool  # started another line after one that succeeded


def analyze(problem: Problem, response: str) -> ObservedHabits:
    verdicts = [check_step(step, problem.target) for step in parse(response).steps]
    checked = [verdict for verdict in verdicts if verdict is not None]
    lines = lines_of_thought(response)
    under = any(not line.completed and line.candidate == problem.answer for line in lines)
    over = any(line.succeeded for line in lines[:-1])
    return ObservedHabits(len(checked), sum(checked), under, over)
