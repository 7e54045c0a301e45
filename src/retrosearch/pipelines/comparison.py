"""A recipe's evaluated models the way the paper compares them: each beside the recipe's baseline, accuracy as a
change in points and tokens as a ratio, per benchmark and averaged, with the token cap they were sampled under and
the length change of the SFT data each was trained on (so a reader sees how much of the data's cut the model kept),
and, where the recipe was repeated with `--seed`, the mean and spread of every change over the repeats."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

from retrosearch.stages.folder import all_runs_seconds

# the figures of one evaluated model that the comparison reads
FIGURES = ("accuracy", "tokens_mean", "switches_mean", "truncated")
SEED_SUFFIX = re.compile(r"-seed\d+$")


def averaged(benchmarks: dict[str, dict[str, Any]]) -> dict[str, float]:
    """One evaluated model's row of the paper's table: accuracy, tokens and switches averaged over its benchmarks,
    truncated answers summed."""
    figures = list(benchmarks.values())
    return {
        **{key: sum(b[key] for b in figures) / len(figures) for key in ("accuracy", "tokens_mean", "switches_mean")},
        "truncated": sum(b["truncated"] for b in figures),
    }


def trained_on(model: str, outputs: dict[str, str], results: dict[str, dict[str, Any]]) -> float | None:
    """Mean completion tokens of the SFT data behind `model`: that of the recipe's sft stage whose folder holds
    it (None for a model no sft stage of the recipe trained)."""
    for name, output in outputs.items():
        result = results.get(name) or {}
        if "completion_tokens_mean" in result and Path(model).is_relative_to(output):
            return result["completion_tokens_mean"]
    return None


def data_cost(stages: list[str], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the model work of `stages` cost: the tokens their models generated and the wall seconds of all their
    runs (a stage killed and resumed counts the killed run up to its last write too)."""
    return {
        "generated_tokens": sum(int(results[name].get("generated_tokens") or 0) for name in stages),
        "seconds": round(sum(all_runs_seconds(results[name]) for name in stages), 1),
    }


