"""`retrosearch inspect`: how switchy is a dataset of traces? No model needed."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

from retrosearch.answers import default_checker, extract_answer
from retrosearch.data import FieldMap, read_samples
from retrosearch.trace import KeywordMatcher, parse


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
