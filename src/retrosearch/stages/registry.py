"""The one list of commands, read by the CLI, by recipes and by the generated CLI reference alike.

An entry names the command, the words that call it on the command line, its kind, the function that runs it and
the config classes its options fill (their fields carry the help). Three kinds: a **stage** writes a run folder
(`retrosearch.stages.*`; recipes chain stages), a **tool** reads and shows (`retrosearch.tools.*`), a **pipeline**
chains stages (`retrosearch.pipelines.*`). Every function takes one instance of each config class, in order, and
returns a summary dict. Modules load only when a command is used.
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass
from typing import Any, Literal

from retrosearch.config import build_all, field_default, flat_fields, flat_values

ENGINE = "retrosearch.engines:EngineConfig"
EXECUTOR = "retrosearch.executors:ExecutorConfig"
SEARCH = "retrosearch.search.retro_search:RetroSearchConfig"
PROMPT = "retrosearch.engines.base:PromptConfig"
KINDS = ("stage", "tool", "pipeline")


@dataclass(frozen=True)
class Command:
    name: str  # as a recipe's `command`
    words: tuple[str, ...]  # on the command line
    kind: Literal["stage", "tool", "pipeline"]
    function: str  # "module:attr", called with one instance of each config class, in order
    configs: tuple[str, ...]  # "module:attr" of each config class
    help: str
    reported: bool = False  # when it finishes, the CLI prints the `retrosearch report` command for its folder

    def config_classes(self) -> list[type]:
        return [_load(reference) for reference in self.configs]

    def build(self, options: dict[str, Any]) -> list[Any]:
        """The configs from options (names as on the command line); an unknown option is refused."""
        return build_all(options, *self.config_classes())

    def run(self, options: dict[str, Any]) -> dict[str, Any]:
        return self.call(self.build(options))

    def call(self, configs: list[Any]) -> dict[str, Any]:
        """Run the command on configs already built."""
        return _load(self.function)(*configs)


COMMANDS = {
    command.name: command
    for command in (
        Command(
            "generate",
            ("generate",),
            "stage",
            "retrosearch.stages.generate:generate",
            ("retrosearch.stages.generate:GenerateConfig", ENGINE, EXECUTOR),
            "sample traces for problems",
            reported=True,
        ),
        Command(
            "revise",
            ("revise",),
            "stage",
            "retrosearch.stages.revise:revise",
            ("retrosearch.stages.revise:ReviseConfig", SEARCH, ENGINE, EXECUTOR),
            "revise traces with Retro-Search",
            reported=True,
        ),
        Command(
            "merge",
            ("merge",),
            "stage",
            "retrosearch.stages.merge:merge",
            ("retrosearch.stages.merge:MergeConfig",),
            "merge the run folders of revise --shard 0/n .. n-1/n",
        ),
        Command(
            "select",
            ("select",),
            "stage",
            "retrosearch.stages.select:select",
            ("retrosearch.stages.select:SelectConfig",),
            "shortest-correct-of-N baseline from generate samples",
        ),
        Command(
            "cut",
            ("cut",),
            "stage",
            "retrosearch.stages.cut:cut",
            ("retrosearch.stages.cut:CutConfig",),
            "first-correct-solution cuts (FCS, FCS+1) of traces, no model needed",
        ),
        Command(
            "decontaminate",
            ("decontaminate",),
            "stage",
            "retrosearch.stages.decontaminate:decontaminate",
            ("retrosearch.stages.decontaminate:DecontaminateConfig",),
            "find (and with --drop remove) rows whose problem is a benchmark problem, by n-gram overlap",
        ),
        Command(
            "export",
            ("export",),
            "stage",
            "retrosearch.stages.export:export",
            ("retrosearch.stages.export:ExportConfig",),
            "a run's traces as a Hugging Face dataset with its card (and on the Hub with --push-to-hub)",
        ),
        Command(
            "sft",
            ("sft",),
            "stage",
            "retrosearch.stages.sft:sft",
            ("retrosearch.stages.sft:SFTRunConfig",),
            "fine-tune a student on traces with TRL (full or LoRA)",
        ),
        Command(
            "eval",
            ("eval",),
            "stage",
            "retrosearch.stages.eval:evaluate",
            ("retrosearch.stages.eval:EvalConfig", ENGINE, EXECUTOR),
            "accuracy, length and switches on math benchmarks",
        ),
        Command(
            "teacher",
            ("organism", "teacher"),
            "stage",
            "retrosearch.stages.teacher:export_teacher_run",
            ("retrosearch.stages.teacher:TeacherConfig",),
            "export the organism teacher's traces (the strong model's dataset)",
        ),
        Command(
            "organism-train",
            ("organism", "train"),
            "stage",
            "retrosearch.stages.organism_train:train_run",
            ("retrosearch.organism.train_config:TrainRun", "retrosearch.organism.train_config:TrainConfig"),
            "train the organism (resumable)",
        ),
        Command(
            "inspect",
            ("inspect",),
            "tool",
            "retrosearch.tools.inspect:inspect",
            ("retrosearch.tools.inspect:InspectConfig",),
            "figures of trace datasets (no model needed)",
        ),
        Command(
            "prompt",
            ("prompt",),
            "tool",
            "retrosearch.tools.prompt:show_prompt",
            ("retrosearch.tools.prompt:ShowPromptConfig", PROMPT),
            "print the exact prompt of a row: at a thought switch, or for generation (tokenizer only)",
        ),
        Command(
            "show-config",
            ("show-config",),
            "tool",
            "retrosearch.tools.show_config:show_config",
            ("retrosearch.tools.show_config:ShowConfigConfig",),
            "the command line that reproduces a run (each stage of a recipe's run), its config hash and versions",
        ),
        Command(
            "report",
            ("report",),
            "tool",
            "retrosearch.tools.report:report",
            ("retrosearch.tools.report:ReportConfig",),
            "one self-contained HTML page of a run: its figures, plots and a trace viewer",
        ),
        Command(
            "run",
            ("run",),
            "pipeline",
            "retrosearch.pipelines.recipe:run",
            ("retrosearch.pipelines.recipe:RunConfig",),
            "run every stage of a YAML recipe, resumable, and print the table",
            reported=True,
        ),
        Command(
            "demo",
            ("demo",),
            "pipeline",
            "retrosearch.pipelines.demo:demo",
            ("retrosearch.pipelines.demo:DemoConfig",),
            "the main job on the embedded organism, in minutes on a CPU",
        ),
    )
}


def command_line(name: str, configs: tuple[Any, ...]) -> str:
    """The command line that reproduces a run of command `name` with these configs: its words, then every
    option whose value differs from its default (the manifest records the version it holds for)."""
    command = COMMANDS[name]
    parts = ["retrosearch", *command.words]
    for config in configs:
        values = flat_values(config)
        for field, _ in flat_fields(type(config)):
            value = values[field.name]
            if field.metadata.get("positional"):
                parts += [str(item) for item in value] if isinstance(value, (list, tuple)) else [str(value)]
            elif value != field_default(field):
                parts += as_option(field.name, value)
    return shlex.join(parts)


def as_option(name: str, value: Any) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [flag, *(str(item) for item in value)]
    return [flag, str(value)]


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)
