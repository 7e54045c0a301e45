"""The transformers engine's fast paths change nothing but speed: the slot KV cache (rows join and leave a running
batch), in-place continuation of a request's `then`, the prompt prefix cache, batched nucleus sampling, and rows
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
    """Greedy on a BPE model (SmolLM2 and its twin): six prompts of different lengths through three slots (rows
    leave at different lengths, new rows take their slots, the cache is compacted) give what `model.generate` gives
    each alone."""
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


def test_a_prompt_the_model_cannot_take_fails_alone(organism_engine):
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, prefix_cache_mb=0)
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


def test_the_columns_a_step_attends_to_span_the_live_rows_not_the_whole_run(organism_engine):
    """Requests keep joining a full batch (each takes a freed slot, so no compaction happens): the KV columns in
    use must stay within the longest live row, or every step grows slower as the run goes on."""
    engine = TransformersEngine(organism_engine.model, organism_engine.tokenizer, max_batch_size=4, prefix_cache_mb=0)
    requests = [Request(organism_prompt(engine, PROBLEMS[n % 4]), 10 + 7 * (n % 5), seed=n) for n in range(40)]
    widest, step = [], engine._step

    def watched_step(batch):
        longest = max(len(row.request.prompt_ids) + len(row.text.ids) for _, row in batch.live())
        widest.append(batch.kv.end - batch.kv.start - longest)
        return step(batch)

    engine._step = watched_step
    engine.run_batch(requests)
    assert sum(len(request.prompt_ids) + request.max_new_tokens for request in requests) > 4 * 200
    assert len(widest) > 100 and max(widest) <= 1
