"""The `openai` engine: any OpenAI-compatible server's `/v1/completions` (vLLM, SGLang, TGI, llama.cpp,
`transformers serve`, ...), streamed; how a Request is served is StreamingEngine's (streaming.py).

Prompts go as token ids, the exact prefix the search built; a server that takes only text (transformers
serve) gets the decoded ids instead, switched once with a warning. The banned-start mask travels as
`logit_bias` (OpenAI, vLLM, SGLang, llama.cpp) or, for `transformers serve`, whose completions endpoint
ignores `logit_bias`, as a `generation_config` with `sequence_bias` (`--ban-method generation_config`). A
server that ignores the mask is caught, not trusted: a banned start that comes back anyway ends the request
with an error naming the fix. Failures: 408, 429, 5xx, timeouts and broken connections are retried with
exponential backoff and full jitter; a stream that breaks halfway is sampled again from its start with the
same seed, so no result is lost or counted twice. Other errors end the request with the server's message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx

from retrosearch.engines.banning import StartBan
from retrosearch.engines.slots import PrioritySlots
from retrosearch.engines.streaming import MASKED, BanMethod, ServerError, StreamingEngine, _Call, backend_finish

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
PromptFormat = Literal["auto", "ids", "text"]


# How a server says its prompt must be text (transformers serve: "prompt must be a string."). Any other refusal of a
# prompt, such as one longer than the model's context, is that request's failure: decoded text is not token-exact.
TEXT_ONLY = re.compile(r"(must|should) be a (valid )?str(ing)?|not a valid str(ing)?|expected (a )?str(ing)?", re.I)


class _Retry(Exception):
    """A transient failure: back off and try the same call again."""


class _PromptNotAccepted(Exception):
    """The server wants a text prompt, not token ids."""


class OpenAIEngine(StreamingEngine):
    def __init__(
        self,
        base_url: str,
        served_model: str,
        tokenizer,
        api_key: str | None = None,
        max_in_flight: int = 64,
        retries: int = 8,
        timeout: float = 600.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        ban_method: BanMethod = "logit_bias",
        ban_attempts: int = 32,
        prompt_format: PromptFormat = "auto",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.served_model = served_model
        self.model_id = served_model
        self.tokenizer = tokenizer
        self.api_key = api_key
        self.max_in_flight = max_in_flight
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.ban_method = ban_method
        self.ban_attempts = ban_attempts
        self.prompt_format = prompt_format
        self._setup_streaming()
        self.transport = transport  # None: the network; tests put a scripted server here
        self._client: httpx.AsyncClient | None = None
        self._slots: PrioritySlots | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> PrioritySlots:
        """One client and one concurrency limit per event loop (each `asyncio.run` has its own)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
            self._client = httpx.AsyncClient(
                headers=headers, timeout=self.timeout, limits=limits, transport=self.transport
            )
            self._slots = PrioritySlots(self.max_in_flight)
            self._loop = loop
        return self._slots  # type: ignore[return-value]

    async def _call(self, call: _Call, reject: StartBan | None = None) -> tuple[str, str]:
        """The text so far plus this call's (stop strings and limits applied), and the finish reason."""
        slots = self._session()
        failures = 0
        while True:
            try:
                async with slots.hold():
                    return await super()._call(call, reject)
            except _PromptNotAccepted:
                if self.prompt_format == "ids":
                    raise ServerError(f"{self.base_url} takes no token-id prompts; use --prompt-format text") from None
                if self.prompt_format == "auto":
                    log.warning("%s takes only text prompts: sending decoded token ids from now on", self.base_url)
                    self.prompt_format = "text"
            except (_Retry, httpx.TransportError) as error:
                failures += 1
                self.counts["retries"] += 1
                if failures > self.retries:
                    raise ServerError(f"{self.base_url}: gave up after {self.retries} retries: {error!r}") from None
                await asyncio.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (failures - 1))))

    def _body(self, call: _Call, as_text: bool) -> dict[str, Any]:
        request = call.request
        body: dict[str, Any] = {
            "model": self.served_model,
            "prompt": self.tokenizer.decode(list(call.prompt_ids)) if as_text else list(call.prompt_ids),
            "max_tokens": call.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": call.seed,
            "stream": True,
        }
        if call.masked and self.ban_method == "logit_bias":
            body["logit_bias"] = {str(token): MASKED for token in call.masked}
        elif call.masked:
            body["generation_config"] = json.dumps(
                {
                    "do_sample": request.temperature > 0,
                    "temperature": request.temperature,
                    "top_p": request.top_p,
                    "max_new_tokens": call.max_tokens,
                    "eos_token_id": self.tokenizer.eos_token_id,  # this config replaces the model's own
                    "sequence_bias": [[[token], MASKED] for token in call.masked],
                }
            )
        return body

    async def _deltas(self, call: _Call) -> AsyncIterator[tuple[str, str | None]]:
        as_text = self.prompt_format == "text"
        url = f"{self.base_url}/v1/completions"
        async with self._client.stream("POST", url, json=self._body(call, as_text)) as reply:  # type: ignore[union-attr]
            if reply.status_code != 200:
                await self._refuse(reply, as_text)
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    event = json.loads(data)
                except json.JSONDecodeError:
                    raise _Retry(f"a malformed line in the stream: {data[:80]!r}") from None
                if "error" in event:
                    raise _Retry(f"error in the stream: {event['error']}")
                choice = event["choices"][0] if event.get("choices") else {}
                reason = choice.get("finish_reason")
                yield choice.get("text") or "", backend_finish(reason)
                if reason is not None:
                    return
        raise _Retry("the stream ended without a finish reason")

    async def _refuse(self, reply: httpx.Response, sent_text: bool) -> None:
        body = (await reply.aread()).decode(errors="replace")
        if reply.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {reply.status_code}")
        if reply.status_code in (400, 422) and not sent_text and TEXT_ONLY.search(body):
            raise _PromptNotAccepted
        raise ServerError(f"{self.base_url} answered HTTP {reply.status_code}: {body[:300]}")

    @classmethod
    def connect(
        cls,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        served_model: str | None = None,
        revision: str | None = None,
        **settings: Any,
    ) -> OpenAIEngine:
        """An engine for `model` served at `base_url`; the tokenizer is loaded locally from `model`."""
        from transformers import AutoTokenizer

        api_key = None
        if api_key_env:
            api_key = os.environ.get(api_key_env)
            if api_key is None:
                raise ValueError(f"--api-key-env {api_key_env}: that environment variable is not set")
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        engine = cls(base_url, served_model or model, tokenizer, api_key=api_key, **settings)
        engine.revision = revision
        engine.context_length = _context_length(model, revision)
        return engine


def _context_length(model: str, revision: str | None) -> int | None:
    """The model's context as its config states it (a server started with a shorter one says so per request)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, revision=revision)
    except (OSError, ValueError):  # a tokenizer-only folder: the server alone knows
        return None
    return getattr(config, "max_position_embeddings", None)
