"""SFT of the organism student in one process against two data-parallel processes (DDP over gloo, `accelerate launch
--multi_gpu --num_processes 2` on this GPU-less machine) with the same effective batch: the loss at every step and
the students' accuracy on held-out problems. Prints JSON.

    python benchmarks/distributed_sft.py --traces 512 --eval-problems 200

The traces are the organism teacher's own (train split); each student is evaluated with `retrosearch eval` on the
organism benchmark, one sample per problem at eval's default sampling.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from organism_traces import ONE_THREAD, RETROSEARCH

ACCELERATE = str(Path(sys.executable).with_name("accelerate"))


def train(command: list[str], output: Path, batch: int, traces: Path, env: dict[str, str]) -> dict:
    sft = ["sft", "--input", str(traces), "--output", str(output), "--max-length", "1024", "--epochs", "1"]
    sft += ["--batch-size", str(batch), "--learning-rate", "1e-3", "--logging-steps", "1", "--save-steps", "1000"]
    started = time.monotonic()
    subprocess.run([*command, *sft], check=True, env=env, capture_output=True)
    summary = json.loads((output / "summary.json").read_text())
    losses = [entry["loss"] for entry in map(json.loads, (output / "training_log.jsonl").read_text().splitlines())]
    return {"seconds": round(time.monotonic() - started, 1), "steps": summary["steps"], "losses": losses}


def accuracy(student: Path, output: Path, problems: int, env: dict[str, str]) -> float:
    command = [*RETROSEARCH, "eval", "--benchmarks", "organism", "--model", str(student / "final"), "--device", "cpu"]
    command += ["--limit", str(problems), "--samples", "1", "--output", str(output), "--batch-size", "256"]
    subprocess.run(command, check=True, env=env, capture_output=True)
    summary = json.loads((output / "summary.json").read_text())
    return summary["benchmarks"]["organism"]["accuracy"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=512)
    parser.add_argument("--batch", type=int, default=16, help="effective batch: one process, or half in each of two")
    parser.add_argument("--eval-problems", type=int, default=200)
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="distributed-sft-"))
    teacher = ["organism", "teacher", "--output", str(work / "teacher"), "--count", str(args.traces), "--seed", "0"]
    subprocess.run(
        [*RETROSEARCH, *teacher, "--split", "train"],
        check=True,
        env=ONE_THREAD,
        capture_output=True,
    )
    traces = work / "teacher" / "traces.jsonl"
    loopback = {**ONE_THREAD, "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}
    two = [ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    two += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1"]
    two += ["--main_process_port", "29531", "-m", "retrosearch.cli"]
    one = train(RETROSEARCH, work / "one", args.batch, traces, ONE_THREAD)
    ddp = train(two, work / "two", args.batch // 2, traces, loopback)
    gaps = [abs(a - b) for a, b in zip(one["losses"], ddp["losses"], strict=True)]
    report = {
        "traces": args.traces,
        "effective_batch": args.batch,
        "one_process": {**one, "accuracy": accuracy(work / "one", work / "eval-one", args.eval_problems, ONE_THREAD)},
        "two_processes": {**ddp, "accuracy": accuracy(work / "two", work / "eval-two", args.eval_problems, ONE_THREAD)},
        "loss_gap_max": float(f"{max(gaps):.3g}"),
        "loss_gap_mean": float(f"{sum(gaps) / len(gaps):.3g}"),
        "work": str(work),
    }
    report["accuracy_gap"] = round(report["two_processes"]["accuracy"] - report["one_process"]["accuracy"], 3)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
