"""Executors: where a stage's per-item work runs, behind one contract (`base`): in this process (`local`,
asyncio, one engine) or on Ray actors (`--ray`, `retrosearch.executors.ray`, one engine each)."""

from __future__ import annotations

from retrosearch.engines import Engine, EngineConfig
from retrosearch.executors.base import Executor, ExecutorConfig, Worker, WorkerSpec
from retrosearch.executors.local import LocalExecutor

__all__ = ["Executor", "ExecutorConfig", "LocalExecutor", "Worker", "WorkerSpec", "make_executor"]


def make_executor(config: ExecutorConfig, engine_config: EngineConfig, engine: Engine | None = None) -> Executor:
    """The executor `config` asks for; `engine` (already loaded) serves an in-process run."""
    if config.ray:
        if engine is not None:
            raise ValueError("--ray builds one engine per actor from the engine options; pass no loaded engine")
        from retrosearch.executors.ray import RayExecutor

        return RayExecutor(engine_config, config)
    return LocalExecutor(engine_config, config, engine)
