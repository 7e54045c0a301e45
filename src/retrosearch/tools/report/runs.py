"""What a report shows, read from a run folder: a revise run, a generate run, an eval run or a recipe folder.

Figures and plots come from every row (read as a stream, so a large run never sits in memory); the trace viewer
gets a sample of the rows, chosen with a fixed seed and said on the page when it is not all of them.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrosearch.answers import extract_answer
from retrosearch.data.inputs import DataError, read_records
from retrosearch.pipelines.comparison import compare_models, seed_rows, table_rows
from retrosearch.pipelines.recipe import RECIPE_SUMMARY
from retrosearch.stages.folder import MANIFEST, SUMMARY
from retrosearch.stages.generate import SAMPLES_FILE
from retrosearch.stages.revise import OUTPUT_FILE as REVISED_FILE
from retrosearch.stages.sft import TRAINING_LOG
from retrosearch.tools.report.plots import (
    Plot,
    correct_histogram,
    cost_scatter,
    keyword_bars,
    length_histogram,
    loss_curves,
    model_bars,
    switch_positions,
)
from retrosearch.tools.report.segments import compare, single
from retrosearch.trace import KeywordMatcher, parse, with_keywords

MAX_TRACE_CHARS = 200_000  # of one trace in the viewer; a longer one is cut and says so


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Section:
    """One part of the page: a stage's figures, its tables and plots, its settings."""

    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    config: dict[str, Any] | None = None
    headline: list[tuple[str, str]] = field(default_factory=list)  # the few figures a reader looks for first


@dataclass
class Viewer:
    """The rows the trace viewer gets, and what it says about them."""

    mode: str  # "compare": original beside revised; "single": one trace per row
    group_label: str  # what the second filter is over: the reason, or the benchmark
    rows: list[dict[str, Any]]
    total: int  # rows in the run


@dataclass
class Report:
    title: str
    folder: Path
    sections: list[Section]
    viewer: Viewer | None


def read_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """('file:line', row) of every row of a run's JSONL file; a broken line is one clear error."""
    if path.stat().st_size == 0:
        return
    for row, where in read_records(str(path)):
        if not isinstance(row, dict):
            raise DataError(f"{where}: a row must be a JSON object; is the run folder damaged?")
        yield where, row


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error.msg}); is the run folder damaged?") from None


