"""The organism's task: find the digit x that a chain of mod-10 operations maps to a target.

Every operation is a bijection on the digits 0-9 (adding k, or multiplying by 3, 7 or 9), so each
problem has exactly one answer, and a candidate can only be judged after its whole chain is computed:
one line of thought tries one candidate through a few steps, and only the last step shows whether it
works. That is the search shape Retro-Search repairs.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

MULTIPLIERS = (3, 7, 9)
ADDENDS = tuple(range(1, 10))
NUM_OPS = 3
TEST_SHARE = 10  # one problem in TEST_SHARE is held out

STEP_PATTERN = re.compile(r"^(\d) ([+*]) (\d) = (\d)(?: , (want|need) (\d) , (yes|no))?$")
NEED_PATTERN = re.compile(r"^to get (\d) by ([+*]) (\d) need (\d)$")
CANDIDATE_PATTERN = re.compile(r"\bx = (\d)\b")


@dataclass(frozen=True)
class Op:
    symbol: str
    operand: int

    def apply(self, value: int) -> int:
        if self.symbol == "+":
            return (value + self.operand) % 10
        return (value * self.operand) % 10

    def __str__(self) -> str:
        return f"{self.symbol} {self.operand}"


@dataclass(frozen=True)
class Problem:
    ops: tuple[Op, ...]
    target: int

    @property
    def text(self) -> str:
        chain = " then ".join(str(op) for op in self.ops)
        return f"find the digit x : x {chain} gives {self.target}"

    @property
    def answer(self) -> int:
        (solution,) = [x for x in range(10) if self.evaluate(x) == self.target]
        return solution

    @property
    def id(self) -> str:
        return "organism-" + hashlib.sha256(self.text.encode()).hexdigest()[:12]

    @property
    def split(self) -> str:
        return "test" if int(self.id.split("-")[1], 16) % TEST_SHARE == 0 else "train"

    def evaluate(self, x: int) -> int:
        for op in self.ops:
            x = op.apply(x)
        return x

    def chain(self, x: int) -> list[tuple[int, Op, int]]:
        """The computation steps (input, op, output) that try candidate x."""
        steps = []
        for op in self.ops:
            out = op.apply(x)
            steps.append((x, op, out))
            x = out
        return steps


def all_ops() -> list[Op]:
    return [Op("+", k) for k in ADDENDS] + [Op("*", k) for k in MULTIPLIERS]


def random_problem(rng: random.Random) -> Problem:
    choices = all_ops()
    return Problem(tuple(rng.choice(choices) for _ in range(NUM_OPS)), rng.randrange(10))


@functools.cache
def split_size(split: str) -> int:
    """How many distinct problems a split holds (every chain of operations, every target)."""
    chains = itertools.product(all_ops(), repeat=NUM_OPS)
    return sum(Problem(ops, target).split == split for ops in chains for target in range(10))


def sample_problems(split: str, count: int, seed: int) -> list[Problem]:
    """`count` distinct problems of one split, the same for the same seed."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if count > split_size(split):
        raise ValueError(
            f"the organism's {split} split holds {split_size(split):,} problems; ask for at most that many (--limit)"
        )
    rng = random.Random(f"organism-{split}-{seed}")
    seen: set[str] = set()
    problems: list[Problem] = []
    while len(problems) < count:
        problem = random_problem(rng)
        if problem.split == split and problem.id not in seen:
            seen.add(problem.id)
            problems.append(problem)
    return problems


def parse_problem(text: str) -> Problem:
    match = re.fullmatch(r"find the digit x : x (.+) gives (\d)", text.strip())
    if not match:
        raise ValueError(f"not an organism problem: {text!r}")
    ops = []
    for part in match.group(1).split(" then "):
        symbol, operand = part.split()
        ops.append(Op(symbol, int(operand)))
    return Problem(tuple(ops), int(match.group(2)))


def check_step(step: str, target: int | None = None) -> bool | None:
    """True if a computation step is arithmetically right, False if wrong, None if not one.

    A step that closes a line (`... = r , want t , yes` or `... , no`) and the step that works the last
    operation backwards (`to get t by op need v`) are also checked against the problem's target when one is given.
    A line's cue (`... = r , need v , yes` or `... , no`) is checked against its own numbers: `v` itself is the
    backwards step's, checked there.
    """
    need = NEED_PATTERN.match(step.strip())
    if need:
        claimed_target, symbol, operand, value = need.groups()
        right = Op(symbol, int(operand)).apply(int(value)) == int(claimed_target)
        return right and (target is None or int(claimed_target) == target)
    match = STEP_PATTERN.match(step.strip())
    if not match:
        return None
    left, symbol, operand, result, word, wanted, verdict = match.groups()
    if Op(symbol, int(operand)).apply(int(left)) != int(result):
        return False
    if verdict is None:
        return True
    if (verdict == "yes") != (result == wanted):
        return False
    return word == "need" or target is None or int(wanted) == target


def confirmed_candidate(steps: Sequence[str], index: int) -> str | None:
    """The answer `steps[index]` states, if it is a line's success step (`... = t , want t , yes`): the candidate
    that line tried, named by the latest step before it that says `x = N` (`try x = N`, `check x = N again`).
    A cue's `need v , yes` states no answer: the line has one more operation to go."""
    match = STEP_PATTERN.match(steps[index].strip())
    if match is None or match.group(5) != "want" or match.group(7) != "yes":
        return None
    for step in reversed(steps[:index]):
        candidate = CANDIDATE_PATTERN.search(step)
        if candidate is not None:
            return candidate.group(1)
    return None
