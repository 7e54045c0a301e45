"""How much work survives repeated SIGKILLs: `retrosearch revise` on organism traces, killed every N seconds,
then finished by one more run and compared with an uninterrupted run. Prints JSON.

    python benchmarks/kill_resume.py --traces 250 --kills 10 --every 12

Needs no data: the traces are the organism's own correct and incorrect generations (written first, once).
Each kill is a SIGKILL of the run's own process only (not its group), the harder case: afterwards it looks
for any of the run's child processes (answer checkers, multiprocessing helpers) that outlived it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from organism_traces import ONE_THREAD, RETROSEARCH, organism_traces


def rows(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def descendants(pid: int) -> list[int]:
    found = [
        int(child) for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    ]
    return found + [grandchild for child in found for grandchild in descendants(child)]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=250, help="organism problems to generate traces for")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--every", type=float, default=12.0, help="seconds between a start and its kill")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="kill-resume-"))
    env = ONE_THREAD
    traces = organism_traces(work, args.traces)
    revise = [*RETROSEARCH, "revise", "--input", str(traces), "--max-new-tokens", "400"]
    started = time.monotonic()
    subprocess.run([*revise, "--output", str(work / "whole")], check=True, env=env, capture_output=True)
    uninterrupted = time.monotonic() - started
    killed = work / "killed"
    after_each, children = [], []
    for _ in range(args.kills):
        process = subprocess.Popen(
            [*revise, "--output", str(killed)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(args.every)
        children += descendants(process.pid)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
        after_each.append(rows(killed / "revised.jsonl"))
    time.sleep(3)
    left = [pid for pid in children if alive(pid)]
    subprocess.run([*revise, "--output", str(killed)], check=True, env=env, capture_output=True)
    total = rows(work / "whole" / "revised.jsonl")
    print(
        json.dumps(
            {
                "traces": total,
                "kills": args.kills,
                "seconds_between_kills": args.every,
                "uninterrupted_seconds": round(uninterrupted, 1),
                "rows_on_disk_after_each_kill": after_each,
                "share_on_disk_after_the_kills": round(after_each[-1] / total, 3) if total else 0.0,
                "processes_left_after_the_kills": len(left),
                "finished_rerun_identical": (killed / "revised.jsonl").read_bytes()
                == (work / "whole" / "revised.jsonl").read_bytes(),
                "work": str(work),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
