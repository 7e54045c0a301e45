"""The openai engine against a scripted server (an httpx transport in process): what it sends for each ban
method, the API key, and every way a server's stream can end or fail."""

import asyncio
import json
from collections import deque

import httpx
import pytest
from scripted import Script, WordTokenizer

from retrosearch.engines import EngineConfig, load_engine
from retrosearch.engines.base import Request
from retrosearch.engines.openai_engine import OpenAIEngine
from retrosearch.engines.streaming import MASKED, ServerError, _mix
from retrosearch.organism import checkpoint_path

PROMPT = "Q: find x.\n\n"


class ScriptedServer:
    """/v1/completions, streamed, from a script. `faults` lists how the next requests fail, one each:
    "silent" (the stream ends cleanly without a finish reason), "malformed" (a broken JSON line), "error"
    (an error event), "cut" (the connection breaks halfway), or an HTTP status. `honour_masks=False` plays a
    server that ignores `logit_bias`."""

    def __init__(self, script: Script, tokenizer: WordTokenizer, honour_masks: bool = True) -> None:
        self.script = script
        self.tokenizer = tokenizer
        self.honour_masks = honour_masks
        self.faults: deque = deque()
        self.bodies: list[dict] = []
        self.headers: list[httpx.Headers] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.headers.append(request.headers)
        fault = self.faults.popleft() if self.faults else None
        if isinstance(fault, tuple):
            return httpx.Response(fault[0], text=fault[1])
        if isinstance(fault, int):
            return httpx.Response(fault, text="prompt must be a string" if fault == 400 else "nope")
        prompt = body["prompt"] if isinstance(body["prompt"], str) else self.tokenizer.decode(body["prompt"])
        candidates = [self.tokenizer(text)["input_ids"] for text in self.script(prompt, body["seed"])]
        masked = {int(token) for token in body.get("logit_bias", {})}
        if masked and self.honour_masks:
            candidates = [ids for ids in candidates if ids and ids[0] not in masked] or [[]]
        ids = candidates[0][: body["max_tokens"]]
        reason = "length" if len(ids) < len(candidates[0]) else "stop"
        return httpx.Response(200, stream=Events(self.tokenizer, ids, reason, fault))


