"""Retro-Search (Lu et al., 2025): revisit every thought switch of a correct trace.

At each switch, the revision model continues the current thought instead: phase 1 writes the next
step with the switch keywords banned at its start, phase 2 runs freely to an answer. The rollout
replaces the rest of the trace when its value gamma^length * R beats the current trace's, i.e. when
it is correct and strictly shorter. The cursor then moves to the next switch after this one.

Length in steps counts the blank-line segments of the reasoning (empty ones too); in tokens it
counts the response's tokens. Bounded rollouts stop as soon as they can no longer be shorter; since
every rollout has its own seed, the result is the same with the bound on or off.

The search is sequential (a kept rollout changes the trace every later switch sees), but most rollouts are
not kept: the next `lookahead` switches are rolled out at once, as if the ones before them lose, and the
results are taken in order. When one wins, the rollouts started ahead of it are cancelled and the search goes
on from the new trace: the same result as one switch at a time, with more work in flight for the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Literal

from retrosearch.answers import extract_answer
from retrosearch.config import at_least, option
from retrosearch.engines.base import Completion, Engine, Request, SamplingConfig
from retrosearch.prompting import joined_ids
from retrosearch.seeds import derive_seed
from retrosearch.trace import DEFAULT_KEYWORDS, SEPARATOR, KeywordMatcher, Trace, check_keywords, parse


@dataclass(frozen=True)
class RetroSearchConfig:
    """Settings of one Retro-Search run (defaults marked *chosen* in docs/paper notes)."""

    keywords: tuple[str, ...] = option(DEFAULT_KEYWORDS, "transition keywords that open a new thought (any case)")
    gamma: float = option(0.9, "discount per unit of length in the value gamma^length * R")
    length_unit: Literal["steps", "tokens"] = option(
        "steps", "length counted in reasoning steps (blank-line segments) or tokens"
    )
    rollouts: int = option(1, "rollouts per thought switch; the best one is kept")
    partial: float = option(1.0, "share of switches revisited, seeded per trace (1.0: full Retro-Search)")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling of every rollout; max_new_tokens per rollout")
    step_max_tokens: int = option(2048, "most tokens of the first, switch-suppressed step")
    bound: bool = option(True, "stop rollouts as soon as they can no longer be shorter (same results, less work)")
    lookahead: int = option(
        4,
        "switches rolled out at once, ahead of the one decided next (same results, more work in flight; 1: none)",
        speed_only=True,
    )

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma < 1.0:
            raise ValueError("gamma must be in (0, 1)")
        if self.length_unit not in ("steps", "tokens"):
            raise ValueError("length_unit must be 'steps' or 'tokens'")
        if self.rollouts < 1:
            raise ValueError("rollouts must be at least 1")
        if not 0.0 < self.partial <= 1.0:
            raise ValueError("partial must be in (0, 1]")
        at_least(self, 1, "step_max_tokens", "lookahead")
        check_keywords(self.keywords)


@dataclass
class Rollout:
    trace: Trace
    length: int
    correct: bool
    generated_tokens: int
    index: int


@dataclass
class Revision:
    switch_index: int
    keyword: str | None
    length_before: int
    length_after: int
    rollout: int


@dataclass
class SearchResult:
    trace: Trace
    length_before: int
    length_after: int
    revisions: list[Revision] = field(default_factory=list)
    rollouts: int = 0
    generated_tokens: int = 0


def _opens_with_content(first: Completion) -> bool:
    """Whether a rollout's first step says something before its blank line."""
    return bool(first.text.partition(SEPARATOR)[0].strip())


def _cancel(tasks: dict[int, asyncio.Future]) -> None:
    for task in tasks.values():
        if task.done() and not task.cancelled():
            task.exception()  # taken: what a rollout from a replaced trace raised no longer matters
        task.cancel()
    tasks.clear()


