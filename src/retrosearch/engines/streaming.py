"""Engines that see their output as streamed text (a server, vLLM) share one way to serve a Request.

Stop strings and occurrence limits are watched on the text, and the stream is closed the moment the text
holds them; the text is cut right after the match. Banned starts: a request-wide `logit_bias` or
`bad_words` would ban a word everywhere, not only at the start, `bad_words` misses some tokenizations
(vllm#23886) and is ignored when n > 1 (vllm#17975). A backend that masks starts itself (`backend`: vLLM with our
logits processor) gets the request whole. Otherwise a request with banned starts first asks for one token at a time
(n = 1), each time masking the tokens that would complete a banned word from the text so far (the transformers
engine's rule), until the start is decided; then it streams the rest freely, with
the prefix cached by the backend. `reject` instead resamples whole attempts until one starts allowed
(`ban_attempts` at most; then the completion ends "banned"): it needs no masking support and is exact, but
slow when the model nearly always switches. Completion token ids are the local tokenizer's ids of the text.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from retrosearch.engines.banning import StartBan, StartBans
from retrosearch.engines.base import Completion, Engine, Request
from retrosearch.engines.watch import finish

BanMethod = Literal["logit_bias", "generation_config", "reject", "backend"]
MASKED = -100.0


class ServerError(RuntimeError):
    """A request the backend refused for good (not worth retrying)."""


@dataclass(frozen=True)
class _Call:
    """One generation at the backend: the request's sampling settings over a prompt that may have grown."""

    request: Request
    prompt_ids: tuple[int, ...]
    max_tokens: int
    seed: int
    masked: tuple[int, ...] = ()
    text_before: str = ""  # already generated; stop strings and limits count it
    banned_starts: tuple[str, ...] = ()  # for a backend that masks banned starts itself (vLLM's logits processor)


def backend_finish(reason: str | None) -> str | None:
    """A backend's finish reason in ours: stop strings are caught on the text, so any other end is "eos"."""
    if reason is None:
        return None
    return "length" if reason == "length" else "eos"


def _mix(seed: int, salt: int) -> int:
    return (seed * 6364136223846793005 + salt * 1442695040888963407 + 1) % (1 << 63)


class StreamingEngine(Engine):
    """Serves Requests through `_deltas(call)`: the backend's stream of (text piece, finish reason)."""

    ban_method: BanMethod = "logit_bias"
    ban_attempts: int = 32
    generated_tokens: int = 0

    def _setup_streaming(self) -> None:
        self.generated_tokens = 0
        self.counts = {"requests": 0, "calls": 0, "retries": 0, "rejected_starts": 0, "banned": 0}
        self._ban = StartBans(self.tokenizer, masks=self.ban_method in ("logit_bias", "generation_config"))

    @abstractmethod
    def _deltas(self, call: _Call) -> AsyncIterator[tuple[str, str | None]]:
        """Text pieces as generated; the last one carries "length" or "eos"."""

    async def _call(self, call: _Call, reject: StartBan | None = None) -> tuple[str, str]:
        """One generation: the text (with `call.text_before`) and why it ended."""
        self.counts["calls"] += 1
        return await self._watch(call, reject)

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        return list(await asyncio.gather(*(self._complete(request) for request in requests)))

    async def _complete(self, request: Request) -> Completion:
        self.counts["requests"] += 1
        budget = request.max_new_tokens
        if self.context_length is not None:  # a server refuses a request that cannot fit its context
            budget = min(budget, self.context_length - len(request.prompt_ids))
            if budget <= 0:
                return Completion(text="", token_ids=(), finish_reason="length")
        call = _Call(request, request.prompt_ids, budget, request.seed)
        if not request.banned_starts:
            text, reason = await self._call(call)
        elif self.ban_method == "reject":
            text, reason = await self._rejecting(call, self._ban(request.banned_starts))
        elif self.ban_method == "backend":
            text, reason = await self._call(replace(call, banned_starts=request.banned_starts))
            if self._ban(request.banned_starts).violates(text):
                raise ServerError(f"{self.model_id}: the backend's banned-start processor let a banned start through")
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
        text, ids, sampled = "", list(call.prompt_ids), 0
        while (state := ban.state(text)) is not None:
            if sampled >= call.max_tokens:
                return text, "length"
            sampled += 1  # counted apart from the text: a token may decode to nothing (a special token)
            one = _Call(call.request, tuple(ids), 1, _mix(call.seed, sampled), tuple(ban.banned_ids(state)), text)
            text, reason = await self._call(one)
            if ban.violates(text):
                raise ServerError(
                    f"{self.model_id}: the backend ignored the banned-start mask ({self.ban_method}); "
                    "try --ban-method generation_config (transformers serve) or --ban-method reject"
                )
            if reason != "length":  # a stop string, a limit or the end of the text
                return text, reason
            ids = [*call.prompt_ids, *self.encode(text)]
        left = call.max_tokens - sampled
        if left <= 0:
            return text, "length"
        return await self._call(_Call(call.request, tuple(ids), left, call.seed, (), text))

    async def _watch(self, call: _Call, reject: StartBan | None) -> tuple[str, str]:
        text, scanned, start_decided = call.text_before, len(call.text_before), reject is None
        deltas = self._deltas(call)
        try:
            async for piece, reason in deltas:
                text += piece
                if not start_decided:
                    if reject.violates(text):  # type: ignore[union-attr]
                        return text, "banned"
                    start_decided = reject.state(text) is None  # type: ignore[union-attr]
                ended = finish(call.request, text, scanned)
                if ended is not None:
                    return text[: ended[1]], ended[0]
                scanned = len(text)
                if reason is not None:
                    return text, reason
        finally:
            await deltas.aclose()  # closing the stream stops the generation at the backend
        raise ServerError("the stream ended without a finish reason")