def _change(figures: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    accuracy_points = 100 * (figures["accuracy"] - baseline["accuracy"])
    ratio = figures["tokens_mean"] / baseline["tokens_mean"] if baseline["tokens_mean"] else None
    return {"accuracy_points": round(accuracy_points, 2), "tokens_ratio": None if ratio is None else round(ratio, 4)}


def compare_models(
    table: list[str],
    baseline: str | None,
    results: dict[str, dict[str, Any]],
    caps: dict[str, int | None],
    data_tokens: dict[str, float | None],
    costs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Per evaluated model (in `table` order): per benchmark and averaged, its figures and (with a baseline) their
    changes from the baseline's; its token cap; its SFT data's mean tokens and their ratio to the baseline's; with
    `costs`, what producing its SFT data cost beyond the original traces (`data_cost`)."""
    models: dict[str, Any] = {}
    base = results[baseline] if baseline else None
    base_averaged = averaged(base["benchmarks"]) if base else None
    for name in table:
        benchmarks = results[name]["benchmarks"]
        row: dict[str, Any] = {
            "max_new_tokens": caps.get(name),
            "sft_data_tokens_mean": data_tokens.get(name),
            "benchmarks": {},
            "averaged": averaged(benchmarks),
        }
        if costs is not None:
            row["data_cost"] = costs.get(name)  # None: no SFT data (the base model)
        for benchmark, figures in benchmarks.items():
            row["benchmarks"][benchmark] = {key: figures[key] for key in FIGURES}
            if base and benchmark in base["benchmarks"]:
                row["benchmarks"][benchmark].update(_change(figures, base["benchmarks"][benchmark]))
        if base:
            row["averaged"].update(_change(row["averaged"], base_averaged))
            base_data, data = data_tokens.get(baseline), data_tokens.get(name)
            row["sft_data_tokens_ratio"] = round(data / base_data, 4) if data and base_data else None
        models[name] = row
    return {"baseline": baseline, "models": models}


def seed_runs(output: str) -> list[Path]:
    """The recipe's run folder and its `--seed` repeats beside it (`OUTPUT`, `OUTPUT-seedN`), those that finished."""
    base = Path(SEED_SUFFIX.sub("", str(output)))
    folders = [base, *sorted(base.parent.glob(f"{base.name}-seed*"), key=lambda path: path.name)]
    return [folder for folder in folders if SEED_SUFFIX.sub("", folder.name) == base.name and _finished(folder)]


def _finished(folder: Path) -> bool:
    return (folder / "recipe_summary.json").is_file()


def spread(values: dict[str, float]) -> dict[str, Any]:
    """Mean and sample standard deviation of one figure over runs, and its value in each run (by folder name)."""
    numbers = list(values.values())
    return {
        "mean": round(statistics.fmean(numbers), 4),
        "stdev": round(statistics.stdev(numbers), 4) if len(numbers) > 1 else None,
        "values": {run: round(value, 4) for run, value in values.items()},
    }


def over_seeds(comparisons: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread over repeats (comparisons by run folder name) of every averaged figure and change that all
    repeats have, per model."""
    models: dict[str, Any] = {}
    for name in next(iter(comparisons.values()))["models"]:
        rows = {
            run: comparison["models"][name] for run, comparison in comparisons.items() if name in comparison["models"]
        }
        keys = [key for key, value in next(iter(rows.values()))["averaged"].items() if isinstance(value, (int, float))]
        figures = {
            key: spread({run: row["averaged"][key] for run, row in rows.items()})
            for key in keys
            if all(row["averaged"].get(key) is not None for row in rows.values())
        }
        if all(row.get("sft_data_tokens_ratio") is not None for row in rows.values()):
            figures["sft_data_tokens_ratio"] = spread({run: row["sft_data_tokens_ratio"] for run, row in rows.items()})
        if all(row.get("data_cost") for row in rows.values()):
            for key in ("generated_tokens", "seconds"):
                figures[f"data_cost_{key}"] = spread({run: row["data_cost"][key] for run, row in rows.items()})
        models[name] = figures
    return models


def read_comparison(folder: Path) -> dict[str, Any] | None:
    """A finished recipe run's comparison; None for a folder whose recipe has not finished or recorded none."""
    if not _finished(folder):
        return None
    summary = json.loads((folder / "recipe_summary.json").read_text(encoding="utf-8"))
    return summary.get("comparison")


def _points(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}×"


def table_rows(comparison: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """The paper's table: one row per evaluated model, averaged over its benchmarks, its changes from the baseline
    beside each figure."""
    headers = ["model", "accuracy", "Δ accuracy (points)", "avg tokens", "tokens ×", "SFT data tokens ×"]
    headers += ["max new tokens", "avg switches", "truncated"]
    costs = any("data_cost" in model for model in comparison["models"].values())
    if costs:
        headers += ["data cost: generated tokens", "data cost: seconds"]
    rows = []
    for name, model in comparison["models"].items():
        figures = model["averaged"]
        cost = []
        if costs:
            spent = model.get("data_cost")
            cost = [spent["generated_tokens"], f"{spent['seconds']:.1f}"] if spent else ["", ""]
        rows.append(
            [
                name,
                f"{figures['accuracy']:.3f}",
                _points(figures.get("accuracy_points")),
                f"{figures['tokens_mean']:.1f}",
                _ratio(figures.get("tokens_ratio")),
                _ratio(model.get("sft_data_tokens_ratio")),
                "" if model["max_new_tokens"] is None else model["max_new_tokens"],
                f"{figures['switches_mean']:.2f}",
                figures["truncated"],
                *cost,
            ]
        )
    return headers, rows


def _mean_stdev(figure: dict[str, Any] | None, show, spread: str = "{:.3f}") -> str:
    """The mean as `show` writes it, ± the standard deviation in `spread`'s format (counts and seconds in their own
    precision, not three decimals)."""
    if figure is None:
        return ""
    stdev = figure["stdev"]
    return show(figure["mean"]) + ("" if stdev is None else " ± " + spread.format(stdev))


def seed_rows(over: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Mean ± standard deviation over seed runs of each model's accuracy, tokens and their changes."""
    headers = ["model", "runs", "accuracy", "Δ accuracy (points)", "avg tokens", "tokens ×", "SFT data tokens ×"]
    costs = any("data_cost_seconds" in figures for figures in over.values())
    if costs:
        headers += ["data cost: generated tokens", "data cost: seconds"]
    rows = []
    for name, figures in over.items():
        cost = (
            [
                _mean_stdev(figures.get("data_cost_generated_tokens"), lambda v: f"{v:.0f}", "{:.0f}"),
                _mean_stdev(figures.get("data_cost_seconds"), lambda v: f"{v:.1f}", "{:.1f}"),
            ]
            if costs
            else []
        )
        rows.append(
            [
                name,
                len(figures["accuracy"]["values"]),
                _mean_stdev(figures.get("accuracy"), lambda v: f"{v:.3f}"),
                _mean_stdev(figures.get("accuracy_points"), _points, "{:.1f}"),
                _mean_stdev(figures.get("tokens_mean"), lambda v: f"{v:.1f}", "{:.1f}"),
                _mean_stdev(figures.get("tokens_ratio"), _ratio),
                _mean_stdev(figures.get("sft_data_tokens_ratio"), _ratio),
                *cost,
            ]
        )
    return headers, rows
