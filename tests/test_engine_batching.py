"""The transformers engine's fast paths change nothing but speed: the per-row KV cache (rows join and leave a
running batch), in-place continuation of a request's `then`, the prompt prefix cache, batched nucleus sampling, and rows
whose caller is gone leaving the batch."""

import json

import pytest
import torch

from retrosearch.engines.base import Request
from retrosearch.engines.transformers_engine import Delivery, TransformersEngine, nucleus


def organism_prompt(engine, problem: str) -> tuple[int, ...]:
    return tuple(engine.encode(engine.chat_prompt(problem)))


PROBLEMS = [
    "find the digit x : x + 3 then * 7 then + 2 gives 5",
    "find the digit x : x * 3 gives 1",
    "find the digit x : x + 4 then * 2 gives 6",
    "find the digit x : x * 9 then + 1 gives 2",
]


def test_rows_joining_and_leaving_a_batch_decode_as_plain_generate_does(bpe_engine, shared_traces):
    """Greedy on a BPE model (SmolLM2 and its twin): six prompts of different lengths through a batch of three (rows
    leave at different lengths, new rows take their places) give what `model.generate` gives each alone."""
    engine = bpe_engine
    rows = [json.loads(line) for line in shared_traces[1].read_text().splitlines()[:6]]
    # a real question's start: short prompts, where every column a row attends to weighs on its next token
    prompts = [tuple(engine.encode(engine.chat_prompt(row["question"][: 12 + 9 * n]))) for n, row in enumerate(rows)]
    assert len({len(prompt) for prompt in prompts}) > 3  # the point: rows of different lengths share a batch
    budgets = [12, 30, 18, 25, 9, 22]
    narrow = TransformersEngine(engine.model, engine.tokenizer, max_batch_size=3, prefix_cache_mb=0)
    completions = narrow.run_batch([Request(p, n, temperature=0.0) for p, n in zip(prompts, budgets, strict=True)])
    for prompt, budget, completion in zip(prompts, budgets, completions, strict=True):
        alone = engine.model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
            max_new_tokens=budget,
            do_sample=False,
            pad_token_id=engine.pad_id,
        )[0, len(prompt) :].tolist()
        ended = next((i for i, token in enumerate(alone) if token in engine.eos_ids), len(alone))
        assert list(completion.token_ids) == alone[:ended]


