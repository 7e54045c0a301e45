"""`retrosearch inspect`: how switchy is a dataset of traces? No model needed."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from retrosearch.answers import default_checker, extract_answer
from retrosearch.config import at_least, option
from retrosearch.data.inputs import FieldMap, read_samples
from retrosearch.tables import print_figures
from retrosearch.trace import KeywordMatcher, parse, with_keywords


@dataclass(frozen=True)
class InspectConfig:
    files: tuple[str, ...] = option((), "trace files (JSONL, JSON, Parquet) or dataset ids", positional=True)
    tokenizer: str | None = option(None, "count tokens with this tokenizer (default: whitespace words)")
    keywords: tuple[str, ...] | None = option(None, "transition keywords that open a new thought (any case)")
    limit: int | None = option(None, "only the first N samples")
    json: bool = option(False, "print JSON instead of a table")
    problem_field: str | None = option(None, "field holding the problem text")
    answer_field: str | None = option(None, "field holding the gold answer")
    trace_field: str | None = option(None, "field holding the trace (model response)")
    gold_from_trace: bool = option(False, "the dataset holds only correct traces: take each trace's answer as gold")

    def __post_init__(self) -> None:
        at_least(self, 1, "limit")


def inspect(config: InspectConfig) -> dict[str, Any]:
    """Print the figures of every file (a table, or one JSON line each); returns them by file."""
    if not config.files:
        raise ValueError("inspect needs one or more trace files or dataset ids")
    count = token_counter(config.tokenizer)
    fields = FieldMap(config.problem_field, config.answer_field, config.trace_field, None, config.gold_from_trace)
    matcher = with_keywords(config.keywords)
    found = {}
    for path in config.files:
        figures = inspect_file(path, fields, matcher, count, config.limit)
        if config.json:
            print(json.dumps(figures))
        else:
            print_figures(f"retrosearch inspect — {path}", figures)
        found[path] = figures
    return found


def token_counter(tokenizer: str | None) -> Callable[[str], int]:
    """Whitespace words by default, or the tokens of a named Hugging Face tokenizer."""
    if not tokenizer:
        return lambda text: len(text.split())
    from transformers import AutoTokenizer

    from retrosearch.engines import resolve_model
    from retrosearch.engines.base import encode

    loaded = AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    return lambda text: len(encode(loaded, text))


def inspect_file(
    path: str,
    fields: FieldMap = FieldMap(),
    matcher: KeywordMatcher = KeywordMatcher(),
    count_tokens: Callable[[str], int] = lambda text: len(text.split()),
    limit: int | None = None,
) -> dict[str, Any]:
    samples = read_samples(path, fields, limit)
    checker = default_checker()
    tokens, steps, thoughts, switches = [], [], [], []
    keywords: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    answered = correct = finished = 0
    for sample in samples:
        trace = parse(sample.response)
        stats = trace.stats(matcher)
        tokens.append(count_tokens(sample.response))
        steps.append(stats.steps)
        thoughts.append(stats.thoughts)
        switches.append(stats.switches)
        keywords.update(stats.keywords)
        formats[trace.format.name] += 1
        finished += trace.finished
        answer = extract_answer(trace.solution)
        answered += answer is not None
        correct += answer is not None and checker.is_correct(sample.gold, answer)
    count = len(samples)
    return {
        "file": path,
        "traces": count,
        "formats": dict(formats),
        "tokens_mean": statistics.fmean(tokens),
        "tokens_median": statistics.median(tokens),
        "steps_mean": statistics.fmean(steps),
        "thoughts_mean": statistics.fmean(thoughts),
        "switches_mean": statistics.fmean(switches),
        "switches_per_keyword": dict(keywords.most_common()),
        "finished_share": finished / count,
        "answer_share": answered / count,
        "correct_share": correct / count,
    }
