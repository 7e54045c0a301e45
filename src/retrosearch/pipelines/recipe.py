"""`retrosearch run RECIPE`: the stages of a YAML recipe in order, each resumable, then the paper's table.

A recipe is data: `output` (the run folder), `stages` (each a `name`, a command of the registry's stages —
generate, revise, merge, select, cut, sft, eval, teacher, organism-train — and its `options`, the same names as the
command-line options), `table` (the eval stages whose results make the final table), `baseline` (the table's stage
the others are compared with) and `data_cost` (per table stage, the stages whose model work made its SFT data beyond
the original traces: their generated tokens and seconds become the table's cost columns). `{output}` and
`{stage_name}` in an option are replaced by the run folder and by that stage's output. A stage's `launcher` (or
`--sft-launcher` for every sft stage) runs it as `LAUNCHER -m retrosearch.cli COMMAND OPTIONS`, e.g.
`accelerate launch --num_processes 8` for SFT over several devices. Rerunning a recipe
skips finished work inside every stage. `--seed N` repeats a recipe with another seed: every stage that takes a
seed gets N, and the run folder (unless given) gets a `-seedN` suffix, so repeats sit side by side.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrosearch.config import flat_values, option, option_names, read_yaml
from retrosearch.data.outputs import recording, write_json, write_whole
from retrosearch.pipelines.comparison import (
    compare_models,
    data_cost,
    over_seeds,
    read_comparison,
    seed_rows,
    seed_runs,
    table_rows,
    trained_on,
)
from retrosearch.stages.folder import MANIFEST, RunError, manifest_of, now, summary_of, versions
from retrosearch.stages.registry import COMMANDS, as_option, command_line
from retrosearch.tables import markdown

RECIPE_SUMMARY = "recipe_summary.json"
TABLE = "table.md"


class StageFailed(RunError):
    """A recipe stopped at a stage some of whose rows failed; rerunning the recipe retries them and goes on."""

    def __init__(self, stage: str, errors: int) -> None:
        super().__init__(
            f"the recipe stopped at stage {stage}: {errors} row(s) failed (status 'error', with the reason in its "
            "output); rerun the same command to retry them and go on"
        )
        self.stage, self.errors = stage, errors


@dataclass(frozen=True)
class RunConfig:
    recipe: str = option("", "recipe YAML file", positional=True)
    output: str | None = option(None, "run folder (default: the recipe's)")
    dry_run: bool = option(False, "print the plan without loading any model")
    seed: int | None = option(None, "repeat with this seed: every stage that takes one; run folder -seedN")
    sft_launcher: str | None = option(
        None, "run every sft stage under this launcher, e.g. 'accelerate launch --num_processes 8'", speed_only=True
    )


PLACEHOLDER = re.compile(r"\{([a-zA-Z0-9_-]+)\}")


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    options: dict[str, Any]
    launcher: str | None = None  # e.g. "accelerate launch --num_processes 8": the stage runs under it


@dataclass(frozen=True)
class Recipe:
    name: str
    output: str
    stages: list[Stage]
    table: list[str]
    description: str = ""
    baseline: str | None = None  # the eval stage every other model of the table is compared with
    data_cost: dict[str, list[str]] = field(default_factory=dict)  # eval stage -> stages that made its data


def load_recipe(path: str, output: str | None = None, seed: int | None = None) -> Recipe:
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "stages" not in raw:
        raise ValueError(f"{path}: a recipe needs 'stages' (a list of name / command / options)")
    stages = []
    for index, stage in enumerate(raw["stages"], start=1):
        if not isinstance(stage, dict) or stage.get("command") not in _stages():
            raise ValueError(f"{path}: stage {index} needs a command, one of {', '.join(_stages())}")
        options = dict(stage.get("options") or {})
        if seed is not None and "seed" in option_names(*COMMANDS[stage["command"]].config_classes()):
            options["seed"] = seed
        launcher = stage.get("launcher")
        if launcher is not None and not (isinstance(launcher, str) and launcher.strip()):
            raise ValueError(f"{path}: stage {index}'s launcher is a command line, e.g. 'accelerate launch'")
        stages.append(Stage(stage.get("name", f"stage{index}"), stage["command"], options, launcher))
    names = [s.name for s in stages]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{path}: stage name(s) {', '.join(repeated)} used twice; give every stage its own name")
    commands = {s.name: s.command for s in stages}
    for name in raw.get("table", []):
        if name not in names:
            raise ValueError(f"{path}: table names unknown stage {name!r}")
        if commands[name] != "eval":
            raise ValueError(
                f"{path}: table names stage {name!r}, a {commands[name]} stage; the table shows eval stages"
            )
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in raw.get("table", []):
        raise ValueError(f"{path}: baseline {baseline!r} is not in the table; name one of the table's eval stages")
    costs = raw.get("data_cost") or {}
    for name, made_by in costs.items():
        if name not in raw.get("table", []):
            raise ValueError(f"{path}: data_cost names {name!r}, not a stage of the table")
        unknown = [stage for stage in made_by or [] if stage not in names]
        if not isinstance(made_by, list) or unknown:
            raise ValueError(f"{path}: data_cost of {name!r} takes a list of the recipe's stage names ({unknown})")
    default_output = raw.get("output", f"runs/{Path(path).stem}")
    if seed is not None:
        default_output += f"-seed{seed}"
    return Recipe(
        raw.get("name", Path(path).stem),
        output or default_output,
        stages,
        list(raw.get("table", [])),
        raw.get("description", ""),
        baseline,
        costs,
    )


def _stages() -> list[str]:
    """The commands a recipe may chain: every stage of the registry."""
    return [name for name, command in COMMANDS.items() if command.kind == "stage"]


def stage_output(recipe: Recipe, stage: Stage) -> str:
    return stage.options.get("output") or str(Path(recipe.output) / stage.name)


def _filled(value: Any, outputs: dict[str, str], where: str) -> Any:
    """`value` with every {placeholder} replaced; a placeholder that names nothing is refused."""
    if isinstance(value, list):
        return [_filled(item, outputs, where) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match.group(1) not in outputs:
            known = ", ".join(f"{{{name}}}" for name in outputs)
            raise ValueError(f"{where}: {match.group(0)} names no stage (known here: {known})")
        return outputs[match.group(1)]

    return PLACEHOLDER.sub(replace, value)


def _outputs(recipe: Recipe) -> dict[str, str]:
    """Every stage's run folder, placeholders filled (a stage's output may use {output} and earlier stages')."""
    outputs = {"output": recipe.output}
    for stage in recipe.stages:
        outputs[stage.name] = _filled(stage_output(recipe, stage), outputs, f"{recipe.name}: stage {stage.name}")
    return outputs


