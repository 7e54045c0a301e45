"""The `transformers` engine: batched sampling with a KV cache, on CPU or GPU.

Requests from many concurrent searches are gathered into batches (left padding). Each row samples
from its own seeded generator, so a row's output depends on its request alone, not on the batch it
landed in. Finished rows leave the batch at once; stop strings, banned starts, occurrence limits and
max tokens are applied per row.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from retrosearch.engines.banning import StartBan
from retrosearch.engines.base import Completion, Engine, Request


def token_texts(tokenizer) -> list[str]:
    """Each token's text as it reads after other text (keeps SentencePiece's leading space)."""
    anchor = tokenizer("a", add_special_tokens=False)["input_ids"]
    anchor_text = tokenizer.decode(anchor)
    texts = []
    for token_id in range(len(tokenizer)):
        joined = tokenizer.decode([*anchor, token_id])
        texts.append(joined[len(anchor_text) :] if joined.startswith(anchor_text) else joined)
    return texts


class IncrementalText:
    """Decoded text of a growing id list without re-decoding it all at every token."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix_offset = 0
        self._read_offset = 0

    def append(self, token_id: int) -> None:
        self.ids.append(token_id)
        prefix = self.tokenizer.decode(self.ids[self._prefix_offset : self._read_offset])
        full = self.tokenizer.decode(self.ids[self._prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.text += full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)

    def final(self) -> str:
        return self.tokenizer.decode(self.ids)


@dataclass
class Row:
    request: Request
    text: IncrementalText
    generator: torch.Generator
    ban: StartBan | None
    finish_reason: str | None = None
    stop_scan_from: int = 0
    banned_state_done: bool = False


class TransformersEngine(Engine):
    def __init__(self, model, tokenizer, model_id: str = "", max_batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_id = model_id or getattr(model, "name_or_path", "")
        self.revision = getattr(model.config, "_commit_hash", None)
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self._token_texts: list[str] | None = None
        self._bans: dict[tuple[str, ...], StartBan] = {}
        self._pending: list[tuple[Request, asyncio.Future]] = []
        self._worker: asyncio.Task | None = None
        self.generated_tokens = 0
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self._cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_size: int = 64,
    ) -> TransformersEngine:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype).to(device)
        return cls(model, tokenizer, model_id=model_id, max_batch_size=max_batch_size)

    def start_ban(self, words: tuple[str, ...]) -> StartBan:
        if words not in self._bans:
            if self._token_texts is None:
                self._token_texts = token_texts(self.tokenizer)
            self._bans[words] = StartBan(self._token_texts, words)
        return self._bans[words]

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        self._pending.extend(zip(requests, futures, strict=True))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve())
        return list(await asyncio.gather(*futures))

    async def _serve(self) -> None:
        for _ in range(3):  # let every search that is ready queue its request first
            await asyncio.sleep(0)
        while self._pending:
            batch = self._pending[: self.max_batch_size]
            del self._pending[: self.max_batch_size]
            try:
                completions = await asyncio.to_thread(self.run_batch, [r for r, _ in batch])
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), completion in zip(batch, completions, strict=True):
                if not future.done():
                    future.set_result(completion)
            await asyncio.sleep(0)

    @torch.inference_mode()
    def run_batch(self, requests: Sequence[Request]) -> list[Completion]:
        """Generate for a batch of requests synchronously (the async API batches for you)."""
        rows = [
            Row(
                request=r,
                text=IncrementalText(self.tokenizer),
                generator=torch.Generator(device=self.device).manual_seed(r.seed),
                ban=self.start_ban(tuple(r.banned_starts)) if r.banned_starts else None,
            )
            for r in requests
        ]
        width = max(len(r.prompt_ids) for r in requests)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, request in enumerate(requests):
            input_ids[index, width - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            mask[index, width - len(request.prompt_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        active = list(range(len(rows)))
        logits = self._forward(input_ids, mask, positions, cache)
        while True:
            picks = [self._sample(logits[slot], rows[row_index]) for slot, row_index in enumerate(active)]
            next_tokens = torch.stack(picks).tolist()  # one device sync per step, not one per row
            for slot, row_index in enumerate(active):
                self._advance(rows[row_index], next_tokens[slot])
            keep = [slot for slot, i in enumerate(active) if rows[i].finish_reason is None]
            if not keep:
                break
            if len(keep) < len(active):
                cache.batch_select_indices(torch.tensor(keep, device=self.device))
                mask, positions = mask[keep], positions[keep]
            active = [active[slot] for slot in keep]
            step_ids = torch.tensor([[next_tokens[slot]] for slot in keep])
            mask = torch.cat([mask, torch.ones((len(keep), 1), dtype=torch.long)], dim=1)
            positions = positions[:, -1:] + 1
            logits = self._forward(step_ids, mask, positions, cache)
        return [
            Completion(text=row.text.final(), token_ids=tuple(row.text.ids), finish_reason=row.finish_reason)
            for row in rows
        ]

    def _forward(self, input_ids, mask, positions, cache) -> torch.Tensor:
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self._cache_argument: cache},
            logits_to_keep=1,
        )
        return output.logits[:, -1, :].float()

    def _sample(self, logits: torch.Tensor, row: Row) -> torch.Tensor:
        request = row.request
        if row.ban is not None and not row.banned_state_done:
            state = row.ban.state(row.text.text)
            if state is None:
                row.banned_state_done = True
            else:
                banned = row.ban.banned_ids(state)
                if banned:
                    logits = logits.clone()
                    logits[banned] = float("-inf")
        if request.temperature <= 0:
            return torch.argmax(logits)
        probs = torch.softmax(logits / request.temperature, dim=-1)
        if request.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs >= request.top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=row.generator)[0]

    def _advance(self, row: Row, token: int) -> None:
        request = row.request
        self.generated_tokens += 1
        if token in self.eos_ids:
            row.finish_reason = "eos"
            return
        row.text.append(token)
        text = row.text.text
        for stop in request.stop:
            found = text.find(stop, max(0, row.stop_scan_from - len(stop) + 1))
            if found >= 0:
                row.finish_reason = "stop"
                return
        row.stop_scan_from = len(text)
        if request.occurrence_limit is not None:
            needle, limit, until = request.occurrence_limit
            counted = text if until is None else text.split(until, 1)[0]
            if counted.count(needle) >= limit:
                row.finish_reason = "limit"
                return
        total = len(request.prompt_ids) + len(row.text.ids)
        if len(row.text.ids) >= request.max_new_tokens or (self.max_length and total >= self.max_length):
            row.finish_reason = "length"