class RetroSearch:
    """Retro-Search over one engine; `is_correct(gold, answer)` checks answers."""

    def __init__(self, engine: Engine, is_correct, config: RetroSearchConfig = RetroSearchConfig()) -> None:
        self.engine = engine
        self.is_correct = is_correct
        self.config = config
        self.matcher = KeywordMatcher(config.keywords)

    def length(self, trace: Trace) -> int:
        if self.config.length_unit == "steps":
            return len(trace.steps)
        return self.engine.count_tokens(trace.render())

    async def revise(self, sample_id: str, problem: str, gold: str, trace: Trace) -> SearchResult:
        """Revise a trace whose answer is already known to be correct."""
        config = self.config
        prompt = self.engine.chat_prompt(problem)
        current, current_length = trace, self.length(trace)
        length_before = current_length
        revisions: list[Revision] = []
        rollouts = generated_tokens = 0
        visit = random.Random(derive_seed(config.sampling.seed, sample_id, "partial"))
        draws: list[float] = []  # one visit draw per switch, in the order the switches are reached

        def visited(reached: int) -> bool:  # partial = 1.0 visits every switch
            while len(draws) <= reached:
                draws.append(visit.random())
            return draws[reached] < config.partial

        reached, cursor = 0, -1
        ahead: dict[int, asyncio.Future[list[Rollout]]] = {}  # switch index -> its rollouts, in flight
        try:
            while later := [i for i in current.switch_indices(self.matcher) if i > cursor]:
                cursor = later[0]
                reached += 1
                if not visited(reached - 1):
                    continue
                window = (index for step, index in enumerate(later) if visited(reached - 1 + step))
                for index in itertools.islice(window, config.lookahead):
                    if index not in ahead:
                        ahead[index] = asyncio.ensure_future(
                            self._rollouts(sample_id, prompt, gold, current, index, current_length)
                        )
                tried = await ahead.pop(cursor)
                rollouts += len(tried)
                generated_tokens += sum(rollout.generated_tokens for rollout in tried)
                winners = [rollout for rollout in tried if rollout.correct and rollout.length < current_length]
                if winners:
                    best = min(winners, key=lambda rollout: (rollout.length, rollout.index))
                    keyword = self.matcher.match(current.steps[cursor])
                    revisions.append(Revision(cursor, keyword, current_length, best.length, best.index))
                    current, current_length = best.trace, best.length
                    _cancel(ahead)  # rolled out from the trace this one replaced
        finally:
            _cancel(ahead)
        return SearchResult(current, length_before, current_length, revisions, rollouts, generated_tokens)

    async def _rollouts(
        self, sample_id: str, prompt: str, gold: str, trace: Trace, index: int, bound: int
    ) -> list[Rollout]:
        """Every rollout of one switch that could run (a rollout that could not win at all is left out)."""
        config = self.config
        numbers = range(config.rollouts)
        tried = await asyncio.gather(
            *(self.rollout(sample_id, prompt, gold, trace, index, bound, number) for number in numbers)
        )
        return [rollout for rollout in tried if rollout is not None]

    async def rollout(
        self, sample_id: str, prompt: str, gold: str, trace: Trace, index: int, bound: int, number: int
    ) -> Rollout | None:
        """Continue the thought before switch `index`; None when no rollout could win at all."""
        config = self.config
        prefix = trace.prefix(index)
        prompt_ids = joined_ids(self.engine.encode, prompt, prefix)  # the opening marker once, tokens as written
        close = trace.format.close
        in_tokens = config.length_unit == "tokens"
        prefix_tokens = self.engine.count_tokens(prefix) if in_tokens else 0
        # the most the rollout may add and still be shorter: blank-line segments, or generated tokens. In tokens,
        # prefix + generated may count one more than the whole text (a BPE merge where they join), so the bound
        # lets one token more run: it never stops a rollout that could win.
        room = bound - prefix_tokens if in_tokens else bound - index - 1
        if config.bound and room <= 0:
            return None
        first_budget = min(config.step_max_tokens, config.sampling.max_new_tokens)
        if config.bound and in_tokens:
            first_budget = min(first_budget, room)
        seed = derive_seed(config.sampling.seed, sample_id, index, number)

        def continuation(first: Completion) -> Request | None:
            """Phase 2: from the end of the first step, freely to an answer, within what can still win."""
            if first.finish_reason != "stop" or not _opens_with_content(first):
                return None
            max_tokens = config.sampling.max_new_tokens - len(first.token_ids)
            limit = None
            if config.bound and in_tokens:
                max_tokens = min(max_tokens, room - len(first.token_ids))
            if config.bound and not in_tokens and (close is None or close not in first.text):
                limit = (SEPARATOR, room - first.text.count(SEPARATOR), close)
            if max_tokens <= 0 or (limit is not None and limit[1] <= 0):
                return None
            return Request(
                prompt_ids=prompt_ids + first.token_ids,
                max_new_tokens=max_tokens,
                temperature=config.sampling.temperature,
                top_p=config.sampling.top_p,
                seed=derive_seed(seed, "continue"),
                occurrence_limit=limit,
            )

        first = await self.engine.complete(
            Request(
                prompt_ids=prompt_ids,
                max_new_tokens=first_budget,
                temperature=config.sampling.temperature,
                top_p=config.sampling.top_p,
                seed=seed,
                stop=(SEPARATOR,),
                banned_starts=config.keywords,
                then=continuation,
            )
        )
        has_content = _opens_with_content(first)
        completions = [first] if first.continued is None else [first, first.continued]
        generated = sum(len(c.token_ids) for c in completions)
        finish = completions[-1].finish_reason
        new_trace = parse(prefix + "".join(c.text for c in completions), trace.format)
        valid = finish == "eos" and has_content and self.matcher.match(new_trace.steps[index]) is None
        length = self.length(new_trace)  # the trace's own measure: tokens of the whole text, or its steps
        correct = valid and new_trace.finished and await self._correct(gold, new_trace)
        return Rollout(new_trace, length, correct, generated, number)

    async def _correct(self, gold: str, trace: Trace) -> bool:
        return await asyncio.to_thread(self.is_correct, gold, extract_answer(trace.solution))
