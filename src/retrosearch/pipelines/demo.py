"""`retrosearch demo`: the main job on the embedded default, end to end, in a few minutes on a CPU.

The organism writes traces for held-out problems; its correct traces are revised by Retro-Search
with the organism itself as the revision model (the self-improvement use case).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from retrosearch.config import option, overwrite_option
from retrosearch.engines import EngineConfig, SamplingConfig, load_engine
from retrosearch.executors import ExecutorConfig
from retrosearch.organism import MAX_NEW_TOKENS
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.generate import TRACES_FILE, GenerateConfig, generate
from retrosearch.stages.revise import ReviseConfig, revise
from retrosearch.tables import print_table


@dataclass(frozen=True)
class DemoConfig:
    output: str = option("runs/demo", "run folder (rerunning the same command resumes it)")
    problems: int = option(80, "held-out organism problems to solve")
    seed: int = option(0, "global seed; per-request seeds derive from it")
    overwrite: bool = overwrite_option()


def demo(config: DemoConfig = DemoConfig()) -> dict[str, Any]:
    """Generate on `config.problems` held-out organism problems, revise the correct traces; print the table."""
    started = time.monotonic()
    root = Path(config.output)
    engine_config = EngineConfig(model="organism", batch_size=256)  # the organism is small: more rows a step, faster
    engine = load_engine(engine_config)
    sampling = SamplingConfig(max_new_tokens=MAX_NEW_TOKENS, seed=config.seed)
    generated = generate(
        GenerateConfig(
            problems="organism",
            output=str(root / "generate"),
            limit=config.problems,
            keep_correct=True,
            sampling=sampling,
            overwrite=config.overwrite,
        ),
        engine_config,
        ExecutorConfig(),
        engine=engine,
        quiet=True,
    )
    revised = revise(
        ReviseConfig(
            input=str(root / "generate" / TRACES_FILE), output=str(root / "revise"), overwrite=config.overwrite
        ),
        RetroSearchConfig(sampling=sampling),
        engine_config,
        ExecutorConfig(),
        engine=engine,
        quiet=True,
    )
    summary = {
        "problems": generated["problems"],
        "accuracy": generated["accuracy"],
        "traces": revised["samples"],
        "revised": revised["revised"],
        "tokens_before_mean": revised["tokens_before_mean"],
        "tokens_after_mean": revised["tokens_after_mean"],
        "switches_before_mean": revised["switches_before_mean"],
        "switches_after_mean": revised["switches_after_mean"],
        "generated_tokens": revised["generated_tokens"] + generated["generated_tokens"],
        "wall_seconds": time.monotonic() - started,
        "output": str(root),
    }
    console = Console()
    print_table(
        "retrosearch demo — the organism revises its own correct traces",
        ("traces", "revised", "tokens before → after", "switches before → after", "generated tokens", "wall time"),
        [
            (
                f"{summary['traces']} correct of {summary['problems']}",
                summary["revised"],
                f"{summary['tokens_before_mean']:.1f} → {summary['tokens_after_mean']:.1f}",
                f"{summary['switches_before_mean']:.2f} → {summary['switches_after_mean']:.2f}",
                f"{summary['generated_tokens']:,}",
                f"{summary['wall_seconds']:.1f} s",
            )
        ],
        console,
    )
    console.print(
        f"outputs: {root / 'generate'} (traces), {root / 'revise'} (revised.jsonl, summary.json, manifest.json)"
    )
    console.print(f"see the revisions in a browser: retrosearch report {root / 'revise'}")
    return summary