def test_a_continuation_goes_on_in_place_as_a_second_request_would(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    prompt = organism_prompt(engine, PROBLEMS[0])

    def then(first):
        return Request(prompt + first.token_ids, 200, seed=11)

    chained = engine.run_batch([Request(prompt, 100, seed=5, stop=("\n\n",), then=then)])[0]
    prefilled = engine.counts["prefilled_tokens"]
    assert prefilled == len(prompt)  # the second part was not prefilled again
    first = engine.run_batch([Request(prompt, 100, seed=5, stop=("\n\n",))])[0]
    second = engine.run_batch([then(first)])[0]
    assert first.finish_reason == "stop" and chained.continued is not None
    assert (chained.text, chained.token_ids) == (first.text, first.token_ids)
    assert chained.continued == second
    assert engine.counts["prefilled_tokens"] == prefilled + len(prompt) + len(prompt + first.token_ids)


def test_a_continuation_that_cannot_go_on_in_place_is_sent_anew(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    prompt, other = organism_prompt(engine, PROBLEMS[0]), organism_prompt(engine, PROBLEMS[1])
    chained = engine.run_batch([Request(prompt, 20, seed=5, then=lambda first: Request(other, 30, seed=2))])[0]
    assert chained.continued == engine.run_batch([Request(other, 30, seed=2)])[0]


def test_the_prefix_cache_reuses_shared_prompts_and_changes_no_output(organism_engine):
    model, tokenizer = organism_engine.model, organism_engine.tokenizer
    prompt = organism_prompt(organism_engine, PROBLEMS[0])
    first = TransformersEngine(model, tokenizer, prefix_cache_mb=0).run_batch([Request(prompt, 60, seed=1)])[0]
    assert len(first.token_ids) >= 30
    longer = prompt + first.token_ids[:30]
    requests = [Request(prompt, 60, seed=1), Request(longer, 40, seed=2), Request(prompt, 50, seed=3)]
    cached = TransformersEngine(model, tokenizer)
    outputs = [cached.run_batch([request])[0] for request in requests]  # one at a time: each finds the last
    uncached = TransformersEngine(model, tokenizer, prefix_cache_mb=0)
    assert outputs == [uncached.run_batch([request])[0] for request in requests]
    assert cached.counts["reused_prompt_tokens"] == len(prompt) + (len(prompt) - 1)
    assert cached.counts["prefilled_tokens"] == len(prompt) + 30 + 1
    budget = cached.prefix_cache.budget_bytes
    cached.reset_prefix_cache()  # a benchmark's fair start: nothing cached, the same budget
    assert (cached.prefix_cache.bytes, cached.prefix_cache.budget_bytes) == (0, budget)
    assert cached.prefix_cache.longest(prompt) == (0, [])


def test_the_nucleus_found_among_candidates_is_the_one_a_full_sort_finds():
    torch.manual_seed(0)
    flat = torch.softmax(torch.randn(3, 5000) * 0.01, dim=-1)  # a nucleus too wide for the candidates
    peaked = torch.softmax(torch.randn(3, 5000) * 4, dim=-1)
    probs = torch.cat([flat, peaked])
    top_p = [0.95, 0.5, 1.0, 0.95, 0.5, 1.0]
    expected = []
    for row, threshold in zip(probs, top_p, strict=True):
        if threshold >= 1.0:
            expected.append(row)
            continue
        ordered, order = torch.sort(row, descending=True)
        ordered[ordered.cumsum(-1) - ordered >= threshold] = 0.0
        expected.append(torch.zeros_like(row).scatter_(0, order, ordered))
    assert torch.equal(nucleus(probs.clone(), top_p), torch.stack(expected))


def test_a_row_whose_caller_is_gone_leaves_the_batch(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    prompt = organism_prompt(engine, PROBLEMS[2])
    answered = []
    waiting = [
        (Request(prompt, 400, seed=1), Delivery(answered.append, lambda: engine.generated_tokens < 10)),
        (Request(prompt, 30, seed=2), Delivery(answered.append)),
    ]
    engine.decode(lambda room, wait: [waiting.pop(0) for _ in range(min(room, len(waiting)))])
    assert len(answered) == 1 and len(answered[0].token_ids) > 0
    assert engine.generated_tokens <= 12 + len(answered[0].token_ids)  # the long row stopped at once


@pytest.mark.parametrize("top_p", [0.95, 1.0])
def test_sampling_in_a_batch_is_sampling_alone(organism_engine, top_p):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    requests = [Request(organism_prompt(engine, p), 80, top_p=top_p, seed=n) for n, p in enumerate(PROBLEMS)]
    together = engine.run_batch(requests)
    assert together == [engine.run_batch([request])[0] for request in requests]


@pytest.mark.parametrize("batched", [False, True], ids=["one-at-a-time", "prefilled-together"])
def test_a_prompt_the_model_cannot_take_fails_alone(organism_engine, batched):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    engine.batched_prefill = batched
    prompt = organism_prompt(engine, PROBLEMS[3])
    broken = (*prompt, engine.model.config.vocab_size + 5)  # no such token: the embedding lookup fails
    answers: dict[str, object] = {}
    waiting = [
        (Request(prompt, 40, seed=1), Delivery(lambda result: answers.setdefault("good", result))),
        (Request(broken, 40, seed=1), Delivery(lambda result: answers.setdefault("broken", result))),
        (Request(prompt, 30, seed=2), Delivery(lambda result: answers.setdefault("later", result))),
    ]
    engine.decode(lambda room, wait: [waiting.pop(0) for _ in range(min(room, len(waiting)))])
    assert isinstance(answers["broken"], Exception)
    assert answers["good"] == engine.run_batch([Request(prompt, 40, seed=1)])[0]
    assert answers["later"] == engine.run_batch([Request(prompt, 30, seed=2)])[0]


def test_each_row_holds_its_own_tokens_and_an_eighth_to_spare_however_long_its_neighbours(organism_engine):
    """Rows of different lengths keep joining a full batch: at every step each row's KV holds exactly the tokens it
    fed the model, in buffers at most an eighth (or GROWTH columns) longer, so memory follows the tokens in flight,
    not the longest row times the batch."""
    from retrosearch.engines.kv import room_after

    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, max_batch_size=4, prefix_cache_mb=0)
    requests = [Request(organism_prompt(engine, PROBLEMS[n % 4]), 10 + 7 * (n % 5), seed=n) for n in range(40)]
    seen, step = [], engine._step

    def watched_step(rows):
        for row in rows:
            fed = len(row.request.prompt_ids) + len(row.text.ids) - 1  # the last sampled token is fed by this step
            seen.append((row.kv.length == fed, row.kv.capacity <= fed + 1 + room_after(fed + 1), len(rows)))
        return step(rows)

    engine._step = watched_step
    engine.run_batch(requests)
    assert len(seen) > 400 and all(held and spare for held, spare, _ in seen)
    assert max(rows for _, _, rows in seen) == 4 and min(rows for _, _, rows in seen) < 4  # full, then rows leaving


def test_after_an_end_of_sequence_a_continuation_is_sent_anew_and_none_ends_the_chain(tiny_llama):
    """A row that ended on EOS holds that token in its cache already, so its `then` cannot go on in place even
    when the new prompt extends the old; a `then` that returns None ends the chain with the first completion."""
    from retrosearch.engines import EngineConfig, load_engine

    engine = load_engine(EngineConfig(model=str(tiny_llama), device="cpu", prefix_cache_mb=0))
    prompt = tuple(range(10, 40))
    free = engine.run_batch([Request(prompt, 12, temperature=0.0)])[0]
    engine.eos_ids = engine.eos_ids | {free.token_ids[4]}  # the random model's greedy path ends at its 5th token
    first = engine.run_batch([Request(prompt, 12, temperature=0.0)])[0]
    assert (first.token_ids, first.finish_reason) == (free.token_ids[:4], "eos")
    follow = Request(prompt + first.token_ids, 10, temperature=0.0)
    chained = engine.run_batch([Request(prompt, 12, temperature=0.0, then=lambda done: follow)])[0]
    assert (chained.token_ids, chained.continued) == (first.token_ids, engine.run_batch([follow])[0])
    ended = engine.run_batch([Request(prompt, 12, temperature=0.0, then=lambda done: None)])[0]
    assert ended == first


def test_a_continuation_sent_anew_that_fails_or_whose_caller_left_is_answered_as_a_request_would_be(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    prompt = organism_prompt(engine, PROBLEMS[0])
    broken = (*prompt, engine.model.config.vocab_size + 5)
    answers: list[object] = []
    waiting = [(Request(prompt, 5, seed=1, then=lambda done: Request(broken, 5, seed=1)), Delivery(answers.append))]
    engine.decode(lambda room, wait: [waiting.pop(0) for _ in range(min(room, len(waiting)))])
    assert len(answers) == 1 and isinstance(answers[0], IndexError)

    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    other = organism_prompt(engine, PROBLEMS[1])
    answered: list[object] = []
    waiting = [
        (
            Request(prompt, 5, seed=1, then=lambda done: Request(other, 300, seed=2)),
            Delivery(answered.append, lambda: engine.generated_tokens < 8),
        )
    ]
    engine.decode(lambda room, wait: [waiting.pop(0) for _ in range(min(room, len(waiting)))])
    assert answered == [] and 5 < engine.generated_tokens <= 10  # the follow-up started, then left with its caller


def test_continuations_sent_anew_wait_for_a_place_in_the_batch(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, max_batch_size=2, prefix_cache_mb=0)
    prompts = [organism_prompt(engine, problem) for problem in PROBLEMS]

    def follow(n: int) -> Request:
        return Request(prompts[(n + 1) % 4], 8, seed=n)

    # pairs that end at the same step, one with a `then` and one without: a follow-up and a new request share
    # the two freed places
    requests = [
        Request(prompts[n % 4], 6, seed=n, then=(lambda done, n=n: follow(n)) if n % 2 == 0 else None) for n in range(8)
    ]
    widest, step = [], engine._step

    def watched_step(rows):
        widest.append(len(rows))
        return step(rows)

    engine._step = watched_step
    chained = engine.run_batch(requests)
    assert max(widest) == 2
    for n, completion in enumerate(chained):
        assert completion.continued == (engine.run_batch([follow(n)])[0] if n % 2 == 0 else None)


def test_a_request_that_ends_at_its_first_token_is_answered_once_with_that_token(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
    prompt = organism_prompt(engine, PROBLEMS[2])
    longer = engine.run_batch([Request(prompt, 30, temperature=0.0)])[0]
    answers: list[object] = []
    waiting = [(Request(prompt, 1, temperature=0.0), Delivery(answers.append))]
    engine.decode(lambda room, wait: [waiting.pop(0) for _ in range(min(room, len(waiting)))])
    assert len(answers) == 1 and answers[0].token_ids == longer.token_ids[:1]
    assert answers[0].finish_reason == "length"
    # a stop string that the very first text matches ends the row there (the stop kept, as everywhere)
    first_text = engine.tokenizer.decode(longer.token_ids[:1])
    stopped = engine.run_batch([Request(prompt, 30, temperature=0.0, stop=(first_text,))])[0]
    assert (stopped.text, stopped.token_ids, stopped.finish_reason) == (first_text, longer.token_ids[:1], "stop")


def test_the_nucleus_boundary_is_strict_in_both_searches():
    """A token whose mass before it equals top_p exactly is outside the nucleus (probabilities of powers of two
    add up exactly): among the candidates, and in the full sort of a vocabulary wider than them."""
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    assert nucleus(probs.clone(), [0.5]).tolist() == [[0.5, 0.0, 0.0, 0.0]]
    assert nucleus(probs.clone(), [0.75]).tolist() == [[0.5, 0.25, 0.0, 0.0]]
    flat = torch.full((1, 4096), 1 / 4096)  # 3,072 tokens hold 0.75: more than the candidates
    kept = nucleus(flat.clone(), [0.75])
    assert int((kept > 0).sum()) == 3072


def test_a_row_stops_at_the_models_context_length(tiny_llama):
    from retrosearch.engines import EngineConfig, load_engine

    engine = load_engine(EngineConfig(model=str(tiny_llama), device="cpu", prefix_cache_mb=0))
    prompt = tuple(range(10, 40))
    free = engine.run_batch([Request(prompt, 12, temperature=0.0)])[0]
    assert (len(free.token_ids), free.finish_reason) == (12, "length")  # random weights: no early end
    engine.max_length = len(prompt) + 5
    capped = engine.run_batch([Request(prompt, 12, temperature=0.0)])[0]
    assert (capped.token_ids, capped.finish_reason) == (free.token_ids[:5], "length")


def test_a_row_that_leaves_costs_the_next_step_nothing(organism_engine):
    """Eight rows that leave one by one with nothing waiting: each step decodes only the rows still live (8, then
    7, ... 1), and they decode as each would alone."""
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, max_batch_size=8, prefix_cache_mb=0)
    requests = [Request(organism_prompt(engine, PROBLEMS[n % 4]), 4 + 3 * n, seed=n) for n in range(8)]
    widths, step = [], engine._step

    def watched_step(rows):
        widths.append(len(rows))
        return step(rows)

    engine._step = watched_step
    together = engine.run_batch(requests)
    assert sorted(set(widths), reverse=True) == list(range(8, 0, -1)) and widths == sorted(widths, reverse=True)
    assert together == [engine.run_batch([request])[0] for request in requests]


def prefilled_both_ways(source) -> None:
    """The GPU's batched prefill, run on the CPU: prompts of different lengths, some extending prompts of an earlier
    round (so their cached prefixes differ in length), sampled and greedy, give the same tokens as one prompt at a
    time; and the batched path did run."""
    problems = [*PROBLEMS, "find the digit x : x + 1 gives 3", "find the digit x : x * 2 then + 5 gives 9"]
    prompts = [tuple(source.encode(source.chat_prompt(problem))) for problem in problems]

    def rounds(batched: bool) -> tuple[list[tuple[int, ...]], int]:
        engine = TransformersEngine(source.model, source.tokenizer, max_batch_size=8)
        engine.batched_prefill = batched
        groups, together = [], engine._prefill_together

        def watched(group):
            groups.append(len(group))
            return together(group)

        engine._prefill_together = watched
        first = engine.run_batch([Request(p, 12, seed=n, temperature=0.7 * (n % 2)) for n, p in enumerate(prompts)])
        longer = [p + c.token_ids for p, c in zip(prompts, first, strict=True)]
        extended = [Request(p, 16, seed=n, temperature=0.7 * (n % 2)) for n, p in enumerate(longer + prompts[:3])]
        second = engine.run_batch(extended)
        assert engine.counts["reused_prompt_tokens"] > 0
        return [c.token_ids for c in first + second], sum(size for size in groups if size > 1)

    alone, not_batched = rounds(batched=False)
    together, batched = rounds(batched=True)
    assert not_batched == 0 and batched >= len(prompts)
    assert together == alone


def test_prompts_prefilled_together_give_the_tokens_prefilled_one_at_a_time(organism_engine):
    prefilled_both_ways(organism_engine)


def test_bpe_prompts_prefilled_together_give_the_tokens_prefilled_one_at_a_time(bpe_engine):
    prefilled_both_ways(bpe_engine)