class Events(httpx.AsyncByteStream):
    def __init__(self, tokenizer: WordTokenizer, ids: list[int], reason: str, fault: str | None) -> None:
        self.lines = []
        for index, token in enumerate(ids):
            last = index == len(ids) - 1
            choice = {"text": tokenizer.decode([token]), "finish_reason": reason if last else None}
            self.lines.append(f"data: {json.dumps({'choices': [choice]})}\n\n")
        if not ids:
            self.lines.append(f"data: {json.dumps({'choices': [{'text': '', 'finish_reason': reason}]})}\n\n")
        self.fault = fault

    async def __aiter__(self):
        half = max(1, len(self.lines) // 2)
        if self.fault == "silent":
            for line in self.lines[:half]:
                yield line.replace('"finish_reason": "stop"', '"finish_reason": null').encode()
            yield b"data: [DONE]\n\n"
            return
        if self.fault == "malformed":
            yield self.lines[0].encode()
            yield b'data: {"choices": [{"text": "x", \n\n'
            return
        if self.fault == "error":
            yield b'data: {"error": {"message": "overloaded"}}\n\n'
            return
        for index, line in enumerate(self.lines):
            if self.fault == "cut" and index == half:
                raise httpx.ReadError("connection reset by peer")
            yield line.encode()
        yield b"data: [DONE]\n\n"


def engine_with(script: Script, **settings) -> tuple[OpenAIEngine, ScriptedServer]:
    tokenizer = WordTokenizer()
    for entry in script.entries:  # the ban's token list is read once: know every word up front
        tokenizer(" ".join([entry.context or "", *entry.candidates]))
    honour = settings.pop("honour_masks", True)
    server = ScriptedServer(script, tokenizer, honour_masks=honour)
    engine = OpenAIEngine(
        "http://scripted", "m", tokenizer, backoff=0.0, max_backoff=0.0, transport=server.transport(), **settings
    )
    return engine, server


def complete(engine: OpenAIEngine, **fields):
    request = Request(prompt_ids=tuple(engine.encode(PROMPT)), **{"max_new_tokens": 40, "seed": 3, **fields})
    (completion,) = asyncio.run(engine.generate([request]))
    return completion


SCRIPT = Script().after(PROMPT, "Wait, no.", "So x is 4.")


def test_a_plain_request_streams_token_ids_with_its_sampling_settings():
    engine, server = engine_with(Script().after(PROMPT, "So x is 4."))
    completion = complete(engine, temperature=0.7, top_p=0.8)
    assert (completion.text, completion.finish_reason) == ("So x is 4.", "eos")
    (body,) = server.bodies
    assert body == {
        "model": "m",
        "prompt": engine.encode(PROMPT),
        "max_tokens": 40,
        "temperature": 0.7,
        "top_p": 0.8,
        "seed": 3,
        "stream": True,
    }


def test_logit_bias_masks_the_start_token_by_token():
    engine, server = engine_with(SCRIPT, ban_method="logit_bias")
    completion = complete(engine, banned_starts=("Wait",))
    assert completion.text == "So x is 4."
    first, rest = server.bodies
    wait = engine.tokenizer.ids["Wait"]
    assert first["max_tokens"] == 1 and first["logit_bias"][str(wait)] == MASKED == -100.0
    assert "logit_bias" not in rest and rest["max_tokens"] == 39
    assert "generation_config" not in first


def test_generation_config_carries_the_mask_for_transformers_serve():
    engine, server = engine_with(SCRIPT, ban_method="generation_config", honour_masks=False)
    with pytest.raises(ServerError, match="ignored the banned-start mask"):
        complete(engine, banned_starts=("Wait",), temperature=0.5)
    config = json.loads(server.bodies[0]["generation_config"])
    wait = engine.tokenizer.ids["Wait"]
    assert [[wait], MASKED] in config["sequence_bias"]
    assert config["max_new_tokens"] == 1 and config["temperature"] == 0.5 and config["do_sample"] is True
    assert config["eos_token_id"] == engine.tokenizer.eos_token_id
    assert "logit_bias" not in server.bodies[0]


def test_a_server_that_ignores_the_mask_is_caught():
    engine, _ = engine_with(SCRIPT, ban_method="logit_bias", honour_masks=False)
    with pytest.raises(ServerError, match="ignored the banned-start mask"):
        complete(engine, banned_starts=("Wait",))


def test_reject_resamples_whole_requests_without_masks():
    script = Script().after(PROMPT, "Wait, no.", seeds=[3]).otherwise("So x is 4.")
    engine, server = engine_with(script, ban_method="reject")
    completion = complete(engine, banned_starts=("Wait",))
    assert completion.text == "So x is 4." and engine.counts["rejected_starts"] == 1
    assert [body["seed"] for body in server.bodies] == [3, _mix(3, 1)]
    assert all("logit_bias" not in body and "generation_config" not in body for body in server.bodies)


@pytest.mark.parametrize("fault", ["silent", "malformed", "error", "cut", 429, 500, 503])
def test_a_transient_failure_is_retried_and_loses_nothing(fault):
    engine, server = engine_with(Script().after(PROMPT, "So x is 4 and more words here."))
    server.faults.extend([fault, fault])
    completion = complete(engine)
    assert (completion.text, completion.finish_reason) == ("So x is 4 and more words here.", "eos")
    assert engine.counts["retries"] == 2 and len(server.bodies) == 3
    assert server.bodies[0] == server.bodies[2]  # the same call again, same seed


def test_retries_run_out_with_a_clear_error():
    engine, server = engine_with(Script().after(PROMPT, "So x is 4."), retries=2)
    server.faults.extend(["silent"] * 3)
    with pytest.raises(ServerError, match="gave up after 2 retries"):
        complete(engine)
    assert len(server.bodies) == 3


def test_a_refusal_is_not_retried():
    engine, server = engine_with(Script().after(PROMPT, "So x is 4."))
    server.faults.append(401)
    with pytest.raises(ServerError, match="answered HTTP 401: nope"):
        complete(engine)
    assert len(server.bodies) == 1 and engine.counts["retries"] == 0


def test_a_server_that_wants_text_prompts_gets_them_from_then_on():
    engine, server = engine_with(Script().after(PROMPT, "So x is 4."))
    server.faults.append(400)
    assert complete(engine).text == "So x is 4."
    assert complete(engine).text == "So x is 4."
    assert [type(body["prompt"]).__name__ for body in server.bodies] == ["list", "str", "str"]
    assert server.bodies[1]["prompt"] == PROMPT
    fixed, fixed_server = engine_with(Script().after(PROMPT, "x"), prompt_format="ids")
    fixed_server.faults.append(400)
    with pytest.raises(ServerError, match="takes no token-id prompts"):
        complete(fixed)


def test_a_prompt_too_long_for_the_server_fails_its_request_and_prompts_stay_token_ids():
    engine, server = engine_with(Script().after(PROMPT, "So x is 4."))
    too_long = "This model's maximum context length is 8 tokens: the decoder prompt (length 9) is longer"
    server.faults.append((400, too_long))
    with pytest.raises(ServerError, match="maximum context length is 8"):
        complete(engine)
    assert complete(engine).text == "So x is 4."
    assert [type(body["prompt"]).__name__ for body in server.bodies] == ["list", "list"]


def test_the_api_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_TEST_KEY", "sk-123")
    config = EngineConfig(engine="openai", base_url="http://scripted/", api_key_env="MY_TEST_KEY")
    engine = load_engine(config)
    assert engine.api_key == "sk-123" and engine.base_url == "http://scripted"
    assert engine.served_model == str(checkpoint_path())
    engine.transport = ScriptedServer(Script().otherwise("ok"), engine.tokenizer).transport()
    server = engine.transport.handler.__self__
    complete(engine)
    assert server.headers[0]["authorization"] == "Bearer sk-123"
    monkeypatch.delenv("MY_TEST_KEY")
    with pytest.raises(ValueError, match="--api-key-env MY_TEST_KEY: that environment variable is not set"):
        load_engine(config)
    keyless = load_engine(EngineConfig(engine="openai", base_url="http://scripted", served_model="served"))
    assert keyless.api_key is None and keyless.served_model == "served"
