"""Sampling is tested as a distribution: the transformers engine (which serves the organism) draws from
softmax(logits / T) restricted to the top-p nucleus, checked by a chi-square test whose power against the
plausible wrong distributions is computed, not hoped for. The vLLM and OpenAI-compatible paths never sample in
this package (the server does, masked starts included): that each request's own temperature, top-p and seed reach
it is pinned in test_openai_scripted.py and test_vllm_engine.py."""

import asyncio
import math
from types import SimpleNamespace

import pytest
import torch

scipy_stats = pytest.importorskip("scipy.stats", reason="the chi-square test needs scipy (in the dev extras)")

from retrosearch.engines import Request  # noqa: E402
from retrosearch.engines.transformers_engine import TransformersEngine  # noqa: E402

LOGITS = [2.0, 1.6, 1.1, 0.7, 0.2, -0.4, -1.0, -2.5]
DRAWS = 20_000
ALPHA = 1e-3  # a right distribution fails this test once in a thousand seeds (it is checked at one fixed seed)


def softmax(logits: list[float], temperature: float) -> list[float]:
    scaled = [value / temperature for value in logits]
    top = max(scaled)
    weights = [math.exp(value - top) for value in scaled]
    return [weight / sum(weights) for weight in weights]


def restricted(probs: list[float], top_p: float) -> list[float]:
    """The nucleus, by hand: the most likely tokens whose mass before them is under top_p, renormalised."""
    order = sorted(range(len(probs)), key=lambda index: -probs[index])
    kept, before = set(), 0.0
    for index in order:
        if before >= top_p:
            break
        kept.add(index)
        before += probs[index]
    mass = sum(probs[index] for index in kept)
    return [probs[index] / mass if index in kept else 0.0 for index in range(len(probs))]


def expected(temperature: float, top_p: float) -> list[float]:
    return restricted(softmax(LOGITS, temperature), top_p)


def draws(temperature: float, top_p: float, count: int = DRAWS) -> list[int]:
    """What the engine's sampling step picks for `count` rows of the same logits, each row its own seed."""
    rows = [
        SimpleNamespace(
            ban=None,
            request=Request((1,), 1, temperature=temperature, top_p=top_p, seed=seed),
            generator=torch.Generator().manual_seed(seed),
        )
        for seed in range(count)
    ]
    picks = TransformersEngine._pick(None, torch.tensor([LOGITS] * count), rows)  # type: ignore[arg-type]
    return tally(picks, len(LOGITS))


def tally(tokens: list[int], vocabulary: int) -> list[int]:
    counts = [0] * vocabulary
    for token in tokens:
        counts[token] += 1
    return counts


def chi_square(counts: list[int], probs: list[float]) -> tuple[float, int]:
    """The statistic over the tokens the distribution allows, and its degrees of freedom; tokens expected fewer
    than 5 times are pooled into one cell, as the chi-square approximation asks."""
    total = sum(counts)
    allowed = [index for index, p in enumerate(probs) if p > 0]
    big = [i for i in allowed if probs[i] * total >= 5]
    cells = [(counts[i], probs[i]) for i in big]
    rest = [i for i in allowed if i not in big]
    if rest:
        cells.append((sum(counts[i] for i in rest), sum(probs[i] for i in rest)))
    statistic = sum((seen - total * p) ** 2 / (total * p) for seen, p in cells)
    return statistic, len(cells) - 1


def power(probs: list[float], wrong: list[float]) -> float:
    """The chance that DRAWS draws from `wrong` fail the test against `probs` (noncentral chi-square)."""
    allowed = [index for index, p in enumerate(probs) if p > 0]
    if any(wrong[index] > 0 for index in range(len(probs)) if index not in allowed):
        return 1.0  # it puts mass where none may be: one such draw fails the zero-count check
    degrees = len(allowed) - 1
    shift = DRAWS * sum((wrong[i] - probs[i]) ** 2 / probs[i] for i in allowed)
    critical = scipy_stats.chi2.ppf(1 - ALPHA, degrees)
    return float(scipy_stats.ncx2.sf(critical, degrees, shift))


SETTINGS = [(1.0, 1.0), (0.6, 0.95), (1.0, 0.7), (2.0, 1.0), (0.6, 0.5)]


