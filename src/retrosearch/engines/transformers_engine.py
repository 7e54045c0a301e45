"""The `transformers` engine: continuous batching with a KV cache, on CPU or GPU.

Requests from many concurrent searches join the running batch between decoding steps (each prompt is
prefilled on its own, from the cached KV of an earlier prompt with the same prefix, into buffers of its own,
kv.py), and a finished row leaves the batch and is answered at once, so the batch stays full while work is
waiting. A request's `then` continues its row in place, cache and all. Each row attends to its own tokens only
and samples from its own seeded generator, so its output depends on its request alone, not on the rows it ran
beside. Stop strings, banned starts, occurrence limits and max tokens apply per row.
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
from retrosearch.engines.base import WORK_POSITION, Completion, Engine, Request, chained
from retrosearch.engines.kv import ROW_ATTENTION, RowKV, RowsCache
from retrosearch.engines.prefix_cache import Layers, PrefixCache, default_budget_bytes
from retrosearch.engines.threads import resolved_device, use_cpu_threads
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


@dataclass(frozen=True)
class Delivery:
    """Where a request's answer goes, and whether anyone still waits for it (a row nobody wants leaves)."""

    settle: Callable[[Completion | BaseException], None]
    wanted: Callable[[], bool] = lambda: True


@dataclass
class Row:
    request: Request
    delivery: Delivery
    text: IncrementalText
    generator: torch.Generator | None = None  # set by the engine's _start
    ban: StartBan | None = None
    finish_reason: str | None = None
    stop_scan_from: int = 0
    banned_state_done: bool = False
    next_token: int = -1  # sampled, not yet fed to the model
    kv: RowKV | None = None  # the keys and values of every token fed to the model so far
    earlier: tuple[Completion, ...] = ()  # completions of the requests this row continued

    def own_completion(self) -> Completion:
        return Completion(text=self.text.final(), token_ids=tuple(self.text.ids), finish_reason=self.finish_reason)

    def completion(self) -> Completion:
        return chained([*self.earlier, self.own_completion()])


PREFILL_TOKENS = 16384  # the most rows times longest prompt one batched prefill takes (`batched_prefill`)
NUCLEUS_CANDIDATES = 1024  # the most likely tokens a nucleus is looked for in before sorting the whole vocabulary


