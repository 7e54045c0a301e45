"""The `openai` engine: any OpenAI-compatible server's `/v1/completions` (vLLM, SGLang, TGI, llama.cpp,
`transformers serve`, ...), streamed.

Prompts go as token ids, the exact prefix the search built; a server that takes only text (transformers
serve) gets the decoded ids instead, switched once with a warning. The rest is done here, on the streamed
text, so that it means the same on every server:
- stop strings and occurrence limits: the stream is closed the moment the text holds them, and the text
  is cut right after the match (servers drop or keep stop strings differently);
- banned starts: a server-wide `logit_bias` or `bad_words` would ban a word everywhere, not only at the
  start, and misses some tokenizations (vllm#23886). So a request with banned starts first asks for one
  token at a time, each time masking the tokens that would complete a banned word from the text so far
  (the transformers engine's rule), until the start is decided; then it streams the rest freely. The mask
  travels as `logit_bias` (OpenAI, vLLM, SGLang, llama.cpp) or, for `transformers serve`, whose
  completions endpoint ignores `logit_bias`, as a `generation_config` with `sequence_bias`
  (`--ban-method generation_config`). A server that ignores the mask is caught, not trusted: a banned
  start that comes back anyway ends the request with an error naming the fix. `--ban-method reject`
  needs no server support: it resamples whole attempts until one starts allowed (`ban_attempts` at most;
  then the completion ends "banned"); it is exact but slow when the model nearly always switches.
- failures: 408, 429, 5xx, timeouts and broken connections are retried with exponential backoff and full
  jitter; a stream that breaks halfway is sampled again from its start with the same seed, so no result is
  lost or counted twice. Other errors end the request with the server's message.
Completion token ids are the local tokenizer's ids of the returned text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import httpx

from retrosearch.engines.banning import StartBan, token_texts
from retrosearch.engines.base import Completion, Engine, Request
from retrosearch.engines.watch import finish

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
PromptFormat = Literal["auto", "ids", "text"]
BanMethod = Literal["logit_bias", "generation_config", "reject"]
MASKED = -100.0


class ServerError(RuntimeError):
    """A request the server refused for good (not worth retrying)."""


class _Retry(Exception):
    """A transient failure: back off and try the same call again."""


class _PromptNotAccepted(Exception):
    """The server wants a text prompt, not token ids."""


@dataclass(frozen=True)
class _Call:
    """One HTTP completion call: the request's sampling settings over a prompt that may have grown."""

    request: Request
    prompt_ids: tuple[int, ...]
    max_tokens: int
    seed: int
    masked: tuple[int, ...] = ()
    text_before: str = ""  # already generated; stop strings and limits count it


def _mix(seed: int, salt: int) -> int:
    return (seed * 6364136223846793005 + salt * 1442695040888963407 + 1) % (1 << 63)


