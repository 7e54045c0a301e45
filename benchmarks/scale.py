"""The same revision in process, through `transformers serve` (the openai engine) and on 2 Ray actors.
Prints one JSON line.

    python benchmarks/scale.py --input runs/gen/traces.jsonl [--limit 100]

On a 2-core machine this measures overheads (HTTP, token-by-token masked starts, Ray start-up), not
speed-ups: the replicas share the same two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import OrganismServer

from retrosearch.organism import MAX_NEW_TOKENS, checkpoint_path


def revise(input_path: str, limit: int, folder: Path, *options: str) -> dict:
    command = [sys.executable, "-m", "retrosearch.cli", "revise", "--input", input_path, "--limit", str(limit)]
    command += ["--output", str(folder), "--max-new-tokens", str(MAX_NEW_TOKENS), *options]
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    wall = time.monotonic() - started
    summary = json.loads((folder / "summary.json").read_text())
    rows = [json.loads(line) for line in (folder / "revised.jsonl").read_text().splitlines()]
    return {
        "wall_seconds": round(wall, 1),
        "revised": summary["revised"],
        "errors": summary["errors"],
        "tokens_ratio": round(summary["tokens_ratio"], 3),
        "generated_tokens": summary["generated_tokens"],
        "statuses": [row["status"] for row in rows],
        "text": (folder / "revised.jsonl").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        here = revise(args.input, args.limit, root / "here")
        ray = revise(args.input, args.limit, root / "ray", "--ray", "--replicas", "2", "--concurrency", "16")
        server = OrganismServer(str(checkpoint_path()))
        server.start()
        try:
            served = revise(
                args.input,
                args.limit,
                root / "openai",
                "--engine",
                "openai",
                "--base-url",
                server.url,
                "--ban-method",
                "generation_config",
            )
        finally:
            server.kill()
    result = {
        "samples": args.limit,
        "in_process": {k: v for k, v in here.items() if k not in ("statuses", "text")},
        "ray_2_replicas": {k: v for k, v in ray.items() if k not in ("statuses", "text")},
        "ray_output_identical": ray["text"] == here["text"],
        "openai_transformers_serve": {k: v for k, v in served.items() if k not in ("statuses", "text")},
        "openai_same_skipped": [s == "skipped" for s in served["statuses"]]
        == [s == "skipped" for s in here["statuses"]],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
