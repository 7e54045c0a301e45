"""A programmatic solver that writes R1-shaped traces with tunable bad habits.

Trace shape (the response of the assistant turn):

    <think>

    try x = 4

    4 + 3 = 7

    7 * 7 = 9

    9 + 2 = 1 , not 5

    Wait , try x = 6
    ...
    3 + 2 = 5 , yes

    </think>

    the answer is \\boxed{6}

Steps are separated by a blank line; a new line of thought opens with a transition keyword.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from retrosearch.organism.task import Problem
from retrosearch.trace import DEFAULT_KEYWORDS, FORMATS, SEPARATOR

# the trace keywords the teacher opens a new line with, and those it re-checks with (in its order of preference)
SWITCH_KEYWORDS = tuple(keyword for keyword in DEFAULT_KEYWORDS if keyword != "Let me double-check")
RECHECK_KEYWORDS = ("Wait", "Let me double-check", "But wait", "Hmm")
THINK = FORMATS["r1"]


@dataclass(frozen=True)
class Habits:
    """How often the teacher under-thinks, over-thinks, gives up and loops."""

    under_thinking: float = 0.5  # chance to abandon a line before its last step
    over_thinking: float = 0.5  # chance to re-check after a line that already succeeded
    max_lines: int = 7  # lines tried before giving up with a guess
    loop: float = 0.005  # chance to repeat the previous line word for word
    # Share of switches that open with "Wait" (the rest spread over the other keywords). Sampling at
    # temperature 0.6 and top-p 0.95 all but erases a habit whose mass is split over many keywords.
    main_keyword_share: float = 0.75


@dataclass
class TraceRecord:
    problem: Problem
    text: str
    answer: int
    habits: Habits
    lines: int = 0
    switches: int = 0
    abandoned: list[int] = field(default_factory=list)
    under_thinking: bool = False  # abandoned the candidate that would have succeeded
    over_thinking: bool = False
    gave_up: bool = False
    looped: bool = False

    @property
    def correct(self) -> bool:
        return self.answer == self.problem.answer

    def to_row(self) -> dict:
        return {
            "id": self.problem.id,
            "problem": self.problem.text,
            "answer": str(self.problem.answer),
            "response": self.text,
            "correct": self.correct,
            "habits": asdict(self.habits),
            "teacher": {
                "lines": self.lines,
                "switches": self.switches,
                "abandoned": self.abandoned,
                "under_thinking": self.under_thinking,
                "over_thinking": self.over_thinking,
                "gave_up": self.gave_up,
                "looped": self.looped,
            },
        }


def line_steps(problem: Problem, candidate: int, opener: str | None) -> list[str]:
    """All steps of one line of thought that tries `candidate`, the verdict on the last."""
    head = f"try x = {candidate}" if opener is None else f"{opener} , try x = {candidate}"
    steps = [head]
    chain = problem.chain(candidate)
    for index, (left, op, out) in enumerate(chain):
        step = f"{left} {op} = {out}"
        if index == len(chain) - 1:
            step += " , yes" if out == problem.target else f" , not {problem.target}"
        steps.append(step)
    return steps


def solve(problem: Problem, rng: random.Random, habits: Habits = Habits()) -> TraceRecord:
    """One teacher trace for `problem`; the habits fire at random, as recorded on the result."""
    record = TraceRecord(problem=problem, text="", answer=-1, habits=habits)
    candidates = list(range(10))
    rng.shuffle(candidates)
    steps: list[str] = []
    opener: str | None = None
    previous_line: list[str] | None = None
    found: int | None = None
    while record.lines < habits.max_lines and candidates:
        if previous_line is not None and rng.random() < habits.loop:
            record.looped = True
            steps.extend(previous_line)
            record.lines += 1
            record.switches += 1
            continue
        candidate = candidates.pop()
        line = line_steps(problem, candidate, opener)
        if opener is not None:
            record.switches += 1
        record.lines += 1
        if rng.random() < habits.under_thinking:
            cut = rng.randint(1, len(line) - 2)  # stop after the head and some, never all, ops
            line = line[: cut + 1]
            record.abandoned.append(candidate)
            record.under_thinking |= candidate == problem.answer
        elif candidate == problem.answer:
            found = candidate
        steps.extend(line)
        previous_line = [_reopen(line, rng, habits), *line[1:]]
        opener = keyword(SWITCH_KEYWORDS, rng, habits)
        if found is not None:
            break
    if found is not None and rng.random() < habits.over_thinking:
        record.over_thinking = True
        record.switches += 1
        recheck = found if rng.random() < 0.5 or not candidates else candidates.pop()
        steps.extend(line_steps(problem, recheck, keyword(RECHECK_KEYWORDS, rng, habits)))
    if found is None:
        record.gave_up = True
        pool = candidates or list(range(10))
        found = rng.choice(pool)
    record.answer = found
    record.text = render_response(steps, found)
    return record


def keyword(choices: tuple[str, ...], rng: random.Random, habits: Habits) -> str:
    """The first keyword with `main_keyword_share`, else one of the others."""
    return choices[0] if rng.random() < habits.main_keyword_share else rng.choice(choices[1:])


def _reopen(line: list[str], rng: random.Random, habits: Habits) -> str:
    """The head of a repeated line, opened with a switch keyword as any later line is."""
    candidate = line[0].rsplit(" ", 1)[1]
    return f"{keyword(SWITCH_KEYWORDS, rng, habits)} , try x = {candidate}"


def render_response(steps: list[str], answer: int) -> str:
    body = SEPARATOR.join(["", *steps, ""])
    return f"{THINK.open}{body}{THINK.close}{SEPARATOR}the answer is \\boxed{{{answer}}}"
