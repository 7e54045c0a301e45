"""Mean and spread of a recipe repeated with several seeds (`retrosearch run RECIPE --seed N`).

    python benchmarks/recipe_seeds.py runs/organism-self-improve runs/organism-self-improve-seed2 ...

Reads each folder's recipe_summary.json and prints one JSON line: per eval stage, accuracy and mean tokens averaged
over benchmarks, for every run and as mean and standard deviation; and the revised student's tokens and accuracy
against the original student's (`eval-revised` / `eval-original`) per run, with their mean and spread.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from retrosearch.pipelines.comparison import averaged


def stage_figures(results: dict) -> dict[str, dict[str, float]]:
    return {
        stage: averaged(result["benchmarks"])
        for stage, result in results.items()
        if isinstance(result, dict) and result.get("benchmarks")
    }


def spread(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "runs": [round(value, 4) for value in values],
    }


def main() -> None:
    runs = {
        folder: stage_figures(json.loads((Path(folder) / "recipe_summary.json").read_text())["results"])
        for folder in sys.argv[1:]
    }
    stages = sorted(set.intersection(*(set(figures) for figures in runs.values())))
    result: dict = {"runs": list(runs)}
    for stage in stages:
        result[stage] = {key: spread([runs[run][stage][key] for run in runs]) for key in ("accuracy", "tokens_mean")}
    if {"eval-original", "eval-revised"} <= set(stages):
        result["revised_vs_original"] = {
            "tokens_ratio": spread(
                [f["eval-revised"]["tokens_mean"] / f["eval-original"]["tokens_mean"] for f in runs.values()]
            ),
            "accuracy_difference": spread(
                [f["eval-revised"]["accuracy"] - f["eval-original"]["accuracy"] for f in runs.values()]
            ),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
