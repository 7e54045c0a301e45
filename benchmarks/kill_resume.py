"""How much work survives repeated SIGKILLs: `retrosearch revise` on organism traces, killed every N seconds,
then finished by one more run and compared with an uninterrupted run. Prints JSON.

    python benchmarks/kill_resume.py --traces 250 --kills 10 --every 12
    python benchmarks/kill_resume.py --ray --traces 120 --kills 4 --every 15

Needs no data: the traces are the organism's own correct and incorrect generations (written first, once).
Each kill is a SIGKILL of the run's own process only (not its group), the harder case: afterwards it looks
for any of the run's child processes (answer checkers, multiprocessing helpers) that outlived it.

--ray: the same on a Ray cluster of three raylets on this machine (a head and two one-CPU worker nodes, every
address 127.0.0.1), the run joining it with `--ray --replicas 2 --address`: the driver is killed as above (the rows
on disk just before each kill against those kept after it), then one more run has a worker node removed midway
(its actor dies with it) and must finish with nothing lost or doubled; the figures say how many items went out
again (`items_redone`).
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


def ray_cluster():
    """A head with no CPUs and two one-CPU worker nodes, each its own raylet, all on loopback."""
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    ray_constants.ENABLE_RAY_CLUSTER = False  # else Ray resolves 127.0.0.1 to the machine's outward address
    cluster = Cluster(
        initialize_head=True, head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 0, "include_dashboard": False}
    )
    workers = [cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    return cluster, workers


def ray_mode(args: argparse.Namespace, work: Path) -> dict:
    env = {**ONE_THREAD, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    traces = organism_traces(work, args.traces)
    revise = [*RETROSEARCH, "revise", "--input", str(traces), "--max-new-tokens", "400", "--concurrency", "8"]
    subprocess.run([*revise, "--output", str(work / "whole")], check=True, env=env, capture_output=True)
    expected = (work / "whole" / "revised.jsonl").read_bytes()
    cluster, workers = ray_cluster()
    joined = [*revise, "--ray", "--replicas", "2", "--address", cluster.address]
    try:
        killed = work / "driver-killed"
        before, after = [], []
        for _ in range(args.kills):
            process = subprocess.Popen(
                [*joined, "--output", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(args.every)
            before.append(rows(killed / "revised.jsonl"))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            after.append(rows(killed / "revised.jsonl"))
        subprocess.run([*joined, "--output", str(killed)], check=True, env=env, capture_output=True)
        lost_node = work / "node-lost"
        process = subprocess.Popen(
            [*joined, "--output", str(lost_node)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 600
        while process.poll() is None and rows(lost_node / "revised.jsonl") < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        removed_at = rows(lost_node / "revised.jsonl")
        cluster.remove_node(workers.pop())
        workers.append(cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1))
        _, stderr = process.communicate()
        summary = json.loads((lost_node / "summary.json").read_text()) if process.returncode == 0 else {}
    finally:
        cluster.shutdown()
    return {
        "mode": "ray: head + 2 worker nodes on 127.0.0.1, --replicas 2",
        "traces": len(expected.splitlines()),
        "driver_kills": args.kills,
        "seconds_between_kills": args.every,
        "rows_on_disk_just_before_each_kill": before,
        "rows_on_disk_after_each_kill": after,
        "share_of_rows_kept_over_the_kills": round(sum(after) / sum(before), 3) if sum(before) else None,
        "driver_killed_rerun_identical": (killed / "revised.jsonl").read_bytes() == expected,
        "node_removed_after_rows": removed_at,
        "node_lost_run_exit": process.returncode,
        "node_lost_run_error": stderr[-500:] if process.returncode else None,
        "node_lost_items_redone": summary.get("items_redone"),
        "node_lost_run_identical": (lost_node / "revised.jsonl").read_bytes() == expected,
        "work": str(work),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=250, help="organism problems to generate traces for")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--every", type=float, default=12.0, help="seconds between a start and its kill")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    parser.add_argument("--ray", action="store_true", help="on a three-node Ray cluster on this machine")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="kill-resume-"))
    if args.ray:
        print(json.dumps(ray_mode(args, work), indent=2))
        return 0
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
