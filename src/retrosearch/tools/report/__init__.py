"""`retrosearch report`: one self-contained HTML page of a run — its figures, plots and a trace viewer that shows
each original trace beside its revision."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrosearch.config import option
from retrosearch.data.outputs import recording, write_whole
from retrosearch.tables import print_figures
from retrosearch.tools.report.page import MB, render
from retrosearch.tools.report.runs import read_run

__all__ = ["ReportConfig", "report", "write_report"]


@dataclass(frozen=True)
class ReportConfig:
    run: str = option(
        "", "run folder of revise, cut, generate or eval, or a recipe's (retrosearch run)", positional=True
    )
    output: str | None = option(None, "the HTML file (default: RUN/report.html)")
    max_rows: int = option(5000, "most rows in the trace viewer (a uniform sample)")
    max_mb: float = option(20.0, "largest file; the viewer gets fewer rows to fit")


def report(config: ReportConfig) -> dict[str, Any]:
    """`retrosearch report`: write the page, print its figures and where to open it."""
    made = write_report(config.run, config.output, config.max_rows, config.max_mb)
    print_figures(f"retrosearch report — {config.run}", made)
    print(f"open it in a browser: file://{os.path.abspath(made['report'])}")
    return made


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
    with recording(folder):  # a report inside a run folder is the run's: --overwrite removes it with the rest
        write_whole(target, html)
    return {
        "report": str(target),
        "bytes": len(html.encode()),
        "rows_in_viewer": shown,
        "rows_in_run": report.viewer.total if report.viewer else 0,
    }
