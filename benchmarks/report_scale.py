"""How large and how fast is `retrosearch report` on a big run? Prints one JSON line.

    python benchmarks/report_scale.py [--rows 100000] [--traces ../shared/data/traces]

Builds a revise run of ROWS rows from real long traces (the ../shared traces, each revised by cutting it at a
seeded thought switch; cycled to reach ROWS), then measures: seconds to write the report, its size, the rows the
viewer holds, and seconds until headless Chromium has the viewer ready (the page's own `data-viewer` flag).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from retrosearch.tools.report import write_report
from retrosearch.trace import KeywordMatcher, parse

SHARED_TRACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "traces"


def real_traces(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"no traces in {folder}")
    return rows


def revised_row(number: int, source: dict, matcher: KeywordMatcher, rng: random.Random) -> dict:
    original = source["code"][0]  # SkyThought's evaluation files hold the sampled response in a one-item list
    trace = parse(original)
    switches = trace.switch_indices(matcher)
    cut = rng.choice(switches) if switches else len(trace.steps)
    revised = trace.head + "\n\n".join(trace.steps[:cut]) + trace.tail
    words_before, words_after = len(original.split()), len(revised.split())
    return {
        "id": f"{source['idx']}#{number}",
        "problem": source["question"],
        "gold": str(source["answer"]),
        "original": original,
        "revised": revised,
        "tokens_before": words_before,
        "tokens_after": words_after,
        "switches_before": len(switches),
        "switches_after": sum(1 for index in switches if index < cut),
        "revisions": [{"switch_index": cut, "keyword": "Wait", "length_before": len(trace.steps), "length_after": cut}]
        if switches
        else [],
        "status": "revised" if switches else "unchanged",
        "reason": "shorter correct rollout accepted" if switches else "no shorter correct rollout",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--traces", type=Path, default=SHARED_TRACES)
    args = parser.parse_args()
    sources = real_traces(args.traces)
    matcher, rng = KeywordMatcher(), random.Random(0)
    folder = Path(tempfile.mkdtemp(prefix="report-scale-")) / "revise"
    folder.mkdir()
    try:
        with open(folder / "revised.jsonl", "w") as handle:
            for number in range(args.rows):
                row = revised_row(number, sources[number % len(sources)], matcher, rng)
                handle.write(json.dumps(row) + "\n")
        (folder / "summary.json").write_text(json.dumps({"samples": args.rows}))
        run_bytes = (folder / "revised.jsonl").stat().st_size
        started = time.perf_counter()
        made = write_report(folder)
        build_seconds = time.perf_counter() - started
        open_seconds = _open_seconds(Path(made["report"]))
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "run_mb": round(run_bytes / 2**20, 1),
                    "report_mb": round(made["bytes"] / 2**20, 2),
                    "rows_in_viewer": made["rows_in_viewer"],
                    "build_seconds": round(build_seconds, 1),
                    "chromium_ready_seconds": round(open_seconds, 2),
                }
            )
        )
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def _open_seconds(report: Path) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        started = time.perf_counter()
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("body[data-viewer=ready]", timeout=120_000)
        seconds = time.perf_counter() - started
        browser.close()
    return seconds


if __name__ == "__main__":
    main()
