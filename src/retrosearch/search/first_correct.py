"""First-correct-solution cuts, the field's model-free way to shorten reasoning: end the reasoning after the round
that first reaches the correct answer (FCS), or after one more round (FCS+1), then close the thinking and keep the
solution as it was ("Do NOT Think That Much for 2+3=?", Chen et al., 2024; Sky-T1-32B-Flash).

A solution round ends at a step that states an answer: a `\\boxed{}`, "the answer is ...", or the organism's
success step. What counts as stating an answer is one pluggable detector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from retrosearch.answers import extract_answer
from retrosearch.organism.task import confirmed_candidate
from retrosearch.trace import SEPARATOR, Trace

AnswerDetector = Callable[[Sequence[str], int], str | None]  # (steps, index) -> the answer steps[index] states
NO_CORRECT_ROUND = "no correct answer stated in the reasoning"
NOTHING_AFTER = "nothing follows the rounds kept"
CUT = "cut after the first correct round"


def stated_answer(steps: Sequence[str], index: int) -> str | None:
    """The answer a step of the reasoning states: its last boxed expression, else its last "the answer is X", else
    the candidate an organism success step confirms."""
    return extract_answer(steps[index]) or confirmed_candidate(steps, index)


@dataclass(frozen=True)
class Cut:
    text: str  # the trace after the cut; the original where nothing is cut
    reason: str  # CUT, NO_CORRECT_ROUND or NOTHING_AFTER
    rounds: int  # steps of the reasoning that state an answer
    first_correct_round: int  # 1-based; 0 when no round states the correct answer
    kept_steps: int  # steps of the reasoning kept (all of them when nothing is cut)

    @property
    def cut(self) -> bool:
        return self.reason == CUT


def first_correct_cut(
    trace: Trace,
    gold: str,
    is_correct: Callable[[str, str], bool],
    extra_rounds: int = 0,
    detect: AnswerDetector = stated_answer,
) -> Cut:
    """The trace cut after its first round whose answer is correct and `extra_rounds` more rounds. The reasoning
    kept is a prefix of the original's; its own closing marker and solution follow, unchanged."""
    steps = trace.steps
    rounds = [(index, answer) for index in range(len(steps)) if (answer := detect(steps, index)) is not None]
    ends = [index for index, _ in rounds]
    first = next((k for k, (_, answer) in enumerate(rounds) if is_correct(gold, answer)), None)
    if first is None:
        return Cut(trace.render(), NO_CORRECT_ROUND, len(ends), 0, len(steps))
    last = first + extra_rounds
    if last >= len(ends) or not any(step.strip() for step in steps[ends[last] + 1 :]):
        return Cut(trace.render(), NOTHING_AFTER, len(ends), first + 1, len(steps))
    body = SEPARATOR.join(steps)
    closing_space = body[len(body.rstrip()) :]  # how the reasoning met its closing marker
    kept = SEPARATOR.join(steps[: ends[last] + 1]).rstrip()
    return Cut(trace.head + kept + closing_space + trace.tail, CUT, len(ends), first + 1, ends[last] + 1)
