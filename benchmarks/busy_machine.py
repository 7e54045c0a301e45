"""Revise on a busy machine: alone, with one core kept busy by another process, and with every core busy; the
tool's default threads (one per core no other process keeps busy) against torch's own default (one per core).
Prints JSON: each condition's seconds (median and spread of the repeats), its throughput against alone, and
whether its rows are byte-identical to the run alone.

    python benchmarks/busy_machine.py                   # 154 organism teacher traces, 3 repeats (torch's: 1)
    python benchmarks/busy_machine.py --traces 60 --repeats 1

Run it alone on the machine: the busy cores are this script's own spinning processes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from organism_traces import RETROSEARCH

# the tool decides its threads only where the user did not: no thread settings of ours in the environment
UNSET = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
SPIN = "while True:\n    pass"


@contextmanager
def busy(cores: int):
    """`cores` processes that each keep one core busy for as long as the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(cores)]
    time.sleep(1.0)  # running before the tool measures the machine
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def revise(traces: Path, output: Path, threads: int | None) -> float:
    command = [*RETROSEARCH, "revise", "--input", str(traces), "--output", str(output), "--device", "cpu"]
    if threads:
        command += ["--threads", str(threads)]
    started = time.monotonic()
    subprocess.run([*command, "--overwrite"], check=True, env=UNSET, capture_output=True)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=154)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=1, help="repeats of the runs with torch's threads")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="busy-machine-"))
    cores = len(os.sched_getaffinity(0))
    teacher = ["organism", "teacher", "--output", str(work / "teacher"), "--count", str(args.traces), "--seed", "0"]
    subprocess.run([*RETROSEARCH, *teacher, "--split", "test"], check=True, capture_output=True)
    traces = work / "teacher" / "traces.jsonl"
    alone_rows = None
    conditions = {}
    for busy_cores in (0, 1, cores):
        for threads, label in ((None, "default threads"), (cores, f"torch's {cores} threads")):
            name = f"{busy_cores} of {cores} cores busy, {label}"
            output = work / f"busy{busy_cores}-threads{threads or 'default'}"
            with busy(busy_cores):
                repeats = args.repeats if threads is None else args.reference_repeats
                seconds = [revise(traces, output, threads) for _ in range(repeats)]
            rows = (output / "revised.jsonl").read_bytes()
            alone_rows = alone_rows if alone_rows is not None else rows
            conditions[name] = {
                "busy_cores": busy_cores,
                "threads": threads or "default",
                "seconds_median": round(statistics.median(seconds), 1),
                "seconds_spread": [round(min(seconds), 1), round(max(seconds), 1)],
                "rows_identical_to_alone": rows == alone_rows,
            }
    alone = conditions[f"0 of {cores} cores busy, default threads"]["seconds_median"]
    for condition in conditions.values():
        condition["throughput_vs_alone"] = round(alone / condition["seconds_median"], 2)
    report = {
        "traces": args.traces,
        "cores": cores,
        "repeats": args.repeats,
        "conditions": conditions,
        "one_busy_core_default_threads_vs_alone": conditions[f"1 of {cores} cores busy, default threads"][
            "throughput_vs_alone"
        ],
        "target": 0.7,
        "all_rows_identical": all(c["rows_identical_to_alone"] for c in conditions.values()),
        "work": str(work),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
