"""Engines behind one interface; heavy backends are imported only when chosen."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from retrosearch.config import at_least, option
from retrosearch.engines.base import Completion, Engine, PromptConfig, Request, SamplingConfig

__all__ = [
    "Completion",
    "Engine",
    "EngineConfig",
    "PromptConfig",
    "Request",
    "SamplingConfig",
    "load_engine",
    "resolve_model",
]


@dataclass(frozen=True)
class EngineConfig:
    model: str = option("organism", "hub id, local path, or 'organism' (the embedded default)")
    revision: str | None = option(None, "model revision (branch, tag or commit) on the hub")
    engine: Literal["transformers", "vllm", "openai"] = option("transformers", "generation backend")
    device: str | None = option(None, "cpu, cuda, cuda:1, ... (default: cuda when available)", speed_only=True)
    dtype: str = option("auto", "model weights dtype (auto, float32, bfloat16, float16)")
    batch_size: int = option(
        64,
        "most requests per engine batch (transformers: rows; vllm: sequences; openai: requests in flight)",
        speed_only=True,
    )
    threads: int | None = option(
        None,
        "transformers on a CPU: torch threads (default: OMP_NUM_THREADS if set, else one per core this process may "
        "use that no other process keeps busy)",
        speed_only=True,
    )
    prefix_cache_mb: int | None = option(
        None,
        "transformers: memory for the KV of earlier prompts, reused by prompts sharing their prefix (default: 1024, "
        "or an eighth of the memory free at load where less; 0: off)",
        speed_only=True,
    )
    tensor_parallel_size: int = option(1, "vllm: GPUs one model is split over")
    gpu_memory_utilization: float | None = option(
        None,
        "vllm: share of GPU memory for weights and KV cache (default 0.9; on CPU, of CPU memory: 0.2)",
        speed_only=True,
    )
    base_url: str | None = option(None, "openai: server address, e.g. http://127.0.0.1:8000 (without /v1)")
    api_key_env: str | None = option(
        None,
        "openai: environment variable holding the API key (the key itself never goes on the command line)",
        speed_only=True,
    )
    served_model: str | None = option(
        None, "openai: the model's name on the server (default: --model; the organism's checkpoint path)"
    )
    prompt_format: Literal["auto", "ids", "text"] = option(
        "auto", "openai: send token ids (exact) or decoded text; auto tries ids and falls back once"
    )
    retries: int = option(
        8,
        "openai: retries per request on 408/429/5xx, timeouts and broken connections (backoff with jitter)",
        speed_only=True,
    )
    ban_method: Literal["logit_bias", "generation_config", "reject"] = option(
        "logit_bias",
        "openai: how a step's banned start is masked: logit_bias (vLLM, SGLang, llama.cpp, OpenAI), "
        "generation_config (transformers serve) or reject (resample; any server)",
    )
    ban_attempts: int = option(32, "openai, --ban-method reject: samples of a switch-suppressed step before giving up")
    prompt: PromptConfig = option(PromptConfig(), "how a problem becomes the model's prompt")

    def __post_init__(self) -> None:
        at_least(self, 1, "batch_size", "tensor_parallel_size", "ban_attempts", "threads")
        at_least(self, 0, "retries", "prefix_cache_mb")
        if self.gpu_memory_utilization is not None and not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"--gpu-memory-utilization must be in (0, 1] (got {self.gpu_memory_utilization})")


def resolve_model(model: str) -> str:
    """'organism' is the checkpoint shipped inside the package; anything else is left as given."""
    if model == "organism":
        from retrosearch.organism import checkpoint_path

        return str(checkpoint_path())
    return model


def _transformers(model: str, config: EngineConfig) -> Engine:
    from retrosearch.engines.transformers_engine import TransformersEngine

    return TransformersEngine.from_pretrained(
        model,
        revision=config.revision,
        device=config.device,
        dtype=config.dtype,
        max_batch_size=config.batch_size,
        prefix_cache_mb=config.prefix_cache_mb,
        threads=config.threads,
    )


def _installed(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ValueError(install)


def _vllm(model: str, config: EngineConfig) -> Engine:
    _installed(
        "vllm",
        "--engine vllm needs vLLM: pip install 'retrosearch[vllm]' (on a CPU, vLLM's CPU build: make vllm-setup, "
        "then .venv-vllm/bin/retrosearch)",
    )
    from retrosearch.engines.vllm_engine import VLLMEngine

    return VLLMEngine.from_pretrained(
        model,
        revision=config.revision,
        dtype=config.dtype,
        max_num_seqs=config.batch_size,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
    )


def _openai(model: str, config: EngineConfig) -> Engine:
    _installed("httpx", "--engine openai needs httpx: pip install 'retrosearch[openai]'")
    from retrosearch.engines.openai_engine import OpenAIEngine

    if not config.base_url:
        raise ValueError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000)")
    return OpenAIEngine.connect(
        config.base_url,
        model,
        api_key_env=config.api_key_env,
        served_model=config.served_model,
        revision=config.revision,
        max_in_flight=config.batch_size,
        retries=config.retries,
        ban_method=config.ban_method,
        ban_attempts=config.ban_attempts,
        prompt_format=config.prompt_format,
    )


LOADERS: dict[str, Callable[[str, EngineConfig], Engine]] = {
    "transformers": _transformers,
    "vllm": _vllm,
    "openai": _openai,
}  # each imports its backend only when chosen


def load_engine(config: EngineConfig) -> Engine:
    loader = LOADERS.get(config.engine)
    if loader is None:
        raise ValueError(f"unknown engine {config.engine!r}; available: {', '.join(LOADERS)}")
    engine = loader(resolve_model(config.model), config)
    engine.model_id = config.model  # what the user named (a backend may have resolved it to a path)
    engine.prompt = config.prompt
    return engine
