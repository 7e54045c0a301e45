"""The vLLM engine's request translation, checked without vLLM against a fake (the real vLLM, on CPU, is
tests/test_vllm_cpu.py, run in .venv-vllm by `make test`)."""

import asyncio
import sys
import time

import pytest

from retrosearch.engines.banning import BANNED_STARTS
from retrosearch.engines.base import WORK_POSITION, Request
from retrosearch.engines.streaming import MASKED, _Call, backend_finish
from retrosearch.engines.vllm_engine import VLLMEngine, prompt_of, sampling_settings
from retrosearch.trace import DEFAULT_KEYWORDS


def test_a_call_becomes_one_sequence_with_its_own_seed_stops_and_mask():
    request = Request(prompt_ids=(5, 6), max_new_tokens=50, temperature=0.6, top_p=0.95, seed=7, stop=("\n\n",))
    plain = sampling_settings(_Call(request, (5, 6, 9), 40, 11))
    assert plain["n"] == 1 and plain["max_tokens"] == 40 and plain["seed"] == 11
    assert plain["stop"] == ["\n\n"] and plain["include_stop_str_in_output"] is True
    assert "logit_bias" not in plain and "bad_words" not in plain
    masked = sampling_settings(_Call(request, (5, 6), 1, 3, masked=(47, 49)))
    assert masked["logit_bias"] == {47: MASKED, 49: MASKED} and masked["max_tokens"] == 1
    assert prompt_of(_Call(request, (5, 6, 9), 40, 11)) == {"prompt_token_ids": [5, 6, 9]}
    whole = sampling_settings(_Call(request, (5, 6), 40, 3, banned_starts=("Wait", "Hmm")))
    assert whole["extra_args"] == {BANNED_STARTS: ["Wait", "Hmm"]} and "extra_args" not in plain
    assert [backend_finish(r) for r in ("length", "stop", "abort", None)] == ["length", "eos", "eos", None]


class FakeLLM:
    """Streams a scripted text per call and honours logit_bias, to check the engine's own logic."""

    def __init__(self, tokenizer, first_choices: list[int]) -> None:
        self.tokenizer = tokenizer
        self.first_choices = first_choices
        self.aborted: list[str] = []
        self.calls: list[dict] = []

    async def generate(self, prompt, params, request_id, priority=0):
        self.calls.append({"prompt": prompt["prompt_token_ids"], "max_tokens": params.max_tokens, "priority": priority})
        masked = set(getattr(params, "logit_bias", None) or {})
        if params.max_tokens == 1:
            token = next(t for t in self.first_choices if t not in masked)
            ids = [token]
        else:
            ids = self.tokenizer(" then go on\n\nmore\n\nand more", add_special_tokens=False)["input_ids"]
        for index, token in enumerate(ids[: params.max_tokens]):
            await asyncio.sleep(0.01)  # generating takes time: a stream closed at a limit is aborted mid-way
            last = index == min(len(ids), params.max_tokens) - 1
            reason = ("length" if params.max_tokens <= len(ids) else "stop") if last else None
            yield FakeOutput(self.tokenizer.decode([token], skip_special_tokens=True), reason, last)

    async def abort(self, request_id):
        self.aborted.append(request_id)


class FakeOutput:
    def __init__(self, text, reason, finished):
        self.outputs = [type("Piece", (), {"text": text, "finish_reason": reason})()]
        self.finished = finished


@pytest.fixture
def fake_vllm(monkeypatch):
    class Params:
        def __init__(self, **settings):
            self.__dict__.update(settings)

    module = type(sys)("vllm")
    module.SamplingParams = Params
    sampling = type(sys)("vllm.sampling_params")
    sampling.RequestOutputKind = type("Kind", (), {"DELTA": "delta"})
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)


def test_banned_starts_are_masked_and_limits_abort(fake_vllm, organism_engine):
    tokenizer = organism_engine.tokenizer
    wait, try_ = tokenizer.convert_tokens_to_ids(["Wait", "try"])
    llm = FakeLLM(tokenizer, [wait, try_])
    engine = VLLMEngine(llm, tokenizer, "fake", ban_method="logit_bias")
    prompt = tuple(tokenizer("<|user|>x<|assistant|><think>\n\n", add_special_tokens=False)["input_ids"])
    request = Request(
        prompt_ids=prompt, max_new_tokens=30, banned_starts=DEFAULT_KEYWORDS, occurrence_limit=("\n\n", 1, None)
    )

    async def at_position(position: int):
        WORK_POSITION.set(position)  # the runner's position of the work item this request serves
        return await engine.generate([request])

    (completion,) = asyncio.run(at_position(7))
    assert completion.text.startswith("try")
    assert {call["priority"] for call in llm.calls} == {7}  # earlier items first, at vLLM's scheduler too
    assert llm.calls[0]["max_tokens"] == 1 and llm.calls[1]["prompt"][-1] == try_
    assert completion.finish_reason == "limit" and completion.text.endswith("\n\n")
    for _ in range(200):  # the abort runs in the engine's own event loop, right after the stream was closed
        if llm.aborted:
            break
        time.sleep(0.01)
    assert llm.aborted


def test_tokens_that_decode_to_nothing_cannot_stall_the_masked_start(fake_vllm, organism_engine):
    """Regression: a special token decodes to "" and left the start undecided forever (seen with transformers
    serve, whose generation_config path had no EOS id)."""
    tokenizer = organism_engine.tokenizer
    llm = FakeLLM(tokenizer, [tokenizer.eos_token_id])
    engine = VLLMEngine(llm, tokenizer, "fake", ban_method="logit_bias")
    request = Request(prompt_ids=(1, 2), max_new_tokens=5, banned_starts=DEFAULT_KEYWORDS)
    (completion,) = asyncio.run(engine.generate([request]))
    assert completion.finish_reason == "length" and len(llm.calls) == 5
