"""Branch and bound and batching on the organism: same output, less work. Prints one JSON line.

    python benchmarks/revise_bound.py --input runs/gen/traces.jsonl [--limit 200]

Revises the same traces three times: bound on, bound off (batch 64), and bound on at batch 1,
and compares outputs, generated tokens and wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from retrosearch.engines import EngineConfig, SamplingConfig, load_engine
from retrosearch.organism import MAX_NEW_TOKENS
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.revise import OUTPUT_FILE, ReviseConfig, revise

COMPARED = ("id", "status", "revised", "revisions")


def run(input_path: str, limit: int, bound: bool, batch_size: int, folder: Path) -> tuple[dict, list[tuple]]:
    engine_config = EngineConfig(model="organism", batch_size=batch_size)
    engine = load_engine(engine_config)
    started = time.monotonic()
    summary = revise(
        ReviseConfig(input=input_path, output=str(folder), limit=limit),
        RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=MAX_NEW_TOKENS), bound=bound),
        engine_config,
        engine=engine,
        quiet=True,
    )
    wall = time.monotonic() - started
    rows = [json.loads(line) for line in (folder / OUTPUT_FILE).read_text().splitlines()]
    figures = {
        "generated_tokens": summary["generated_tokens"],
        "wall_seconds": round(wall, 1),
        "tokens_per_second": round(engine.generated_tokens / wall, 1),
        "revised": summary["revised"],
        "tokens_before_mean": round(summary["tokens_before_mean"], 2),
        "tokens_after_mean": round(summary["tokens_after_mean"], 2),
    }
    return figures, [tuple(json.dumps(row[key], sort_keys=True) for key in COMPARED) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--skip-batch-1", action="store_true", help="skip the slow batch-size-1 run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bounded, bounded_rows = run(args.input, args.limit, True, 64, root / "bound")
        unbounded, unbounded_rows = run(args.input, args.limit, False, 64, root / "no-bound")
        result = {
            "samples": len(bounded_rows),
            "bound": bounded,
            "no_bound": unbounded,
            "identical_output": bounded_rows == unbounded_rows,
            "generated_tokens_ratio": round(bounded["generated_tokens"] / max(1, unbounded["generated_tokens"]), 3),
        }
        if not args.skip_batch_1:
            single, single_rows = run(args.input, args.limit, True, 1, root / "batch-1")
            result["batch_1"] = single
            result["identical_output_batch_1"] = single_rows == bounded_rows
            result["speedup_batch_64_vs_1"] = round(single["wall_seconds"] / max(bounded["wall_seconds"], 1e-9), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
