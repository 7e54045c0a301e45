"""`retrosearch run RECIPE`: the stages of a YAML recipe in order, each resumable, then the paper's table.

A recipe is data: `output` (the run folder), `stages` (each a `name`, a `command` — generate, revise,
select, sft or eval — and its `options`, the same names as the command-line options) and `table` (the eval
stages whose results make the final table). `{output}` and `{stage_name}` in an option are replaced by the
run folder and by that stage's output. Rerunning a recipe skips finished work inside every stage.
"""

from __future__ import annotations

import importlib
import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from retrosearch.config import read_yaml

PLACEHOLDER = re.compile(r"\{([a-zA-Z0-9_-]+)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Recipe:
    name: str
    output: str
    stages: list[Stage]
    table: list[str]
    description: str = ""


def load_recipe(path: str, output: str | None = None) -> Recipe:
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "stages" not in raw:
        raise ValueError(f"{path}: a recipe needs 'stages' (a list of name / command / options)")
    stages = []
    for index, stage in enumerate(raw["stages"], start=1):
        if not isinstance(stage, dict) or stage.get("command") not in STAGES:
            raise ValueError(f"{path}: stage {index} needs a command, one of {', '.join(STAGES)}")
        stages.append(Stage(stage.get("name", f"stage{index}"), stage["command"], dict(stage.get("options") or {})))
    names = [s.name for s in stages]
    for name in raw.get("table", []):
        if name not in names:
            raise ValueError(f"{path}: table names unknown stage {name!r}")
    return Recipe(
        raw.get("name", Path(path).stem),
        output or raw.get("output", f"runs/{Path(path).stem}"),
        stages,
        list(raw.get("table", [])),
        raw.get("description", ""),
    )


def stage_output(recipe: Recipe, stage: Stage) -> str:
    return stage.options.get("output") or str(Path(recipe.output) / stage.name)


def resolve(recipe: Recipe, stage: Stage) -> dict[str, Any]:
    """The stage's options with placeholders filled in."""
    outputs = {s.name: stage_output(recipe, s) for s in recipe.stages}
    outputs["output"] = recipe.output

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: outputs.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    options = {key.replace("-", "_"): fill(value) for key, value in stage.options.items()}
    options["output"] = fill(stage_output(recipe, stage))
    return options


def _split(options: dict[str, Any], *classes: type) -> list[Any]:
    known = {f.name for cls in classes for f in fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)}")
    built = []
    for cls in classes:
        names = {f.name for f in fields(cls)}
        chosen = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if k in names}
        built.append(cls(**chosen))
    return built


def plan(recipe: Recipe) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, command, resolved options) for every stage, validated, without loading any model."""
    steps = []
    for stage in recipe.stages:
        options = resolve(recipe, stage)
        _classes_for(stage.command, options)
        steps.append((stage.name, stage.command, options))
    return steps


ENGINE = "retrosearch.engines:EngineConfig"
# command -> (the function that runs it, the config classes its options fill); imported only when used
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "teacher": ("retrosearch.organism.export:export_teacher_run", ("retrosearch.organism.export:TeacherConfig",)),
    "generate": ("retrosearch.generate:generate", ("retrosearch.generate:GenerateConfig", ENGINE)),
    "revise": (
        "retrosearch.revise:revise",
        ("retrosearch.revise:ReviseConfig", "retrosearch.search.retro_search:RetroSearchConfig", ENGINE),
    ),
    "select": ("retrosearch.selection:select", ("retrosearch.selection:SelectConfig",)),
    "sft": ("retrosearch.sft:sft", ("retrosearch.sft:SFTRunConfig",)),
    "eval": ("retrosearch.evaluate:evaluate", ("retrosearch.evaluate:EvalConfig", ENGINE)),
}


def _load(reference: str) -> Any:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def _classes_for(command: str, options: dict[str, Any]) -> list[Any]:
    return _split(options, *(_load(reference) for reference in STAGES[command][1]))


def run_stage(command: str, options: dict[str, Any]) -> dict[str, Any]:
    return _load(STAGES[command][0])(*_classes_for(command, options))


def final_table(recipe: Recipe, results: dict[str, dict[str, Any]]) -> str:
    lines = ["| model | accuracy | avg tokens | avg switches | truncated |", "|---|---|---|---|---|"]
    for name in recipe.table:
        benchmarks = results[name]["benchmarks"]
        count = len(benchmarks)
        accuracy = sum(b["accuracy"] for b in benchmarks.values()) / count
        tokens = sum(b["tokens_mean"] for b in benchmarks.values()) / count
        switches = sum(b["switches_mean"] for b in benchmarks.values()) / count
        truncated = sum(b["truncated"] for b in benchmarks.values())
        lines.append(f"| {name} | {accuracy:.3f} | {tokens:.1f} | {switches:.2f} | {truncated} |")
    return "\n".join(lines) + "\n"


def _as_option(key: str, value: Any) -> str:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    if isinstance(value, (list, tuple)):
        return f"{flag} {' '.join(map(str, value))}"
    return f"{flag} {value}"


def run_recipe(path: str, output: str | None = None, dry_run: bool = False) -> str:
    recipe = load_recipe(path, output)
    steps = plan(recipe)
    if dry_run:
        lines = [f"recipe {recipe.name} -> {recipe.output}"]
        for name, command, options in steps:
            shown = " ".join(_as_option(key, value) for key, value in options.items() if value is not None)
            lines.append(f"  {name}: retrosearch {command} {shown}")
        return "\n".join(lines) + "\n"
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    for name, command, options in steps:
        print(f"== stage {name}: {command}", flush=True)
        started = time.monotonic()
        results[name] = run_stage(command, options)
        timings[name] = round(time.monotonic() - started, 1)
    table = final_table(recipe, results)
    root = Path(recipe.output)
    root.mkdir(parents=True, exist_ok=True)
    (root / "table.md").write_text(table)
    (root / "recipe_summary.json").write_text(
        json.dumps({"recipe": path, "stage_seconds": timings, "results": results}, indent=2, default=str) + "\n"
    )
    return table
