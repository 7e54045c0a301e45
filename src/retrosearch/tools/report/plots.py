"""The report's plots: matplotlib figures as SVG images inside the page (data URIs: nothing to fetch, and an image
runs no script whatever its text says)."""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

BEFORE, AFTER = "#8a8f98", "#1f77b4"


@dataclass
class Plot:
    title: str
    caption: str
    uri: str  # data:image/svg+xml;base64,...


@cache  # the backend and style are set once per process
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams.update(
        {
            "text.parse_math": False,  # a keyword or model name with $ is text, not TeX
            "svg.fonttype": "none",
            "svg.hashsalt": "retrosearch",  # the same run gives the same file
            "font.size": 10,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    import matplotlib.pyplot as pyplot

    return pyplot


def _finish(figure, title: str, caption: str) -> Plot:
    pyplot = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    pyplot.close(figure)
    return Plot(title, caption, "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode())


def _figure(width: float = 6.4, height: float = 3.4):
    return _pyplot().subplots(figsize=(width, height))


def _empty(axes, what: str) -> None:
    axes.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=axes.transAxes, color=BEFORE)
    axes.set_xticks([])
    axes.set_yticks([])


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _histogram(axes, series: list[tuple[str, Sequence[int], str]], xlabel: str) -> None:
    values = [value for _, data, _ in series for value in data]
    if not values:
        _empty(axes, "rows")
        return
    bins = min(40, max(5, len(set(values))))
    low, high = min(values), max(values)
    edges = [low + (high - low + 1) * step / bins for step in range(bins + 1)]  # the same bins for every series
    for label, data, color in series:
        legend = f"{label}: {len(data):,} rows, mean {_mean(data):,.1f}"
        axes.hist(data, bins=edges, histtype="stepfilled", alpha=0.45, color=color, label=legend)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("rows")
    axes.legend(frameon=False)


def length_histogram(before: Sequence[int], after: Sequence[int]) -> Plot:
    figure, axes = _figure()
    _histogram(axes, [("before", before, BEFORE), ("after", after, AFTER)], "tokens per trace")
    return _finish(
        figure,
        "Trace length before and after",
        "Tokens per trace of every searched row (revised or unchanged), before and after Retro-Search.",
    )


def correct_histogram(correct: Sequence[int], wrong: Sequence[int]) -> Plot:
    figure, axes = _figure()
    _histogram(axes, [("correct", correct, AFTER), ("wrong", wrong, BEFORE)], "tokens per sample")
    return _finish(figure, "Sample length", "Tokens per sample, correct and wrong answers apart.")


def switch_positions(positions: Sequence[float], unit: str) -> Plot:
    figure, axes = _figure()
    if positions:
        axes.hist(positions, bins=[step / 20 for step in range(21)], color=AFTER, alpha=0.8)
        axes.set_xlabel("relative position of the switch in the trace it revised (0: start, 1: end)")
        axes.set_ylabel("accepted revisions")
        axes.set_xlim(0, 1)
    else:
        _empty(axes, "accepted revisions")
    which = "every accepted revision" if unit == "steps" else "each row's first accepted revision"
    return _finish(
        figure,
        "Where revisions happen",
        f"The step index of the switch a kept rollout replaced, over the steps of the trace at that point ({which}).",
    )


def keyword_bars(before: Counter, after: Counter | None = None) -> Plot:
    keywords = sorted(set(before) | set(after or {}), key=lambda keyword: -before.get(keyword, 0))
    figure, axes = _figure(6.4, max(2.4, 0.45 * len(keywords) + 1.2))
    if not keywords:
        _empty(axes, "thought switches")
    else:
        places = list(range(len(keywords)))
        height = 0.4 if after is not None else 0.7
        axes.barh(
            [p - height / 2 if after is not None else p for p in places],
            [before[k] for k in keywords],
            height=height,
            color=BEFORE if after is not None else AFTER,
            label="before",
        )
        if after is not None:
            axes.barh(
                [p + height / 2 for p in places],
                [after.get(k, 0) for k in keywords],
                height=height,
                color=AFTER,
                label="after",
            )
            axes.legend(frameon=False)
        axes.set_yticks(places, keywords)
        axes.invert_yaxis()
        axes.set_xlabel("thought switches")
    caption = "Thought switches per keyword over every row" + (", before and after." if after is not None else ".")
    return _finish(figure, "Switches per keyword", caption)


def model_bars(models: Sequence[str], accuracy: Sequence[float], tokens: Sequence[float]) -> Plot:
    pyplot = _pyplot()
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, max(2.4, 0.5 * len(models) + 1.2)))
    places = list(range(len(models)))
    left.barh(places, accuracy, color=AFTER)
    left.set_yticks(places, models)
    left.invert_yaxis()
    left.set_xlabel("accuracy")
    left.set_xlim(0, 1)
    right.barh(places, tokens, color=BEFORE)
    right.set_yticks(places, [""] * len(models))
    right.invert_yaxis()
    right.set_xlabel("avg tokens")
    for axes, values, form in ((left, accuracy, "{:.3f}"), (right, tokens, "{:,.1f}")):
        for place, value in zip(places, values, strict=True):
            axes.text(value, place, " " + form.format(value), va="center", fontsize=9)
    return _finish(figure, "Models", "Accuracy and mean tokens of each evaluated model (the table above).")


def cost_scatter(
    models: Sequence[str], accuracy: Sequence[float], tokens: Sequence[float], cost: Sequence[int | None]
) -> Plot:
    """Each model's accuracy against its tokens, the marker's area growing with what making its data cost."""
    figure, axes = _figure(6.4, 4.0)
    largest = max((spent for spent in cost if spent), default=0)
    for name, x, y, spent in zip(models, tokens, accuracy, cost, strict=True):
        area = 30 + (400 * spent / largest if largest and spent else 0)
        axes.scatter([x], [y], s=area, color=AFTER if spent else BEFORE, alpha=0.7)
        label = name if spent is None else f"{name} ({spent:,} tokens)"
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    axes.set_xlabel("avg tokens")
    axes.set_ylabel("accuracy")
    return _finish(
        figure,
        "Accuracy against length, with the data's cost",
        "Each evaluated model (the table above); the marker's area grows with the tokens generated to make its SFT "
        "data beyond the original traces (grey: nothing generated, or no SFT data).",
    )


def loss_curves(curves: dict[str, Sequence[dict]]) -> Plot:
    """The training loss (left) and learning rate (right) at every logged step, one line per training run."""
    pyplot = _pyplot()
    figure, (loss, rate) = pyplot.subplots(1, 2, figsize=(9, 3.4))
    for name, logged in curves.items():
        steps = [entry["step"] for entry in logged]
        loss.plot(steps, [entry["loss"] for entry in logged], label=name)
        rate.plot(steps, [entry["learning_rate"] for entry in logged], label=name)
    if not any(curves.values()):
        _empty(loss, "logged steps")
    loss.set_xlabel("step")
    loss.set_ylabel("training loss")
    rate.set_xlabel("step")
    rate.set_ylabel("learning rate")
    if len(curves) > 1:
        loss.legend(fontsize=8)
    caption = "Training loss and learning rate at every logged step (training_log.jsonl of each sft run)."
    return _finish(figure, "Training", caption)
