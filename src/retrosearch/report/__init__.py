"""`retrosearch report`: one self-contained HTML page of a run — its figures, plots and a trace viewer that shows
each original trace beside its revision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrosearch.data import write_whole
from retrosearch.report.page import MB, render
from retrosearch.report.runs import read_run

__all__ = ["write_report"]


def write_report(
    run: str | Path, output: str | Path | None = None, max_rows: int = 5000, max_mb: float = 20.0
) -> dict[str, Any]:
    """Write the report of a run folder (revise, generate, eval or a recipe's) to `output` (default
    RUN/report.html); the viewer holds at most `max_rows` rows and the file at most `max_mb` megabytes."""
    if max_rows < 1 or max_mb <= 0:
        raise ValueError("--max-rows must be at least 1 and --max-mb above 0")
    folder = Path(run)
    report = read_run(folder, max_rows)
    html, shown = render(report, int(max_mb * MB))
    target = Path(output) if output else folder / "report.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_whole(target, html)
    return {
        "report": str(target),
        "bytes": len(html.encode()),
        "rows_in_viewer": shown,
        "rows_in_run": report.viewer.total if report.viewer else 0,
    }