class OpenAIEngine(Engine):
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
        self.generated_tokens = 0
        self.counts = {"requests": 0, "http_calls": 0, "retries": 0, "rejected_starts": 0, "banned": 0}
        self._token_texts: list[str] | None = None
        self._bans: dict[tuple[str, ...], StartBan] = {}
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        """One client and one concurrency limit per event loop (each `asyncio.run` has its own)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=self.max_in_flight)
            self._client = httpx.AsyncClient(headers=headers, timeout=self.timeout, limits=limits)
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._loop = loop
        return self._client, self._slots  # type: ignore[return-value]

    def _ban(self, words: tuple[str, ...]) -> StartBan:
        if words not in self._bans:
            if self._token_texts is None and self.ban_method != "reject":
                self._token_texts = token_texts(self.tokenizer)
            self._bans[words] = StartBan(self._token_texts or (), words)
        return self._bans[words]

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(await asyncio.gather(*(self._complete(request) for request in requests)))

    async def _complete(self, request: Request) -> Completion:
        self.counts["requests"] += 1
        call = _Call(request, request.prompt_ids, request.max_new_tokens, request.seed)
        if not request.banned_starts:
            text, reason = await self._call(call)
        elif self.ban_method == "reject":
            text, reason = await self._rejecting(call, self._ban(request.banned_starts))
        else:
            text, reason = await self._masked_start(call, self._ban(request.banned_starts))
        token_ids = tuple(self.encode(text))
        self.generated_tokens += len(token_ids)
        return Completion(text=text, token_ids=token_ids, finish_reason=reason)

    async def _rejecting(self, call: _Call, ban: StartBan) -> tuple[str, str]:
        for attempt in range(self.ban_attempts):
            text, reason = await self._call(replace(call, seed=_mix(call.seed, attempt) if attempt else call.seed), ban)
            if reason != "banned":
                return text, reason
            self.counts["rejected_starts"] += 1
        self.counts["banned"] += 1
        return "", "banned"

    async def _masked_start(self, call: _Call, ban: StartBan) -> tuple[str, str]:
        """One masked token at a time until the start can no longer become a banned word, then the rest."""
        text, ids = "", list(call.prompt_ids)
        while (state := ban.state(text)) is not None:
            if len(ids) - len(call.prompt_ids) >= call.max_tokens:
                return text, "length"
            one = _Call(call.request, tuple(ids), 1, _mix(call.seed, len(ids)), tuple(ban.banned_ids(state)), text)
            text, reason = await self._call(one)
            if ban.violates(text):
                raise ServerError(
                    f"{self.base_url} ignored the banned-start mask ({self.ban_method}); "
                    "try --ban-method generation_config (transformers serve) or --ban-method reject"
                )
            if reason != "length":  # a stop string, a limit or the end of the text
                return text, reason
            ids = [*call.prompt_ids, *self.encode(text)]
        left = call.max_tokens - (len(ids) - len(call.prompt_ids))
        if left <= 0:
            return text, "length"
        return await self._call(_Call(call.request, tuple(ids), left, call.seed, (), text))

    async def _call(self, call: _Call, reject: StartBan | None = None) -> tuple[str, str]:
        """The text so far plus this call's (stop strings and limits applied), and the finish reason."""
        client, slots = self._session()
        failures = 0
        while True:
            try:
                async with slots:
                    self.counts["http_calls"] += 1
                    return await self._stream(client, call, reject)
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
                    "sequence_bias": [[[token], MASKED] for token in call.masked],
                }
            )
        return body

    async def _stream(self, client: httpx.AsyncClient, call: _Call, reject: StartBan | None) -> tuple[str, str]:
        text, scanned, start_decided = call.text_before, 0, reject is None
        as_text = self.prompt_format == "text"
        async with client.stream("POST", f"{self.base_url}/v1/completions", json=self._body(call, as_text)) as reply:
            if reply.status_code != 200:
                await self._refuse(reply, as_text)
            async for line in reply.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                if "error" in event:
                    raise _Retry(f"error in the stream: {event['error']}")
                choice = event["choices"][0] if event.get("choices") else {}
                text += choice.get("text") or ""
                if not start_decided:
                    if reject.violates(text):  # type: ignore[union-attr]
                        return text, "banned"
                    start_decided = reject.state(text) is None  # type: ignore[union-attr]
                ended = finish(call.request, text, scanned)
                if ended is not None:
                    return text[: ended[1]], ended[0]
                scanned = len(text)
                reason = choice.get("finish_reason")
                if reason is not None:
                    return text, "length" if reason == "length" else "eos"
        raise _Retry("the stream ended without a finish reason")

    async def _refuse(self, reply: httpx.Response, sent_text: bool) -> None:
        body = (await reply.aread()).decode(errors="replace")
        if reply.status_code in RETRY_STATUS:
            raise _Retry(f"HTTP {reply.status_code}")
        if reply.status_code in (400, 422) and not sent_text and "prompt" in body.lower():
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
        return engine