def resolve(recipe: Recipe, stage: Stage, outputs: dict[str, str]) -> dict[str, Any]:
    """The stage's options with placeholders filled in from every stage's run folder (`_outputs`)."""
    where = f"{recipe.name}: stage {stage.name}"
    options = {key.replace("-", "_"): _filled(value, outputs, where) for key, value in stage.options.items()}
    options["output"] = outputs[stage.name]
    return options


def plan(recipe: Recipe) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, command, resolved options) for every stage, validated, without loading any model."""
    steps, outputs = [], _outputs(recipe)
    for stage in recipe.stages:
        options = resolve(recipe, stage, outputs)
        try:
            COMMANDS[stage.command].build(options)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{recipe.name}: stage {stage.name}: {error}") from None
        steps.append((stage.name, stage.command, options))
    return steps


def comparison_of(recipe: Recipe, steps: list[tuple[str, str, dict[str, Any]]], results: dict) -> dict[str, Any]:
    """The table's models beside the baseline (`comparison.compare_models`), with each one's token cap and SFT data."""
    options = {name: resolved for name, _, resolved in steps}
    commands = {name: command for name, command, _ in steps}
    outputs = {name: resolved["output"] for name, resolved in options.items()}
    caps = {
        name: flat_values(*COMMANDS[commands[name]].build(options[name])).get("max_new_tokens") for name in recipe.table
    }
    data = {name: trained_on(str(options[name].get("model", "")), outputs, results) for name in recipe.table}
    costs = None
    if recipe.data_cost:  # a model trained on data that no listed stage made cost nothing beyond the original traces
        costs = {name: data_cost(recipe.data_cost.get(name, []), results) for name in recipe.table if data[name]}
    return compare_models(recipe.table, recipe.baseline, results, caps, data, costs)


def decontamination(steps: list[tuple[str, str, dict[str, Any]]], results: dict) -> dict[str, dict[str, Any]]:
    """Per decontaminate stage of the recipe: the rows it checked, how many matched a benchmark problem, how many
    it removed (None: it only listed them, no --drop), the matches per benchmark and the benchmarks checked."""
    return {
        name: {
            "rows": results[name]["rows"],
            "contaminated": results[name]["contaminated"],
            "removed": results[name].get("dropped"),
            "by_benchmark": results[name]["by_benchmark"],
            "against": list(results[name]["against"]),
        }
        for name, command, _ in steps
        if command == "decontaminate"
    }


def decontamination_lines(found: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, figures in found.items():
        what = "removed" if figures["removed"] is not None else "matched (kept: the stage has no --drop)"
        benchmarks = ", ".join(f"{count:,} {benchmark}" for benchmark, count in figures["by_benchmark"].items())
        lines.append(
            f"- {name}: {figures['contaminated']:,} of {figures['rows']:,} rows {what} as benchmark problems"
            + (f" ({benchmarks})" if benchmarks else "")
            + f", checked against {', '.join(figures['against'])}"
        )
    return "\ndecontamination:\n\n" + "\n".join(lines) + "\n" if lines else ""


def provenance(steps: list[tuple[str, str, dict[str, Any]]]) -> dict[str, dict[str, str | None]]:
    """Each stage's run folder and config hash, as its manifest records them: a number of the table leads to
    the exact command (`retrosearch show-config FOLDER`)."""
    found = {}
    for name, _, options in steps:
        manifest = manifest_of(Path(options["output"])) or {}
        found[name] = {"folder": options["output"], "config_hash": manifest.get("config_hash")}
    return found


def provenance_lines(runs: dict[str, dict[str, str | None]]) -> str:
    lines = [f"- {name}: {run['folder']} (config {run['config_hash']})" for name, run in runs.items()]
    return (
        "\nruns (`retrosearch show-config FOLDER` prints the command that reproduces each):\n\n"
        + "\n".join(lines)
        + "\n"
    )


def final_table(comparison: dict[str, Any], over: dict[str, Any] | None, found: dict[str, dict[str, Any]]) -> str:
    """The paper's table (and, with seed repeats, their mean and spread) as Markdown, then what the recipe's
    decontamination removed."""
    table = markdown(*table_rows(comparison))
    if over:
        table += "\nover the recipe's seed runs (mean ± standard deviation):\n\n" + markdown(*seed_rows(over))
    return table + decontamination_lines(found)


def launched(launcher: str, command: str, options: dict[str, Any]) -> dict[str, Any]:
    """A stage run as `LAUNCHER -m retrosearch.cli COMMAND OPTIONS` (its processes share the work; the main one
    holds the run folder), and the summary it wrote."""
    words = [*shlex.split(launcher), "-m", "retrosearch.cli", *COMMANDS[command].words, *as_options(options)]
    done = subprocess.run(words, check=False)
    if done.returncode != 0:
        raise RunError(f"{shlex.join(words)} exited with {done.returncode}; rerun the recipe to resume the stage")
    summary = summary_of(Path(options["output"]))
    if summary is None:
        raise RunError(f"{shlex.join(words)} wrote no {options['output']}/summary.json")
    return summary


def as_options(options: dict[str, Any]) -> list[str]:
    return [part for key, value in options.items() for part in as_option(key, value)]


def run_recipe(
    path: str,
    output: str | None = None,
    dry_run: bool = False,
    seed: int | None = None,
    sft_launcher: str | None = None,
) -> str:
    recipe = load_recipe(path, output, seed)
    steps = plan(recipe)
    launchers = {
        stage.name: stage.launcher or (sft_launcher if stage.command == "sft" else None) for stage in recipe.stages
    }
    if dry_run:
        lines = [f"recipe {recipe.name} -> {recipe.output}"]
        for name, command, options in steps:
            runner = f"{launchers[name]} -m retrosearch.cli" if launchers[name] else "retrosearch"
            lines.append(f"  {name}: {runner} {shlex.join([*COMMANDS[command].words, *as_options(options)])}")
        return "\n".join(lines) + "\n"
    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, float] = {}
    for name, command, options in steps:
        print(f"== stage {name}: {command}", flush=True)
        started = time.monotonic()
        launcher = launchers[name]
        results[name] = launched(launcher, command, options) if launcher else COMMANDS[command].run(options)
        timings[name] = round(time.monotonic() - started, 1)
        if results[name].get("errors"):
            raise StageFailed(name, results[name]["errors"])
    comparison = comparison_of(recipe, steps, results)
    root = Path(recipe.output)
    repeats = {folder.name: read_comparison(folder) for folder in seed_runs(recipe.output) if folder != root}
    models = set(comparison["models"])
    known = {run: other for run, other in repeats.items() if other and set(other["models"]) == models}
    over = over_seeds({root.name: comparison, **known}) if known else None
    found, runs = decontamination(steps, results), provenance(steps)
    table = final_table(comparison, over, found) + provenance_lines(runs)
    summary = {"recipe": path, "table": recipe.table, "stage_seconds": timings, "results": results}
    summary |= {"comparison": comparison, "over_seeds": over, "decontamination": found, "runs": runs}
    with recording(root):
        write_whole(root / TABLE, table)
        write_json(root / RECIPE_SUMMARY, summary)
        config = RunConfig(path, output, seed=seed, sft_launcher=sft_launcher)
        write_json(
            root / MANIFEST,
            {
                "command": "run",
                "command_line": command_line("run", (config,)),
                "recipe": path,
                "versions": versions(),
                "finished": now(),
            },
        )
    return table


def run(config: RunConfig) -> dict[str, Any]:
    """`retrosearch run`: print the plan (`dry_run`) or run the recipe and print the paper's table."""
    if not config.recipe:
        raise ValueError("run needs a recipe YAML file")
    try:
        print(run_recipe(config.recipe, config.output, config.dry_run, config.seed, config.sft_launcher), end="")
    except StageFailed as stopped:
        print(f"retrosearch: {stopped}", file=sys.stderr)
        return {"errors": stopped.errors, "output": None}
    return {"output": None if config.dry_run else load_recipe(config.recipe, config.output, config.seed).output}
