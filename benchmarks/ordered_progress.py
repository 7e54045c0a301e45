"""How soon revised rows are there in input order: `retrosearch revise` on organism traces, its output polled
while it runs. Engines serve the requests of earlier rows first, so the in-order prefix (rows 0..k all on disk:
what a reader of the ordered output, or a rerun's `write_in_order`, can use) should follow the rows on disk
closely instead of waiting on the slowest early row. Prints JSON.

    python benchmarks/ordered_progress.py --traces 250 [--batch-size 16 --concurrency 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from organism_traces import ONE_THREAD, RETROSEARCH, organism_traces

QUARTERS = (0.25, 0.5, 0.75)


def on_disk(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.endswith("}")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=250, help="organism problems to generate traces for")
    parser.add_argument("--batch-size", type=int, default=64, help="engine batch")
    parser.add_argument("--concurrency", type=int, default=0, help="rows in flight (0: twice the batch)")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ordered-progress-"))
    env = ONE_THREAD
    traces = organism_traces(work, args.traces)
    order = [json.loads(line)["id"] for line in traces.read_text().splitlines()]
    output = work / "revise"
    command = [*RETROSEARCH, "revise", "--input", str(traces), "--max-new-tokens", "400", "--output", str(output)]
    command += ["--batch-size", str(args.batch_size), "--concurrency", str(args.concurrency)]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: list[tuple[float, int, int]] = []  # (seconds, rows on disk, in-order prefix)
    while process.poll() is None:
        present = set(on_disk(output / "revised.jsonl"))
        prefix = next((index for index, row_id in enumerate(order) if row_id not in present), len(order))
        samples.append((time.monotonic() - started, len(present), prefix))
        time.sleep(0.2)
    wall = time.monotonic() - started
    loaded = next((t for t, rows, _ in samples if rows), wall)  # model loading and input checks come first
    at = {}
    for share in QUARTERS:
        moment = loaded + share * (wall - loaded)
        _, rows, prefix = max((s for s in samples if s[0] <= moment), default=(0, 0, 0))
        at[f"{int(share * 100)}%"] = {"rows_on_disk": rows, "in_order_prefix": prefix}
    mean_gap = sum(rows - prefix for _, rows, prefix in samples) / max(len(samples), 1)
    print(
        json.dumps(
            {
                "traces": len(order),
                "batch_size": args.batch_size,
                "concurrency": args.concurrency or 2 * args.batch_size,
                "wall_seconds": round(wall, 1),
                "first_row_seconds": round(loaded, 1),
                "at_share_of_revising_time": at,
                "mean_rows_on_disk_beyond_the_in_order_prefix": round(mean_gap, 1),
                "returncode": process.returncode,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