def nucleus(probs: torch.Tensor, top_p: Sequence[float]) -> torch.Tensor:
    """Each row's probabilities with the tokens outside its top-p nucleus set to 0: the most likely tokens whose
    mass before them is under top_p. Found among the NUCLEUS_CANDIDATES most likely where they hold top_p (almost
    always), else by sorting the row's whole vocabulary; the same tokens either way."""
    thresholds = torch.tensor(top_p, device=probs.device, dtype=probs.dtype)[:, None]
    truncated = thresholds[:, 0] < 1.0
    if not bool(truncated.any()):
        return probs
    top, order = torch.topk(probs, min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    before = top.cumsum(-1) - top
    held = before[:, -1] + top[:, -1] >= thresholds[:, 0]
    kept = torch.zeros_like(probs).scatter_(1, order, top.masked_fill(before >= thresholds, 0.0))
    for row in (~held & truncated).nonzero().flatten().tolist():
        ordered, everything = torch.sort(probs[row], descending=True)
        ordered[ordered.cumsum(-1) - ordered >= thresholds[row]] = 0.0
        kept[row] = torch.zeros_like(probs[row]).scatter_(0, everything, ordered)
    return torch.where(truncated[:, None], kept, probs)


class TransformersEngine(Engine):
    continues_in_place = True

    def __init__(
        self, model, tokenizer, model_id: str = "", max_batch_size: int = 64, prefix_cache_mb: int | None = None
    ) -> None:
        self.model = model.eval()
        model.set_attn_implementation(ROW_ATTENTION)
        self.tokenizer = tokenizer
        self.model_id = model_id or getattr(model, "name_or_path", "")
        self.revision = getattr(model.config, "_commit_hash", None)
        self.max_batch_size = max_batch_size
        self.device = next(model.parameters()).device
        self.batched_prefill = self.device.type == "cuda"  # a CPU gains nothing from it
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.start_ban = StartBans(tokenizer)
        # waiting requests, earliest work item first (then in arrival order): (position, arrival, request, delivery)
        self._queue: queue.PriorityQueue[tuple[int, int, Request, Delivery]] = queue.PriorityQueue()
        self._arrivals = itertools.count()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._followups: deque[tuple[Request, Delivery]] = deque()  # continuations that could not go on in place
        budget = default_budget_bytes(self.device) if prefix_cache_mb is None else prefix_cache_mb << 20
        self.prefix_cache = PrefixCache(budget)
        self.generated_tokens = self.prefilled_tokens = self.reused_prompt_tokens = 0
        self.cancelled_requests = self.cancelled_tokens = 0  # requests whose caller left before their answer
        self.max_length = getattr(model.config, "max_position_embeddings", None)
        self.context_length = self.max_length
        self.step_cache = RowsCache(model.config.get_text_config().num_hidden_layers)
        self._cache_argument = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_size: int = 64,
        prefix_cache_mb: int | None = None,
        threads: int | None = None,
    ) -> TransformersEngine:
        device = resolved_device(device)
        if device == "cpu":
            use_cpu_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=dtype).to(device)
        return cls(model, tokenizer, model_id, max_batch_size, prefix_cache_mb)

    def reset_prefix_cache(self) -> None:
        self.prefix_cache = PrefixCache(self.prefix_cache.budget_bytes)

    @property
    def counts(self) -> dict[str, int]:  # type: ignore[override]
        return {
            "generated_tokens": self.generated_tokens,
            "prefilled_tokens": self.prefilled_tokens,
            "reused_prompt_tokens": self.reused_prompt_tokens,
            "cancelled_requests": self.cancelled_requests,
            "cancelled_tokens": self.cancelled_tokens,
        }

    async def generate(self, requests: Sequence[Request]) -> list[Completion]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in requests]
        position = WORK_POSITION.get()
        for request, future in zip(requests, futures, strict=True):
            self._queue.put((position, next(self._arrivals), request, _future_delivery(loop, future)))
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve_forever, name="retrosearch-engine", daemon=True)
                self._worker.start()
        return list(await asyncio.gather(*futures))

    def _serve_forever(self) -> None:
        def take(room: int, wait: bool) -> list[tuple[Request, Delivery]]:
            items = [self._queue.get()] if wait else []
            while len(items) < room:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            return [(request, delivery) for _, _, request, delivery in items]

        while True:
            self.decode(take)

    def run_batch(self, requests: Sequence[Request]) -> list[Completion]:
        """Generate for some requests synchronously (the async API batches across callers for you)."""
        results: list[Completion | BaseException | None] = [None] * len(requests)

        def deliver_to(index: int) -> Delivery:
            def deliver(result: Completion | BaseException) -> None:
                if results[index] is None:  # the first word on a request is final
                    results[index] = result

            return Delivery(deliver)

        waiting = deque((request, deliver_to(index)) for index, request in enumerate(requests))

        def take(room: int, wait: bool) -> list[tuple[Request, Delivery]]:
            return [waiting.popleft() for _ in range(min(room, len(waiting)))]

        self.decode(take)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def decode(self, take: Callable[[int, bool], list[tuple[Request, Delivery]]]) -> None:
        """Decode until no row is left and `take` gives no more; `take(room, wait)` admits new requests.

        An error (out of memory, a broken prompt) is handed to every request it touched; decoding goes on.
        """
        rows: list[Row] = []
        while True:
            admitted = self._admit(take, self.max_batch_size - len(rows), not rows)
            try:
                rows += self._prefill_all(admitted)
                if not rows:
                    if not admitted:
                        return
                    continue
                rows = self._step(rows)
            except Exception as error:
                for delivery in [row.delivery for row in rows] + [delivery for _, delivery in admitted]:
                    delivery.settle(error)
                rows = []

    def _admit(self, take: Callable[[int, bool], list[tuple[Request, Delivery]]], room: int, idle: bool):
        """Up to `room` requests: continuations first, then what `take` gives (waiting for one when idle)."""
        admitted = []
        while self._followups and len(admitted) < room:
            admitted.append(self._followups.popleft())
        if len(admitted) < room:
            admitted += take(room - len(admitted), idle and not admitted)
        return admitted

    def _start(self, row: Row, request: Request) -> None:
        """Set a row to serve `request` from its next token on (a new row, or one continued in place)."""
        row.request = request
        row.text = IncrementalText(self.tokenizer)
        row.generator = torch.Generator(device=self.device).manual_seed(request.seed)
        row.ban = self.start_ban(request.banned_starts) if request.banned_starts else None
        row.finish_reason, row.stop_scan_from, row.banned_state_done = None, 0, False

    def _new_row(self, request: Request, delivery: Delivery) -> Row:
        row = Row(request, delivery, IncrementalText(self.tokenizer))
        self._start(row, request)
        return row

    def _prefill_all(self, admitted: list[tuple[Request, Delivery]]) -> list[Row]:
        """The rows of the admitted requests still wanted: prefilled in groups (`batched_prefill`, on a GPU) or one
        at a time. A group that fails is prefilled again one at a time, so that a prompt the model cannot take
        fails alone."""
        wanted = [(request, delivery) for request, delivery in admitted if delivery.wanted()]
        rows = []
        for group in self._prefill_groups(wanted) if self.batched_prefill else [[item] for item in wanted]:
            if len(group) > 1:
                try:
                    rows += self._prefill_together(group)
                    continue
                except Exception:  # each request is tried alone below, and one that fails is told
                    pass
            for request, delivery in group:
                try:
                    rows += self._prefill(request, delivery)
                except Exception as error:
                    delivery.settle(error)
        return rows

    def _prefill_groups(self, wanted: list[tuple[Request, Delivery]]) -> list[list[tuple[Request, Delivery]]]:
        """Consecutive requests, grouped so that a group's rows times its longest prompt stay within PREFILL_TOKENS."""
        groups: list[list[tuple[Request, Delivery]]] = []
        longest = 0
        for item in wanted:
            length = len(item[0].prompt_ids)
            if groups and (len(groups[-1]) + 1) * max(longest, length) <= PREFILL_TOKENS:
                groups[-1].append(item)
                longest = max(longest, length)
            else:
                groups.append([item])
                longest = length
        return groups

    def _prefill_together(self, group: list[tuple[Request, Delivery]]) -> list[Row]:
        """Prefill several prompts in one forward pass, each from its longest cached prefix. Row b's columns: its
        cached prefix, right-aligned in the first `past` columns; then its remaining prompt, right-aligned in the
        last `new`, so that every row's last column is its last prompt token. Padding is masked out, except that a
        padding column attends to itself (an all-masked row of attention would give NaN)."""
        requests = [request for request, _ in group]
        found = [self.prefix_cache.longest(request.prompt_ids) for request in requests]
        reused = [length for length, _ in found]
        fresh = [len(request.prompt_ids) - length for request, length in zip(requests, reused, strict=True)]
        past, new, rows = max(reused), max(fresh), len(group)
        ids = torch.full((rows, new), self.pad_id, dtype=torch.long)
        positions = torch.zeros((rows, new), dtype=torch.long)
        real = torch.zeros((rows, past + new), dtype=torch.bool)
        for place, (request, length, count) in enumerate(zip(requests, reused, fresh, strict=True)):
            ids[place, new - count :] = torch.tensor(request.prompt_ids[length:])
            positions[place, new - count :] = torch.arange(length, len(request.prompt_ids))
            real[place, past - length : past] = True
            real[place, past + new - count :] = True
        causal = torch.arange(past + new)[None, :] <= torch.arange(past, past + new)[:, None]
        mask = real[:, None, None, :] & causal[None, None]
        padding = ~real[:, past:]
        mask[:, 0, torch.arange(new), past + torch.arange(new)] |= padding
        cache = DynamicCache()
        if past:
            shapes = next(layers for length, layers in found if length)
            for index, (keys, values) in enumerate(shapes):
                held_keys = keys.new_zeros((rows, keys.shape[1], past, keys.shape[3]))
                held_values = values.new_zeros((rows, values.shape[1], past, values.shape[3]))
                for place, (length, layers) in enumerate(found):
                    if length:
                        held_keys[place, :, past - length :] = layers[index][0][0, :, :length]
                        held_values[place, :, past - length :] = layers[index][1][0, :, :length]
                cache.update(held_keys, held_values, index)
        logits = self._forward(ids, mask, positions, cache)
        prefilled = []
        for place, (length, count) in enumerate(zip(reused, fresh, strict=True)):
            columns = torch.cat([torch.arange(past - length, past), torch.arange(past + new - count, past + new)])
            columns = columns.to(self.device)
            prefilled.append(
                [
                    (
                        layer.keys[place : place + 1].index_select(2, columns),
                        layer.values[place : place + 1].index_select(2, columns),
                    )
                    for layer in cache.layers
                ]
            )
        self.reused_prompt_tokens += sum(reused)
        self.prefilled_tokens += sum(fresh)
        return self._first_tokens(group, prefilled, logits)

    def _first_tokens(
        self, group: list[tuple[Request, Delivery]], prefilled: list[Layers], logits: torch.Tensor
    ) -> list[Row]:
        """Rows for prefilled requests (each one's prompt KV in `prefilled`, its prompt's last logits in `logits`),
        their prompts offered to the prefix cache and their first tokens sampled: the rows that go on."""
        rows = []
        for (request, delivery), layers in zip(group, prefilled, strict=True):
            row = self._new_row(request, delivery)
            row.kv = RowKV(layers, len(request.prompt_ids))
            self.prefix_cache.add(request.prompt_ids, row.kv.prefix(len(request.prompt_ids)))
            rows.append(row)
        for row, token in zip(rows, self._pick(logits, rows), strict=True):
            self._advance(row, token)
        return [row for row in rows if self._settle(row)]

    def _prefill(self, request: Request, delivery: Delivery) -> list[Row]:
        """Prefill one prompt from the longest cached prefix it shares and sample its first token: its row, or none
        when it needs no place in the batch (nobody waits for it any more, or it ended at once)."""
        if not delivery.wanted():
            return []
        prompt = request.prompt_ids
        reused, layers = self.prefix_cache.longest(prompt)
        cache = DynamicCache()
        for index, (keys, values) in enumerate(layers):
            cache.update(keys[:, :, :reused], values[:, :, :reused], index)
        logits = self._forward(
            torch.tensor([prompt[reused:]]),
            torch.ones((1, len(prompt)), dtype=torch.long),
            torch.arange(reused, len(prompt))[None],
            cache,
        )
        self.reused_prompt_tokens += reused
        self.prefilled_tokens += len(prompt) - reused
        return self._first_tokens(
            [(request, delivery)], [[(layer.keys, layer.values) for layer in cache.layers]], logits
        )

    def _step(self, rows: list[Row]) -> list[Row]:
        """One token for every row; the rows that go on."""
        tokens = torch.tensor([[row.next_token] for row in rows])
        positions = torch.tensor([[row.kv.length] for row in rows])
        for row in rows:
            row.kv.reserve(1)
        self.step_cache.rows = [row.kv for row in rows]
        try:
            logits = self._forward(tokens, None, positions, self.step_cache.cache)
        finally:
            self.step_cache.rows = []
        for row in rows:
            row.kv.length += 1
        going = []
        for row, token in zip(rows, self._pick(logits, rows), strict=True):
            self._advance(row, token)
            if self._settle(row):
                going.append(row)
        return going

    def _settle(self, row: Row) -> bool:
        """Whether the row goes on: a finished row is answered, or continued with its `then`; a row whose caller
        is gone leaves without an answer."""
        if not row.delivery.wanted():
            row.finish_reason = "cancelled"
            self.cancelled_requests += 1
            self.cancelled_tokens += sum(len(done.token_ids) for done in row.earlier) + len(row.text.ids)
            return False
        if row.finish_reason is not None and not self._continue(row):
            row.delivery.settle(row.completion())
        return row.finish_reason is None

    def _continue(self, row: Row) -> bool:
        """Follow a finished row's `then`: in place when its cache holds the new prompt but the pending token,
        else as a new request answered with the chain. False when there is nothing to follow."""
        if row.request.then is None:
            return False
        done = row.own_completion()
        follow = row.request.then(done)
        if follow is None:
            return False
        in_place = (
            row.finish_reason != "eos"  # after an end of sequence the cache already holds the last token
            and done.token_ids
            and follow.prompt_ids == row.request.prompt_ids + done.token_ids
        )
        if in_place:
            row.earlier = (*row.earlier, done)
            self._start(row, follow)
            return True
        earlier, delivery = (*row.earlier, done), row.delivery

        def deliver_chain(result: Completion | BaseException) -> None:
            delivery.settle(result if isinstance(result, BaseException) else chained([*earlier, result]))

        self._followups.append((follow, Delivery(deliver_chain, delivery.wanted)))
        return True

    def _forward(self, input_ids, mask, positions, cache) -> torch.Tensor:
        output = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=None if mask is None else mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self._cache_argument: cache},
            logits_to_keep=1,
        )
        return output.logits[:, -1, :].float()

    def _pick(self, logits: torch.Tensor, rows: Sequence[Row]) -> list[int]:
        """The next token of each row from its logits (one row each): banned starts masked, then greedy, or
        sampled with the row's own generator from its nucleus, in vocabulary order."""
        for index, row in enumerate(rows):
            if row.ban is not None and not row.banned_state_done:
                state = row.ban.state(row.text.text)
                if state is None:
                    row.banned_state_done = True
                elif banned := row.ban.banned_ids(state):
                    logits[index, banned] = float("-inf")
        picks = torch.argmax(logits, dim=-1)
        sampled = [index for index, row in enumerate(rows) if row.request.temperature > 0]
        if sampled:
            temperatures = torch.tensor([rows[index].request.temperature for index in sampled], device=logits.device)
            probs = nucleus(
                torch.softmax(logits[sampled] / temperatures[:, None], dim=-1), [rows[i].request.top_p for i in sampled]
            )
            for place, index in enumerate(sampled):
                picks[index] = torch.multinomial(probs[place], 1, generator=rows[index].generator)[0]
        return picks.tolist()  # one device sync a step

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


def _future_delivery(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> Delivery:
    """Settle an asyncio future from the engine's thread; wanted until it is cancelled."""

    def settle(result: Completion | BaseException) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    return Delivery(lambda result: loop.call_soon_threadsafe(settle, result), lambda: not future.cancelled())
