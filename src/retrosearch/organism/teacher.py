"""A programmatic solver that writes R1-shaped traces with the two bad habits Retro-Search repairs.

Trace shape (the response of the assistant turn):

    <think>

    to get 5 by + 1 need 4

    try x = 3

    3 + 2 = 5

    5 * 3 = 5 , need 4 , no

    Wait , try x = 6

    6 + 2 = 8

    8 * 3 = 4 , need 4 , yes

    Hmm , try x = 1
    ...
    Wait , try x = 6
    ...
    4 + 1 = 5 , want 5 , yes

    Wait , check x = 6 again
    ...
    4 + 1 = 5 , want 5 , yes

    </think>

    the answer is \\boxed{6}

Steps are separated by a blank line; a new line of thought opens with a transition keyword. The first step
works the last operation backwards (`to get 5 by + 1 need 4`); a line's second result then carries the cue as a
verdict on the line itself (`8 * 3 = 4 , need 4 , yes`): the line will succeed exactly when it says yes. The value
needed is copied next to the result, so the verdict is a comparison of two neighbouring numbers, and the choice to
go on or to switch can be read off the step just written (a small model does not learn to compare a result with a
number many steps back). The habits:

- under-thinking: the teacher abandons a line right after its `yes` (`8 * 3 = 4 , need 4 , yes` above) and only
  comes back to it later;
- pruning (not a bad habit): it drops a line right after its `no`;
- over-thinking: after a line that succeeded it re-checks the answer, a full recomputation, again and again.
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
    """How often the teacher under-thinks, prunes, over-thinks and gives up."""

    # The rates a sampled student shows are the data's sharpened by the temperature (0.6: a choice made 17% of the
    # time is made 7% of the time), so a habit the students should keep unless taught otherwise is above one half
    under_thinking: float = 0.65  # chance to abandon a line whose cue says yes (it would have succeeded)
    prune: float = 0.6  # chance to abandon a line whose cue says no (it would have failed)
    over_thinking: float = 0.95  # chance to re-check the answer at least once after a line succeeded
    recheck_again: float = 0.75  # chance of each further re-check
    max_rechecks: int = 5  # the longest trace stays within the recipes' 512 new tokens
    max_lines: int = 10  # lines tried before giving up with a guess
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
    rechecks: int = 0
    gave_up: bool = False

    @property
    def correct(self) -> bool:
        return self.answer == self.problem.answer

    @property
    def over_thinking(self) -> bool:
        return self.rechecks > 0

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
                "rechecks": self.rechecks,
                "gave_up": self.gave_up,
            },
        }


def needed(problem: Problem) -> int:
    """What the last operation must be given for the chain to end at the target."""
    last = problem.ops[-1]
    (value,) = [value for value in range(10) if last.apply(value) == problem.target]
    return value


def need_step(problem: Problem) -> str:
    """The last operation worked backwards: the value a line's second result must have to succeed."""
    return f"to get {problem.target} by {problem.ops[-1]} need {needed(problem)}"


def verdict(out: int, word: str, wanted: int) -> str:
    return f" , {word} {wanted} , " + ("yes" if out == wanted else "no")


def line_steps(problem: Problem, candidate: int, head: str) -> list[str]:
    """All steps of one line of thought that tries `candidate`: the cue's verdict on the one before the last, the
    target's on the last."""
    steps = [head]
    chain = problem.chain(candidate)
    for index, (left, op, out) in enumerate(chain):
        step = f"{left} {op} = {out}"
        if index == len(chain) - 2:
            step += verdict(out, "need", needed(problem))
        elif index == len(chain) - 1:
            step += verdict(out, "want", problem.target)
        steps.append(step)
    return steps


def try_head(candidate: int, opener: str | None) -> str:
    return f"try x = {candidate}" if opener is None else f"{opener} , try x = {candidate}"


def solve(problem: Problem, rng: random.Random, habits: Habits = Habits()) -> TraceRecord:
    """One teacher trace for `problem`; the habits fire at random, as recorded on the result."""
    record = TraceRecord(problem=problem, text="", answer=-1, habits=habits)
    candidates = list(range(10))
    rng.shuffle(candidates)
    steps = [need_step(problem)]
    opener: str | None = None
    found: int | None = None
    while record.lines < habits.max_lines and candidates:
        candidate = candidates.pop()
        line = line_steps(problem, candidate, try_head(candidate, opener))
        record.lines += 1
        record.switches += opener is not None
        promising = candidate == problem.answer  # its cue says yes
        if rng.random() < (habits.under_thinking if promising else habits.prune):
            line = line[:-1]  # stop at the cue's verdict, before the last operation
            record.abandoned.append(candidate)
            if promising:
                record.under_thinking = True
                candidates.insert(rng.randint(0, len(candidates)), candidate)  # come back to it later
        elif promising:
            found = candidate
        steps.extend(line)
        opener = keyword(SWITCH_KEYWORDS, rng, habits)
        if found is not None:
            break
    if found is None:
        record.gave_up = True
        found = rng.randrange(10)  # a guess
    elif rng.random() < habits.over_thinking:
        record.rechecks = 1
        while record.rechecks < habits.max_rechecks and rng.random() < habits.recheck_again:
            record.rechecks += 1
    for _ in range(record.rechecks):
        steps.extend(line_steps(problem, found, f"{keyword(RECHECK_KEYWORDS, rng, habits)} , check x = {found} again"))
        record.switches += 1
    record.answer = found
    record.text = render_response(steps, found)
    return record


def keyword(choices: tuple[str, ...], rng: random.Random, habits: Habits) -> str:
    """The first keyword with `main_keyword_share`, else one of the others."""
    return choices[0] if rng.random() < habits.main_keyword_share else rng.choice(choices[1:])


def render_response(steps: list[str], answer: int) -> str:
    body = SEPARATOR.join(["", *steps, ""])
    return f"{THINK.open}{body}{THINK.close}{SEPARATOR}the answer is \\boxed{{{answer}}}"