def _count_rows(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def _chosen(total: int, max_rows: int) -> list[int]:
    """Which rows (by position) the viewer gets, in a seeded random order (so any prefix is a uniform sample)."""
    order = list(range(total))
    random.Random(0).shuffle(order)
    return order[:max_rows]


def _manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    return _read_json(path) if path.exists() else {}


def _facts(manifest: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    versions = manifest.get("versions") or {}
    return {
        "model": manifest.get("model"),
        "input": manifest.get("input") or manifest.get("problems"),
        "command line": manifest.get("command_line"),
        "config hash": manifest.get("config_hash"),
        "started": manifest.get("started"),
        "finished": manifest.get("finished"),
        "wall seconds (this run)": summary.get("wall_seconds"),
        "wall seconds (all runs)": summary.get("wall_seconds_all_runs"),
        "rows resumed from an earlier run": summary.get("resumed_samples"),
        "versions": ", ".join(f"{name} {version}" for name, version in versions.items() if version),
    }


def _matcher(manifest: dict[str, Any]) -> KeywordMatcher:
    config = manifest.get("config") or {}
    keywords = (config.get("RetroSearchConfig") or config.get("CutConfig") or {}).get("keywords")
    return with_keywords(keywords)


def _keyword_counts(text: str, matcher: KeywordMatcher, counts: Counter) -> None:
    counts.update(parse(text).stats(matcher).keywords)


def revise_section(folder: Path, max_rows: int, title: str = "Retro-Search") -> tuple[Section, Viewer]:
    path = folder / REVISED_FILE
    summary, manifest = _read_json(folder / SUMMARY), _manifest(folder)
    config = manifest.get("config") or {}
    matcher = _matcher(manifest)
    unit = config.get("RetroSearchConfig", {}).get("length_unit", "steps")
    cut = manifest.get("command") == "cut"
    total = _count_rows([path])
    chosen = {index: place for place, index in enumerate(_chosen(total, max_rows))}
    reasons: Counter = Counter()
    before, after, positions = [], [], []
    keywords_before: Counter = Counter()
    keywords_after: Counter = Counter()
    rows: list[tuple[int, dict[str, Any]]] = []
    for index, (where, row) in enumerate(read_rows(path)):
        status, reason = row.get("status", "?"), row.get("reason", "")
        reasons[status, reason] += 1
        if status in ("revised", "unchanged"):
            try:
                before.append(row["tokens_before"])
                after.append(row["tokens_after"])
                _keyword_counts(row["original"], matcher, keywords_before)
                _keyword_counts(row["revised"], matcher, keywords_after)
                revisions = row["revisions"]
                if unit == "steps":  # each revision's length is that of the trace it revised, in steps
                    positions += [each["switch_index"] / max(1, each["length_before"]) for each in revisions]
                elif revisions:  # in tokens: only the first revision's trace (the original) has known steps
                    positions.append(revisions[0]["switch_index"] / max(1, len(parse(row["original"]).steps)))
            except (KeyError, TypeError):
                raise DataError(f"{where}: not a row of revised.jsonl; is this a revise run?") from None
        if index in chosen:
            rows.append((chosen[index], {"n": index, **_revise_row(row, matcher)}))
    section = Section(
        title,
        figures=summary,
        facts=_facts(manifest, summary),
        tables=[
            Table(
                "Rows by status and reason",
                ["status", "reason", "rows"],
                [[status, reason, count] for (status, reason), count in sorted(reasons.items())],
            )
        ],
        plots=[
            length_histogram(before, after),
            *([] if cut else [switch_positions(positions, unit)]),  # a cut revisits no switch
            keyword_bars(keywords_before, keywords_after),
        ],
        config=config,
        headline=_revise_headline(summary, "cut" if cut else "revised"),
    )
    return section, Viewer("compare", "reason", _sample_order(rows), total)


def _revise_headline(summary: dict[str, Any], changed: str = "revised") -> list[tuple[str, str]]:
    figures = [(changed, f"{summary.get('revised', 0):,} of {summary.get('samples', 0):,}")]
    if "tokens_before_mean" in summary:
        ratio = summary.get("tokens_ratio", 0.0)
        tokens = f"{summary['tokens_before_mean']:,.1f} → {summary.get('tokens_after_mean', 0):,.1f} ({ratio:.3f}×)"
        figures.append(("tokens per trace", tokens))
    if "switches_before_mean" in summary:
        switches = f"{summary['switches_before_mean']:.2f} → {summary.get('switches_after_mean', 0):.2f}"
        figures.append(("switches per trace", switches))
    skipped = sum((summary.get("skipped") or {}).values())
    figures.append(("skipped / errors", f"{skipped:,} / {summary.get('errors', 0):,}"))
    return figures


def _sample_order(rows: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The viewer's rows in sample order, so that the page can keep a uniform prefix when it must drop some (it
    shows them in input order: each row's `n`)."""
    return [row for _, row in sorted(rows, key=lambda item: item[0])]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else json.dumps(value, ensure_ascii=False)


def _revise_row(row: dict[str, Any], matcher: KeywordMatcher) -> dict[str, Any]:
    original, revised = _text(row.get("original")), _text(row.get("revised"))
    left, right = compare(original, revised, matcher, MAX_TRACE_CHARS)
    searched = row.get("status") in ("revised", "unchanged")
    return {
        "id": _text(row.get("id")),
        "status": _text(row.get("status")),
        "group": _text(row.get("reason")),
        "problem": _text(row.get("problem")),
        "gold": _text(row.get("gold")),
        "answer_before": extract_answer(original) or "",
        "answer_after": extract_answer(revised) or "",
        "checked": "both answers checked correct by the run" if searched else "",
        "tokens_before": row.get("tokens_before"),
        "tokens_after": row.get("tokens_after"),
        "switches_before": row.get("switches_before"),
        "switches_after": row.get("switches_after"),
        "revisions": len(row.get("revisions") or []),
        "original": left,
        "revised": right,
    }


def _sample_row(row: dict[str, Any], matcher: KeywordMatcher, group: str) -> dict[str, Any]:
    if row.get("status") == "error":
        status = "error"
    elif row.get("truncated"):
        status = "truncated"
    else:
        status = "correct" if row.get("correct") else "incorrect"
    response = _text(row.get("response"))
    return {
        "id": _text(row.get("id")),
        "status": status,
        "group": group or _text(row.get("reason")),
        "problem": _text(row.get("problem")),
        "gold": _text(row.get("answer")),
        "answer_after": _text(row.get("predicted")),
        "checked": {"correct": "checked correct", "incorrect": "checked wrong"}.get(status, ""),
        "tokens_after": row.get("tokens"),
        "switches_after": row.get("switches"),
        "revised": single(response, matcher, MAX_TRACE_CHARS),
    }


def _samples(
    paths: list[tuple[str, Path]], matcher: KeywordMatcher, max_rows: int
) -> tuple[Viewer, dict[str, list[int]], Counter]:
    """The viewer over sample files (one per benchmark, or one), the tokens of correct and of wrong samples, and
    the switches per keyword."""
    total = _count_rows([path for _, path in paths])
    chosen = {index: place for place, index in enumerate(_chosen(total, max_rows))}
    tokens: dict[str, list[int]] = {"correct": [], "wrong": []}
    keywords: Counter = Counter()
    rows, index = [], 0
    for group, path in paths:
        for where, row in read_rows(path):
            if row.get("status") != "error":
                try:
                    tokens["correct" if row["correct"] else "wrong"].append(row["tokens"])
                    _keyword_counts(row["response"], matcher, keywords)
                except (KeyError, TypeError):
                    raise DataError(f"{where}: not a generated sample; is this a generate run?") from None
            if index in chosen:
                rows.append((chosen[index], {"n": index, **_sample_row(row, matcher, group)}))
            index += 1
    return Viewer("single", "benchmark" if paths[0][0] else "reason", _sample_order(rows), total), tokens, keywords


def generate_section(folder: Path, max_rows: int) -> tuple[Section, Viewer]:
    summary, manifest = _read_json(folder / SUMMARY), _manifest(folder)
    viewer, tokens, keywords = _samples([("", folder / SAMPLES_FILE)], _matcher(manifest), max_rows)
    section = Section(
        "Generation",
        figures=summary,
        facts=_facts(manifest, summary),
        plots=[correct_histogram(tokens["correct"], tokens["wrong"]), keyword_bars(keywords)],
        config=manifest.get("config"),
        headline=[
            ("correct", f"{summary.get('correct', 0):,} of {summary.get('samples', 0):,}"),
            ("accuracy", f"{summary.get('accuracy', 0.0):.3f}"),
            ("tokens per sample", f"{summary.get('tokens_mean', 0.0):,.1f}"),
            ("switches per sample", f"{summary.get('switches_mean', 0.0):.2f}"),
        ],
    )
    return section, viewer


def eval_section(folder: Path, max_rows: int) -> tuple[Section, Viewer | None]:
    summary, manifest = _read_json(folder / SUMMARY), _manifest(folder)
    benchmarks = summary.get("benchmarks") or {}
    keys = ["problems", "samples", "accuracy", "pass@k", "tokens_mean", "switches_mean", "truncated"]
    headers = ["benchmark", "problems", "samples", "accuracy", f"pass@{summary.get('k', 'k')}", "avg tokens"]
    table = Table(
        f"Model {summary.get('model', '?')}",
        [*headers, "avg switches", "truncated"],
        [[name, *(figures.get(key) for key in keys)] for name, figures in benchmarks.items()],
    )
    paths = [(name, folder / name / "generate" / SAMPLES_FILE) for name in benchmarks]
    paths = [(name, path) for name, path in paths if path.exists()]
    section = Section("Evaluation", facts=_facts(manifest, summary), tables=[table], config=manifest.get("config"))
    if not paths:
        return section, None
    viewer, tokens, keywords = _samples(paths, _matcher(manifest), max_rows)
    section.plots = [correct_histogram(tokens["correct"], tokens["wrong"]), keyword_bars(keywords)]
    return section, viewer


def training_log_of(folder: Path) -> list[dict[str, Any]]:
    """The logged training steps of an sft run (none for a run made before they were kept)."""
    path = folder / TRAINING_LOG
    return [row for _, row in read_rows(path)] if path.exists() else []


def sft_section(folder: Path, max_rows: int) -> tuple[Section, Viewer | None]:
    summary, manifest = _read_json(folder / SUMMARY), _manifest(folder)
    keys = ("rows", "kept", "dropped_too_long", "steps", "train_loss", "completion_tokens_mean", "longest_tokens")
    section = Section(
        "Training",
        figures={key: summary[key] for key in keys if key in summary},
        facts=_facts(manifest, summary),
        plots=[loss_curves({folder.name: training_log_of(folder)})],
        config=manifest.get("config"),
    )
    return section, None


def decontamination_table(found: dict[str, dict[str, Any]]) -> Table:
    """What each decontaminate stage of a recipe found and removed (recipe.decontamination)."""
    rows = [
        [
            name,
            figures["rows"],
            figures["contaminated"],
            "listed only" if figures["removed"] is None else figures["removed"],
            ", ".join(f"{benchmark} {count}" for benchmark, count in figures["by_benchmark"].items()) or "none",
            ", ".join(figures["against"]),
        ]
        for name, figures in found.items()
    ]
    headers = ["stage", "rows", "benchmark problems", "removed", "matched per benchmark", "checked against"]
    return Table("Decontamination before SFT", headers, rows)


def recipe_sections(folder: Path, max_rows: int) -> tuple[list[Section], Viewer | None]:
    summary = _read_json(folder / RECIPE_SUMMARY)
    results: dict[str, Any] = summary.get("results") or {}
    evaluated = summary.get("table") or [name for name, result in results.items() if "benchmarks" in result]
    evaluated = [name for name in evaluated if (results.get(name) or {}).get("benchmarks")]
    # a recipe run before comparisons were recorded: its models' figures, without changes
    comparison = summary.get("comparison") or compare_models(evaluated, None, results, {}, {})
    headers, rows = table_rows(comparison)
    tables = [Table("The paper's table: each model averaged over its benchmarks", headers, rows)]
    if summary.get("over_seeds"):
        tables.append(
            Table("Over the recipe's seed runs (mean ± standard deviation)", *seed_rows(summary["over_seeds"]))
        )
    if summary.get("decontamination"):
        tables.append(decontamination_table(summary["decontamination"]))
    seconds = summary.get("stage_seconds") or {}
    models = comparison["models"]
    curves = {name: training_log_of(folder / name) for name in results if command_of(folder / name) == "sft"}
    recipe = Section(
        "Recipe",
        facts={"recipe": summary.get("recipe"), "wall seconds (all stages)": round(sum(seconds.values()), 1)},
        tables=[*tables, Table("Stages", ["stage", "seconds"], [[name, value] for name, value in seconds.items()])],
        plots=[*_model_plots(models), *([loss_curves(curves)] if any(curves.values()) else [])],
    )
    sections, searched, cut = [recipe], [], []
    titles = {"revise": "Retro-Search", "merge": "Retro-Search", "cut": "First-correct cut"}
    for name in results:  # every stage that changed traces, in the recipe's order
        command = command_of(folder / name) or ""
        if command in titles:
            section, viewer = revise_section(folder / name, max_rows, f"{titles[command]} (stage {name})")
            sections.append(section)
            (cut if command == "cut" else searched).append(viewer)
    # one trace viewer per page: the first Retro-Search stage's rows, else the first cut's
    return sections, next(iter(searched + cut), None)


def _model_plots(models: dict[str, Any]) -> list[Plot]:
    """The models' accuracy and tokens; with data costs recorded, also accuracy against tokens sized by cost."""
    names = list(models)
    if not names:
        return []
    accuracy = [models[name]["averaged"]["accuracy"] for name in names]
    tokens = [models[name]["averaged"]["tokens_mean"] for name in names]
    plots = [model_bars(names, accuracy, tokens)]
    if any("data_cost" in model for model in models.values()):
        cost = [(models[name].get("data_cost") or {}).get("generated_tokens") for name in names]
        plots.append(cost_scatter(names, accuracy, tokens, cost))
    return plots


ReportMaker = Callable[[Path, int], Report]


def _single(section: Callable[[Path, int], tuple[Section, Viewer | None]], title: str) -> ReportMaker:
    def make(folder: Path, max_rows: int) -> Report:
        made, viewer = section(folder, max_rows)
        return Report(f"{title} {folder.name}", folder, [made], viewer)

    return make


def _recipe(folder: Path, max_rows: int) -> Report:
    sections, viewer = recipe_sections(folder, max_rows)
    return Report(f"Recipe {folder.name}", folder, sections, viewer)


REPORTS: dict[str, ReportMaker] = {
    "revise": _single(revise_section, "Retro-Search"),
    "cut": _single(lambda folder, rows: revise_section(folder, rows, "First-correct cut"), "First-correct cut"),
    "merge": _single(revise_section, "Retro-Search"),
    "generate": _single(generate_section, "Generation"),
    "eval": _single(eval_section, "Evaluation"),
    "sft": _single(sft_section, "Training"),
    "run": _recipe,
}  # by the command the folder's manifest names


def command_of(folder: Path) -> str | None:
    """The command that made a run folder, as its manifest records it. Folders made before manifests named their
    command are told apart by what they hold."""
    recorded = _manifest(folder).get("command")
    if recorded is not None:
        return recorded
    if (folder / RECIPE_SUMMARY).exists():
        return "run"
    if (folder / REVISED_FILE).exists():
        return "revise"
    if (folder / SAMPLES_FILE).exists():
        return "generate"
    if (folder / SUMMARY).exists() and "benchmarks" in _read_json(folder / SUMMARY):
        return "eval"
    return None


def read_run(folder: Path, max_rows: int) -> Report:
    """The report of a run folder, whichever command made it."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such run folder; give the folder a revise, cut, generate, eval or run wrote")
    command = command_of(folder)
    if command != "run" and not (folder / SUMMARY).exists():
        raise DataError(f"{folder}: no {SUMMARY}; the run has not finished (rerun its command to finish it)")
    if command not in REPORTS:
        made_by = f"a {command} run" if command else "no run folder of retrosearch"
        raise DataError(
            f"{folder}: {made_by}; a report shows a revise, merge, cut, generate, eval or recipe run folder"
        )
    return REPORTS[command](folder, max_rows)
