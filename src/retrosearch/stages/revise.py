"""`retrosearch revise`: Retro-Search over a dataset of traces, resumable, with a summary."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from retrosearch.answers import Verdict, default_checker, extract_answer
from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import FieldMap, Sample, iter_samples, sample_ids, with_response
from retrosearch.engines import Engine, EngineConfig
from retrosearch.executors import ExecutorConfig, WorkerSpec
from retrosearch.runner import ErrorRow, error_ids
from retrosearch.search.retro_search import RetroSearch, RetroSearchConfig
from retrosearch.stages.generate import LONGER_THAN_CONTEXT
from retrosearch.stages.template import RowStage, run_stage
from retrosearch.trace import Trace, parse

OUTPUT_FILE = "revised.jsonl"
SEARCHED = ("revised", "unchanged")  # the statuses of rows that were searched (and are correct)
LONGER_THAN_LIMIT = "longer than --max-input-tokens"
NO_SWITCH = "no thought switch"


@dataclass(frozen=True)
class ReviseConfig:
    input: str = option("", "traces: JSONL, JSON, Parquet or a Hugging Face dataset id (name or name:split)")
    output: str = option("runs/revise", "run folder (rerunning the same command resumes it)")
    limit: int | None = option(None, "only the first N samples")
    shard: str | None = option(
        None, "i/n: revise only input positions p with p % n == i (a job array; then `retrosearch merge`)"
    )
    overwrite: bool = overwrite_option()
    problem_field: str | None = option(None, "field holding the problem text")
    answer_field: str | None = option(None, "field holding the gold answer")
    trace_field: str | None = option(None, "field holding the trace (model response)")
    id_field: str | None = option(None, "field holding a unique sample id")
    gold_from_trace: bool = option(False, "the dataset holds only correct traces: take each trace's answer as gold")
    max_input_tokens: int | None = option(
        None, "skip traces longer than this many tokens (the model's context is always a limit)"
    )

    def __post_init__(self) -> None:
        at_least(self, 1, "limit", "max_input_tokens")


@dataclass
class RevisedRow:
    """One sample after Retro-Search: a row of revised.jsonl."""

    id: str
    problem: str
    gold: str | None
    format: str
    original: str
    tokens_before: int
    steps_before: int
    thoughts_before: int
    switches_before: int
    revised: str
    tokens_after: int
    steps_after: int
    thoughts_after: int
    switches_after: int
    revisions: list[dict[str, Any]]
    rollouts: int
    generated_tokens: int
    status: str  # revised, unchanged or skipped
    reason: str  # a category ("longer than the context"); its numbers are in `details`
    record: dict[str, Any]  # the input record with its trace replaced by the revised one
    details: dict[str, int] = field(default_factory=dict)  # e.g. tokens and context of a trace too long

    @classmethod
    def of(
        cls,
        sample: Sample,
        figures: tuple[tuple[int, int, int, int], tuple[int, int, int, int]],
        text: str,
        status: str,
        reason: str,
        details: dict[str, int] | None = None,
        revisions: list[dict[str, Any]] | None = None,
        rollouts: int = 0,
        generated: int = 0,
    ) -> RevisedRow:
        """The row of `sample` whose trace became `text`; `figures`: (tokens, steps, thoughts, switches) before and
        after."""
        before, after = figures
        return cls(
            sample.id,
            sample.problem,
            sample.gold,
            parse(sample.response).format.name,
            sample.response,
            *before,
            text,
            *after,
            revisions or [],
            rollouts,
            generated,
            status,
            reason,
            with_response(sample, text),
            details or {},
        )

    @staticmethod
    def is_one(record: dict[str, Any]) -> bool:
        """Whether a record read from some file is a row of revised.jsonl."""
        return {"original", "revised", "status", "record"} <= set(record)


class Reviser:
    """Turns one sample into one output row."""

    def __init__(
        self,
        engine: Engine,
        search: RetroSearch,
        config: ReviseConfig,
        check: Callable[[str | None, str | None], Verdict],
    ) -> None:
        self.engine = engine
        self.search = search
        self.config = config
        self.check = check
        self.accepted = 0

    @classmethod
    def on(cls, engine: Engine, search: RetroSearchConfig, config: ReviseConfig) -> Reviser:
        """Retro-Search with `search` on `engine`, answers checked by the default checker."""
        checker = default_checker()
        return cls(engine, RetroSearch(engine, checker.is_correct, search), config, checker.check)

    def progress(self) -> dict[str, Any]:
        return {"accepted": self.accepted}

    def _stats(self, text: str) -> tuple[int, int, int, int]:
        """tokens, steps, thoughts, switches"""
        stats = parse(text).stats(self.search.matcher)
        return self.engine.count_tokens(text), stats.steps, stats.thoughts, stats.switches

    async def __call__(self, sample: Sample) -> RevisedRow:
        trace = parse(sample.response)
        before = self._stats(sample.response)
        skip = await self._skip_reason(trace, sample, before[0])
        if skip is not None:
            reason, details = skip
            status = "unchanged" if reason == NO_SWITCH else "skipped"
            return self._row(sample, before, sample.response, status, reason, [], 0, 0, details)
        result = await self.search.revise(sample.id, sample.problem, sample.gold or "", trace)
        revised = result.trace.render()
        self.accepted += len(result.revisions)
        status = "revised" if result.revisions else "unchanged"
        reason = "shorter correct rollout accepted" if result.revisions else "no rollout was correct and shorter"
        revisions = [asdict(r) for r in result.revisions]
        return self._row(sample, before, revised, status, reason, revisions, result.rollouts, result.generated_tokens)

    async def _skip_reason(self, trace: Trace, sample: Sample, tokens: int) -> tuple[str, dict[str, int]] | None:
        """Why the trace is not searched, as a category and its numbers; None: search it."""
        context = self.engine.context_length
        if context is not None:  # decided at once: a trace the model cannot read is never searched
            prompt_tokens = self.engine.count_tokens(self.engine.chat_prompt(sample.problem))
            if prompt_tokens + tokens >= context:
                return LONGER_THAN_CONTEXT, {"prompt_tokens": prompt_tokens, "trace_tokens": tokens, "context": context}
        unfit = await asyncio.to_thread(why_not_correct, trace, sample.gold, self.check)
        if unfit is not None:
            return unfit, {}
        limit = self.config.max_input_tokens
        if limit is not None and tokens > limit:
            return LONGER_THAN_LIMIT, {"trace_tokens": tokens, "max_input_tokens": limit}
        if not trace.switch_indices(self.search.matcher):
            return NO_SWITCH, {}
        return None

    def _row(
        self,
        sample: Sample,
        before: tuple[int, int, int, int],
        revised: str,
        status: str,
        reason: str,
        revisions: list[dict[str, Any]],
        rollouts: int,
        generated: int,
        details: dict[str, int] | None = None,
    ) -> RevisedRow:
        after = self._stats(revised) if revised != sample.response else before
        return RevisedRow.of(sample, (before, after), revised, status, reason, details, revisions, rollouts, generated)


def why_not_correct(trace: Trace, gold: str | None, check: Callable[[str | None, str | None], Verdict]) -> str | None:
    """Why a trace is no correct original to shorten (unfinished, no final answer, its answer not gold's: a check
    that timed out says so); None when it is one."""
    if not trace.finished:
        return "unfinished reasoning"
    answer = extract_answer(trace.solution)
    if answer is None:
        return "no final answer"
    verdict = check(gold, answer)
    return None if verdict.correct else verdict.reason or "incorrect original answer"


def field_map(config: ReviseConfig) -> FieldMap:
    return FieldMap(
        config.problem_field, config.answer_field, config.trace_field, config.id_field, config.gold_from_trace
    )


def parse_shard(shard: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n (e.g. 0/4), not {shard!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"--shard {shard}: i must be in 0..n-1")
    return index, count


def summarize(rows: list[RevisedRow | ErrorRow]) -> dict[str, Any]:
    finished = [r for r in rows if isinstance(r, RevisedRow)]
    searched = [r for r in finished if r.status in ("revised", "unchanged")]
    skipped = Counter(r.reason for r in finished if r.status == "skipped")

    def mean(values: list[int]) -> float:
        return statistics.fmean(values) if values else 0.0

    before, after = mean([r.tokens_before for r in searched]), mean([r.tokens_after for r in searched])
    return {
        "samples": len(rows),
        "revised": sum(r.status == "revised" for r in finished),
        "unchanged": sum(r.status == "unchanged" for r in finished),
        "skipped": dict(skipped),
        "errors": len(rows) - len(finished),
        "error_ids": error_ids(rows),
        "accepted_revisions": sum(len(r.revisions) for r in finished),
        "tokens_before_mean": before,
        "tokens_after_mean": after,
        "tokens_ratio": after / before if before else 0.0,
        "steps_before_mean": mean([r.steps_before for r in searched]),
        "steps_after_mean": mean([r.steps_after for r in searched]),
        "switches_before_mean": mean([r.switches_before for r in searched]),
        "switches_after_mean": mean([r.switches_after for r in searched]),
        "rollouts": sum(r.rollouts for r in finished),
        "generated_tokens": sum(r.generated_tokens for r in finished),
    }


def revise_stage(config: ReviseConfig, search: RetroSearchConfig, engine_config: EngineConfig) -> RowStage[RevisedRow]:
    if not config.input:
        raise ValueError("revise needs --input: a traces file or dataset id")
    fields = field_map(config)
    ids = sample_ids(config.input, fields, config.limit)  # all input errors surface before any write
    shard = slice(None)
    if config.shard:
        index, count = parse_shard(config.shard)
        shard = slice(index, None, count)
        ids = ids[shard]
    return RowStage(
        name="revise",
        folder=Path(config.output),
        configs=(config, search, engine_config),
        overwrite=config.overwrite,
        rows_file=OUTPUT_FILE,
        row_type=RevisedRow,
        ids=ids,
        items=lambda: itertools.islice(iter_samples(config.input, fields, config.limit), shard.start, None, shard.step),
        worker=WorkerSpec(Reviser.on, (search, config)),
        summarize=summarize,
        facts={"input": config.input},
        counts=("samples", "revised", "errors"),
        fingerprinted=("input",),
    )


def revise(
    config: ReviseConfig,
    search: RetroSearchConfig = RetroSearchConfig(),
    engine_config: EngineConfig = EngineConfig(),
    executor_config: ExecutorConfig = ExecutorConfig(),
    engine: Engine | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Revise `config.input` into `config.output`; returns the summary (also in summary.json)."""
    return run_stage(revise_stage(config, search, engine_config), engine_config, executor_config, engine, quiet)
