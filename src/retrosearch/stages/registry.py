"""The one list of stage commands, read by the CLI and by recipes alike.

An entry names the command, the words that call it on the command line, the function that runs it and the
config classes its options fill (their fields carry the help). Modules load only when a command is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from retrosearch.config import build_all

ENGINE = "retrosearch.engines:EngineConfig"
EXECUTOR = "retrosearch.executors:ExecutorConfig"


@dataclass(frozen=True)
class Command:
    name: str  # as a recipe's `command`
    words: tuple[str, ...]  # on the command line
    function: str  # "module:attr", called with one instance of each config class, in order
    configs: tuple[str, ...]  # "module:attr" of each config class
    help: str

    def config_classes(self) -> list[type]:
        return [_load(reference) for reference in self.configs]

    def build(self, options: dict[str, Any]) -> list[Any]:
        """The configs from options (names as on the command line); an unknown option is refused."""
        return build_all(options, *self.config_classes())

    def run(self, options: dict[str, Any]) -> dict[str, Any]:
        return _load(self.function)(*self.build(options))


COMMANDS = {
    command.name: command
    for command in (
        Command(
            "generate",
            ("generate",),
            "retrosearch.generate:generate",
            ("retrosearch.generate:GenerateConfig", ENGINE, EXECUTOR),
            "sample traces for problems",
        ),
        Command(
            "revise",
            ("revise",),
            "retrosearch.revise:revise",
            ("retrosearch.revise:ReviseConfig", "retrosearch.search.retro_search:RetroSearchConfig", ENGINE, EXECUTOR),
            "revise traces with Retro-Search",
        ),
        Command(
            "select",
            ("select",),
            "retrosearch.selection:select",
            ("retrosearch.selection:SelectConfig",),
            "shortest-correct-of-N baseline from generate samples",
        ),
        Command(
            "sft",
            ("sft",),
            "retrosearch.sft:sft",
            ("retrosearch.sft:SFTRunConfig",),
            "fine-tune a student on traces with TRL (full or LoRA)",
        ),
        Command(
            "eval",
            ("eval",),
            "retrosearch.evaluate:evaluate",
            ("retrosearch.evaluate:EvalConfig", ENGINE, EXECUTOR),
            "accuracy, length and switches on math benchmarks",
        ),
        Command(
            "teacher",
            ("organism", "teacher"),
            "retrosearch.organism.export:export_teacher_run",
            ("retrosearch.organism.export:TeacherConfig",),
            "export the organism teacher's traces (the strong model's dataset)",
        ),
        Command(
            "organism-train",
            ("organism", "train"),
            "retrosearch.organism.train:train_run",
            ("retrosearch.organism.train_config:TrainRun", "retrosearch.organism.train_config:TrainConfig"),
            "train the organism (resumable)",
        ),
    )
}


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
