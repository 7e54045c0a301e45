"""retrosearch: Retro-Search (Lu et al., 2025) and the distillation loop around it, as a CLI and a Python API.

The API mirrors the CLI: each command is a function of its config dataclasses, importable from here (loaded on
first use, so `import retrosearch` stays light)::

    from retrosearch import EngineConfig, ReviseConfig, RetroSearchConfig, revise

    revise(ReviseConfig(input="traces.jsonl", output="runs/r1"), RetroSearchConfig(), EngineConfig(model="organism"))
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "generate": "retrosearch.stages.generate",
    "GenerateConfig": "retrosearch.stages.generate",
    "revise": "retrosearch.stages.revise",
    "ReviseConfig": "retrosearch.stages.revise",
    "merge": "retrosearch.stages.merge",
    "MergeConfig": "retrosearch.stages.merge",
    "select": "retrosearch.stages.select",
    "SelectConfig": "retrosearch.stages.select",
    "cut": "retrosearch.stages.cut",
    "CutConfig": "retrosearch.stages.cut",
    "first_correct_cut": "retrosearch.search.first_correct",
    "decontaminate": "retrosearch.stages.decontaminate",
    "export": "retrosearch.stages.export",
    "ExportConfig": "retrosearch.stages.export",
    "DecontaminateConfig": "retrosearch.stages.decontaminate",
    "sft": "retrosearch.stages.sft",
    "SFTRunConfig": "retrosearch.stages.sft",
    "evaluate": "retrosearch.stages.eval",
    "EvalConfig": "retrosearch.stages.eval",
    "RetroSearch": "retrosearch.search.retro_search",
    "RetroSearchConfig": "retrosearch.search.retro_search",
    "EngineConfig": "retrosearch.engines",
    "SamplingConfig": "retrosearch.engines",
    "PromptConfig": "retrosearch.engines",
    "load_engine": "retrosearch.engines",
    "ExecutorConfig": "retrosearch.executors",
    "write_report": "retrosearch.tools.report",
    "inspect_file": "retrosearch.tools.inspect",
    "run_recipe": "retrosearch.pipelines.recipe",
    "demo": "retrosearch.pipelines.demo",
    "DemoConfig": "retrosearch.pipelines.demo",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'retrosearch' has no attribute {name!r}")
    return getattr(importlib.import_module(_API[name]), name)


def __dir__() -> list[str]:
    return __all__
