"""`retrosearch prompt`: the exact text (and token ids) a model is prompted with for a row of a traces file, at one
of its thought switches or for generating. Loads only the tokenizer; builds the prompt as the engines do."""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

from retrosearch.config import option
from retrosearch.data.inputs import DataError, FieldMap, iter_samples
from retrosearch.engines import resolve_model
from retrosearch.engines.base import PromptConfig, chat_prompt, encode
from retrosearch.prompting import join, joined_ids
from retrosearch.trace import KeywordMatcher, parse, with_keywords


@dataclass(frozen=True)
class ShowPromptConfig:
    model: str = option("organism", "hub id, local path, or 'organism' (its tokenizer)")
    revision: str | None = option(None, "model revision on the hub")
    input: str = option("", "traces file (JSONL, JSON, Parquet) or dataset id")
    row: int = option(0, "the row, counted from 0")
    switch: int | None = option(None, "the thought switch of the row, from 0 (default: generation)")
    ids: bool = option(False, "print JSON with the text and its token ids")
    keywords: tuple[str, ...] | None = option(None, "transition keywords that open a new thought (any case)")
    problem_field: str | None = option(None, "field holding the problem text")
    trace_field: str | None = option(None, "field holding the trace (model response)")


def show_prompt(config: ShowPromptConfig, prompt: PromptConfig = PromptConfig()) -> dict[str, Any]:
    """Print exactly the prompt (nothing added after it), or with `ids` JSON with its token ids; returns both."""
    if not config.input:
        raise ValueError("prompt needs --input: a traces file or dataset id")
    shown = rollout_prompt(
        config.model,
        config.input,
        config.row,
        config.switch,
        prompt,
        FieldMap(problem=config.problem_field, trace=config.trace_field, gold_from_trace=True),
        with_keywords(config.keywords),
        config.revision,
    )
    if config.ids:
        print(json.dumps(shown, ensure_ascii=False))
    else:
        sys.stdout.write(shown["text"])
    return shown


def rollout_prompt(
    model: str,
    path: str,
    row: int = 0,
    switch: int | None = None,
    prompt: PromptConfig = PromptConfig(),
    fields: FieldMap = FieldMap(gold_from_trace=True),
    matcher: KeywordMatcher = KeywordMatcher(),
    revision: str | None = None,
) -> dict[str, Any]:
    """{'text', 'ids'} of the prompt of row `row` (from 0): at its `switch`-th thought switch (from 0), the
    rollout prompt (chat prompt joined to the trace before that switch); without `switch`, the generation prompt."""
    from transformers import AutoTokenizer

    if row < 0 or (switch is not None and switch < 0):
        raise ValueError("--row and --switch count from 0")
    sample = next(itertools.islice(iter_samples(path, fields), row, None), None)
    if sample is None:
        raise DataError(f"{path}: there is no row {row} (rows count from 0)")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model), revision=revision)
    text = chat_prompt(tokenizer, sample.problem, prompt)
    prefix = ""
    if switch is not None:
        trace = parse(sample.response)
        switches = trace.switch_indices(matcher)
        if switch >= len(switches):
            raise DataError(f"{sample.source}: row {row} has {len(switches)} thought switches; --switch counts from 0")
        prefix = trace.prefix(switches[switch])
    ids = joined_ids(partial(encode, tokenizer), text, prefix)
    return {"text": join(text, prefix), "ids": list(ids)}