@pytest.mark.parametrize(("temperature", "top_p"), SETTINGS)
def test_the_engine_draws_from_the_tempered_nucleus(temperature, top_p):
    probs = expected(temperature, top_p)
    counts = draws(temperature, top_p)
    assert all(counts[i] == 0 for i, p in enumerate(probs) if p == 0), (counts, probs)  # nothing outside the nucleus
    statistic, degrees = chi_square(counts, probs)
    if degrees:
        assert statistic < scipy_stats.chi2.ppf(1 - ALPHA, degrees), (counts, probs)
    # the test is strong enough to see the bugs it is for: each wrong distribution fails it almost surely
    wrong = {
        "temperature the wrong way round": restricted(softmax(LOGITS, 1 / temperature), top_p),
        "no nucleus": softmax(LOGITS, temperature),
        "nucleus applied before the temperature": restricted(softmax(LOGITS, 1.0), top_p)
        if temperature != 1.0
        else None,
        "one token more in the nucleus": restricted(softmax(LOGITS, temperature), min(1.0, top_p + 0.12)),
    }
    for name, distribution in wrong.items():
        if distribution is None or max(abs(a - b) for a, b in zip(distribution, probs, strict=True)) < 1e-9:
            continue  # the same distribution under these settings (no nucleus at top-p 1)
        assert power(probs, distribution) > 0.999, name


def test_the_wrong_way_round_would_fail_at_this_seed():
    """The planted bug itself: draws at 1/T fail the test against T (not only in expectation)."""
    probs = expected(0.6, 0.95)
    counts = draws(1 / 0.6, 0.95)
    statistic, degrees = chi_square(counts, probs)
    outside = sum(counts[i] for i, p in enumerate(probs) if p == 0)
    assert outside > 0 or statistic > scipy_stats.chi2.ppf(1 - ALPHA, degrees)


def test_a_temperature_near_zero_is_greedy_and_two_flattens():
    argmax = LOGITS.index(max(LOGITS))
    assert draws(1e-4, 1.0, count=2_000)[argmax] == 2_000
    assert draws(0.0, 0.95, count=100)[argmax] == 100  # temperature 0: the greedy path, no generator used

    def entropy(probs: list[float]) -> float:
        return -sum(p * math.log(p) for p in probs if p > 0)

    assert entropy(expected(2.0, 1.0)) > entropy(expected(1.0, 1.0)) > entropy(expected(0.6, 1.0))
    flat, sharp = draws(2.0, 1.0), draws(0.6, 1.0)
    assert flat[argmax] < sharp[argmax] and flat[-1] > sharp[-1]


def test_the_organism_engine_samples_its_own_next_token_distribution(organism_engine):
    """End to end through `generate`: the first token of many one-token requests, each with its own seed, is
    distributed as the model's own tempered nucleus at that prompt (computed here with a plain forward pass)."""
    engine = organism_engine
    temperature, top_p = 1.5, 0.9  # a flatter distribution than the organism's own: many tokens to count
    start = engine.encode(engine.chat_prompt("find the digit x : x + 3 then * 7 then + 2 gives 5"))
    (greedy,) = engine.run_batch([Request(tuple(start), 200, temperature=0.0)])
    trace = [*start, *greedy.token_ids]
    with torch.no_grad():
        every = torch.softmax(engine.model(torch.tensor([trace])).logits[0].float() / temperature, -1)
    entropy = -(every * every.clamp_min(1e-30).log()).sum(-1)
    position = int(entropy[len(start) - 1 :].argmax()) + len(start) - 1  # the most uncertain point of the trace
    prompt = trace[: position + 1]
    probs = restricted(every[position].tolist(), top_p)
    allowed = [index for index, p in enumerate(probs) if p > 0]
    assert len(allowed) >= 3, "the prompt leaves too few choices to test"
    count = 3_000
    requests = [Request(tuple(prompt), 1, temperature=temperature, top_p=top_p, seed=seed) for seed in range(count)]
    completions = asyncio.run(engine.generate(requests))
    counts = tally([completion.token_ids[0] for completion in completions], len(probs))
    assert all(counts[i] == 0 for i in range(len(probs)) if i not in allowed)
    statistic, degrees = chi_square(counts, probs)
    assert statistic < scipy_stats.chi2.ppf(1 - ALPHA, degrees), [(counts[i], probs[i]) for i in allowed]
