"""Engines behind one interface; heavy backends are imported only when chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from retrosearch.engines.base import Completion, Engine, Request

__all__ = ["Completion", "Engine", "EngineConfig", "Request", "load_engine", "resolve_model"]

ENGINES = ("transformers", "vllm", "openai")


@dataclass(frozen=True)
class EngineConfig:
    model: str = "organism"  # a hub id, a local path, or "organism" (the embedded default)
    revision: str | None = None
    engine: Literal["transformers", "vllm", "openai"] = "transformers"
    device: str | None = None  # default: cuda when available, else cpu
    dtype: str = "auto"
    batch_size: int = 64  # transformers: rows per batch; vllm: most sequences; openai: requests in flight
    tensor_parallel_size: int = 1  # vllm
    gpu_memory_utilization: float = 0.9  # vllm
    base_url: str | None = None  # openai: the server, e.g. http://127.0.0.1:8000
    api_key_env: str | None = None  # openai: the environment variable that holds the API key
    served_model: str | None = None  # openai: the server's name of the model (default: --model, resolved)
    prompt_format: Literal["auto", "ids", "text"] = "auto"  # openai: token-id or text prompts
    retries: int = 8  # openai: retries of one request on 429/5xx/timeouts/broken connections
    ban_method: Literal["logit_bias", "generation_config", "reject"] = "logit_bias"  # openai
    ban_attempts: int = 32  # openai, --ban-method reject: samples of a step before it ends "banned"


def resolve_model(model: str) -> str:
    """'organism' is the checkpoint shipped inside the package; anything else is left as given."""
    if model == "organism":
        from retrosearch.organism import checkpoint_path

        return str(checkpoint_path())
    return model


def load_engine(config: EngineConfig) -> Engine:
    if config.engine == "transformers":
        from retrosearch.engines.transformers_engine import TransformersEngine

        engine = TransformersEngine.from_pretrained(
            resolve_model(config.model),
            revision=config.revision,
            device=config.device,
            dtype=config.dtype,
            max_batch_size=config.batch_size,
        )
        engine.model_id = config.model
        return engine
    if config.engine == "vllm":
        from retrosearch.engines.vllm_engine import VLLMEngine

        return VLLMEngine.from_pretrained(
            resolve_model(config.model),
            revision=config.revision,
            dtype=config.dtype,
            max_num_seqs=config.batch_size,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            model_id=config.model,
        )
    if config.engine == "openai":
        from retrosearch.engines.openai_engine import OpenAIEngine

        if not config.base_url:
            raise ValueError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000)")
        return OpenAIEngine.connect(
            config.base_url,
            resolve_model(config.model),
            api_key_env=config.api_key_env,
            served_model=config.served_model,
            revision=config.revision,
            max_in_flight=config.batch_size,
            retries=config.retries,
            ban_method=config.ban_method,
            ban_attempts=config.ban_attempts,
            prompt_format=config.prompt_format,
        )
    raise ValueError(f"unknown engine {config.engine!r}; available: {', '.join(ENGINES)}")
