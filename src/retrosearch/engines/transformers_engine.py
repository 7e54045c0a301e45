"""The `transformers` engine: continuous batching with a KV cache, on CPU or GPU.

Requests from many concurrent searches join the running batch between decoding steps (their prompts
are prefilled, then their cache is merged in, left padded), and a finished row leaves at once and is
answered at once, so the batch stays full while work is waiting. Each row samples from its own seeded
generator, so its output depends on its request alone, not on the rows it ran beside. Stop strings,
banned starts, occurrence limits and max tokens apply per row.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from retrosearch.engines.banning import StartBan, StartBans
from retrosearch.engines.base import WORK_POSITION, Completion, Engine, Request
from retrosearch.engines.watch import finish


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


Deliver = Callable[[Completion | BaseException], None]


@dataclass
class Row:
    request: Request
    deliver: Deliver
    text: IncrementalText
    generator: torch.Generator
    ban: StartBan | None
    finish_reason: str | None = None
    stop_scan_from: int = 0
    banned_state_done: bool = False
    next_token: int = -1  # sampled, not yet fed to the model

    def completion(self) -> Completion:
        return Completion(text=self.text.final(), token_ids=tuple(self.text.ids), finish_reason=self.finish_reason)


@dataclass
class Batch:
    """The rows being decoded together: their KV cache, attention mask and next positions."""

    rows: list[Row]
    cache: DynamicCache
    mask: torch.Tensor  # (rows, cache length), 0 on left padding
    positions: torch.Tensor  # (rows,), the position of each row's next token


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def merge_batches(first: Batch, second: Batch) -> Batch:
    """One batch of both, caches left padded to one length; columns that are padding everywhere dropped."""
    length = max(first.mask.shape[1], second.mask.shape[1])
    pads = (length - first.mask.shape[1], length - second.mask.shape[1])
    mask = torch.cat([_pad_left(first.mask, pads[0], 1), _pad_left(second.mask, pads[1], 1)])
    start = int((mask.sum(0) > 0).nonzero()[0])
    cache = DynamicCache()
    for index, (one, two) in enumerate(zip(first.cache.layers, second.cache.layers, strict=True)):
        keys = torch.cat([_pad_left(one.keys, pads[0], 2), _pad_left(two.keys, pads[1], 2)])
        values = torch.cat([_pad_left(one.values, pads[0], 2), _pad_left(two.values, pads[1], 2)])
        cache.update(keys[:, :, start:], values[:, :, start:], index)
    return Batch(first.rows + second.rows, cache, mask[:, start:], torch.cat([first.positions, second.positions]))


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
        self.start_ban = StartBans(tokenizer)
        # waiting requests, earliest work item first (then in arrival order): (position, arrival, request, deliver)
        self._queue: queue.PriorityQueue[tuple[int, int, Request, Deliver]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self.generated_tokens = 0
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.context_length = self.max_length
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

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        position = WORK_POSITION.get()
        for request, future in zip(requests, futures, strict=True):
            self._queue.put((position, next(self._arrivals), request, _future_deliver(loop, future)))
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve_forever, name="retrosearch-engine", daemon=True)
                self._worker.start()
        return list(await asyncio.gather(*futures))

    def _serve_forever(self) -> None:
        def take(room: int, wait: bool) -> list[tuple[Request, Deliver]]:
            items = [self._queue.get()] if wait else []
            while len(items) < room:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            return [(request, deliver) for _, _, request, deliver in items]

        while True:
            self.decode(take)

    def run_batch(self, requests: Sequence[Request]) -> list[Completion]:
        """Generate for some requests synchronously (the async API batches across callers for you)."""
        results: list[Completion | BaseException | None] = [None] * len(requests)

        def deliver_to(index: int) -> Deliver:
            def deliver(result: Completion | BaseException) -> None:
                if results[index] is None:  # the first word on a request is final
                    results[index] = result

            return deliver

        waiting = deque((request, deliver_to(index)) for index, request in enumerate(requests))

        def take(room: int, wait: bool) -> list[tuple[Request, Deliver]]:
            return [waiting.popleft() for _ in range(min(room, len(waiting)))]

        self.decode(take)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def decode(self, take: Callable[[int, bool], list[tuple[Request, Deliver]]]) -> None:
        """Decode until no row is left and `take` gives no more; `take(room, wait)` admits new requests.

        An error (out of memory, a broken prompt) is handed to every request it touched; decoding goes on.
        """
        batch: Batch | None = None
        while True:
            rows = len(batch.rows) if batch else 0
            admitted = take(self.max_batch_size - rows, rows == 0) if rows < self.max_batch_size else []
            try:
                if admitted:
                    fresh = self._prefill(admitted)
                    if fresh is not None:
                        batch = fresh if batch is None else merge_batches(batch, fresh)
                if batch is None:
                    if not admitted:
                        return
                    continue
                batch = self._step(batch)
            except Exception as error:
                touched = [row.deliver for row in batch.rows] if batch else []
                for deliver in touched + [deliver for _, deliver in admitted]:
                    deliver(error)
                batch = None

    def _new_row(self, request: Request, deliver: Deliver) -> Row:
        return Row(
            request=request,
            deliver=deliver,
            text=IncrementalText(self.tokenizer),
            generator=torch.Generator(device=self.device).manual_seed(request.seed),
            ban=self.start_ban(request.banned_starts) if request.banned_starts else None,
        )

    def _prefill(self, admitted: list[tuple[Request, Deliver]]) -> Batch | None:
        rows = [self._new_row(request, deliver) for request, deliver in admitted]
        width = max(len(row.request.prompt_ids) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            prompt = row.request.prompt_ids
            input_ids[index, width - len(prompt) :] = torch.tensor(prompt)
            mask[index, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._forward(input_ids, mask, positions, cache)
        fresh = Batch(rows, cache, mask, positions[:, -1] + 1)
        return self._sample_and_prune(fresh, logits)

    def _step(self, batch: Batch) -> Batch | None:
        tokens = torch.tensor([[row.next_token] for row in batch.rows])
        batch.mask = torch.cat([batch.mask, torch.ones((len(batch.rows), 1), dtype=torch.long)], dim=1)
        logits = self._forward(tokens, batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        return self._sample_and_prune(batch, logits)

    def _sample_and_prune(self, batch: Batch, logits: torch.Tensor) -> Batch | None:
        picks = [self._sample(logits[slot], row) for slot, row in enumerate(batch.rows)]
        for row, token in zip(batch.rows, torch.stack(picks).tolist(), strict=True):  # one device sync a step
            self._advance(row, token)
        keep = [slot for slot, row in enumerate(batch.rows) if row.finish_reason is None]
        for row in batch.rows:
            if row.finish_reason is not None:
                row.deliver(row.completion())
        if not keep:
            return None
        if len(keep) < len(batch.rows):
            batch.cache.batch_select_indices(torch.tensor(keep, device=self.device))
            batch.rows = [batch.rows[slot] for slot in keep]
            batch.mask, batch.positions = batch.mask[keep], batch.positions[keep]
        return batch

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
        row.next_token = token
        row.text.append(token)
        text = row.text.text
        ended = finish(request, text, row.stop_scan_from)
        if ended is not None:
            row.finish_reason = ended[0]
            return
        row.stop_scan_from = len(text)
        total = len(request.prompt_ids) + len(row.text.ids)
        if len(row.text.ids) >= request.max_new_tokens or (self.max_length and total >= self.max_length):
            row.finish_reason = "length"


def _future_deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> Deliver:
    """Settle an asyncio future from the engine's thread."""

    def settle(result: Completion | BaseException) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    return lambda result: loop.call_soon_threadsafe(settle, result)
