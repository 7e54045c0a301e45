"""`retrosearch cut`: first-correct-solution cuts (FCS, FCS+1) over a dataset of traces, no model needed. Rows are
revise's (`revised.jsonl`, status `revised` where the trace was cut), so sft and report take either."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from retrosearch.answers import default_checker
from retrosearch.config import at_least, option, overwrite_option
from retrosearch.data.inputs import FieldMap, Sample, iter_samples, sample_ids
from retrosearch.data.outputs import JsonlAppender, write_in_order
from retrosearch.engines import resolve_model
from retrosearch.engines.base import encode
from retrosearch.runner import run_items
from retrosearch.search.first_correct import first_correct_cut
from retrosearch.stages.folder import RunFolder
from retrosearch.stages.revise import OUTPUT_FILE, RevisedRow, summarize, why_not_correct
from retrosearch.stages.template import read_rows, run_once
from retrosearch.trace import DEFAULT_KEYWORDS, KeywordMatcher, Trace, check_keywords, parse

EXTRA_ROUNDS = {"first-correct": 0, "first-correct-plus-one": 1}
CONCURRENCY = 8  # rows in flight: answer checks wait on their worker process, not on this one


@dataclass(frozen=True)
class CutConfig:
    input: str = option("", "traces: JSONL, JSON, Parquet or a Hugging Face dataset id (name or name:split)")
    output: str = option("runs/cut", "run folder; rows land in OUTPUT/revised.jsonl, as revise writes them")
    method: Literal["first-correct", "first-correct-plus-one"] = option(
        "first-correct",
        "first-correct (FCS): keep the reasoning through the first round that states the correct answer; "
        "first-correct-plus-one (FCS+1): and one more round",
    )
    tokenizer: str = option("organism", "tokenizer that counts the tokens before and after: hub id or local folder")
    keywords: tuple[str, ...] = option(DEFAULT_KEYWORDS, "transition keywords that open a new thought (any case)")
    limit: int | None = option(None, "only the first N samples")
    overwrite: bool = overwrite_option()
    problem_field: str | None = option(None, "field holding the problem text")
    answer_field: str | None = option(None, "field holding the gold answer")
    trace_field: str | None = option(None, "field holding the trace (model response)")
    id_field: str | None = option(None, "field holding a unique sample id")
    gold_from_trace: bool = option(False, "the dataset holds only correct traces: take each trace's answer as gold")

    def __post_init__(self) -> None:
        at_least(self, 1, "limit")
        check_keywords(self.keywords)

    @property
    def fields(self) -> FieldMap:
        return FieldMap(self.problem_field, self.answer_field, self.trace_field, self.id_field, self.gold_from_trace)


class Cutter:
    """Turns one sample into one row of revised.jsonl."""

    def __init__(self, config: CutConfig, tokenizer: Any) -> None:
        self.extra_rounds = EXTRA_ROUNDS[config.method]
        self.matcher = KeywordMatcher(config.keywords)
        self.tokenizer = tokenizer
        self.checker = default_checker()

    def _stats(self, text: str) -> tuple[int, int, int, int]:
        """tokens, steps, thoughts, switches"""
        stats = parse(text).stats(self.matcher)
        return len(encode(self.tokenizer, text)), stats.steps, stats.thoughts, stats.switches

    def skip_reason(self, trace: Trace, sample: Sample) -> str | None:
        """Why the trace is not cut; None: cut it."""
        if trace.format.close is None:
            return "no thinking markers"
        return why_not_correct(trace, sample.gold, self.checker.check)

    def cut(self, sample: Sample) -> RevisedRow:
        trace = parse(sample.response)
        before = self._stats(sample.response)
        skip = self.skip_reason(trace, sample)
        if skip is not None:
            return self._row(sample, before, sample.response, "skipped", skip, {})
        result = first_correct_cut(trace, sample.gold or "", self.checker.is_correct, self.extra_rounds)
        details = {
            "rounds": result.rounds,
            "first_correct_round": result.first_correct_round,
            "kept_steps": result.kept_steps,
        }
        status = "revised" if result.cut else "unchanged"
        return self._row(sample, before, result.text, status, result.reason, details)

    async def __call__(self, sample: Sample) -> RevisedRow:
        return await asyncio.to_thread(self.cut, sample)

    def _row(
        self,
        sample: Sample,
        before: tuple[int, int, int, int],
        text: str,
        status: str,
        reason: str,
        details: dict[str, int],
    ) -> RevisedRow:
        after = self._stats(text) if text != sample.response else before
        return RevisedRow.of(sample, (before, after), text, status, reason, details)


def cut(config: CutConfig, quiet: bool = False) -> dict[str, Any]:
    """Cut `config.input` into `config.output`; a rerun resumes (and retries failed rows), a finished run with the
    same settings and input contents returns its summary."""
    if not config.input:
        raise ValueError("cut needs --input: a traces file or dataset id")
    ids = sample_ids(config.input, config.fields, config.limit)  # all input errors surface before any write

    def work(run: RunFolder) -> dict[str, Any]:
        from transformers import AutoTokenizer

        cutter = Cutter(config, AutoTokenizer.from_pretrained(resolve_model(config.tokenizer)))
        path = run.path / OUTPUT_FILE
        appender = JsonlAppender(path)
        try:
            samples = iter_samples(config.input, config.fields, config.limit)
            asyncio.run(run_items(samples, len(ids), cutter, appender, CONCURRENCY, "cut"))
        finally:
            appender.close()
        write_in_order(path, ids)
        rows = list(read_rows(path, RevisedRow, set(ids)))
        return {"method": config.method, **summarize(rows), "rows": str(path)}

    return run_once("cut", Path(config.output), (config,), config.overwrite, work, ("input", "tokenizer"), quiet)
