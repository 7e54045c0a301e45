"""Engines behind one interface; heavy backends are imported only when chosen."""

from __future__ import annotations

from dataclasses import dataclass

from retrosearch.engines.base import Completion, Engine, Request

__all__ = ["Completion", "Engine", "EngineConfig", "Request", "load_engine", "resolve_model"]

ENGINES = ("transformers",)


@dataclass(frozen=True)
class EngineConfig:
    model: str = "organism"  # a hub id, a local path, or "organism" (the embedded default)
    revision: str | None = None
    engine: str = "transformers"
    device: str | None = None  # default: cuda when available, else cpu
    dtype: str = "auto"
    batch_size: int = 64


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
    raise ValueError(f"unknown engine {config.engine!r}; available: {', '.join(ENGINES)}")
