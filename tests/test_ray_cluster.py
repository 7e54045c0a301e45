"""`--ray --address` on a real multi-node Ray cluster on this machine: a head and two worker nodes, each its own
raylet (`ray.cluster_utils.Cluster`), every address 127.0.0.1; the commands join it as a user's would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command

pytest.importorskip("ray", reason="`--ray` needs ray (in the dev extras)")

WORKER_CPUS = 1  # two workers of one CPU: two replicas of half a CPU each, spread one per node


@pytest.fixture(scope="module")
def cluster():
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # a node address of 127.0.0.1 is resolved to this machine's outward address unless Ray is told it runs on one
    # machine (the driver's command_env says so too): nothing may listen on or dial another interface
    ray_constants.ENABLE_RAY_CLUSTER = False
    before = listening()
    loopback = {"node_ip_address": "127.0.0.1", "num_cpus": 0, "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args=loopback)
    workers = [cluster.add_node(node_ip_address="127.0.0.1", num_cpus=WORKER_CPUS) for _ in range(2)]
    cluster.wait_for_nodes()
    cluster.workers = workers
    cluster.sockets = listening() - before
    yield cluster
    cluster.shutdown()


def joined(command: list[str], cluster, *more: str) -> list[str]:
    return [*command, "--ray", "--replicas", "2", "--address", cluster.address, *more]


def listening() -> set[tuple[str, int]]:
    """Every listening TCP socket on the machine, (local address, port), read from /proc (no tool needed)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                address, port = local.split(":")
                found.add((address, int(port, 16)))
    return found


LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}  # as /proc spells them


def test_every_socket_the_cluster_opened_listens_on_loopback_only(cluster):
    assert len(cluster.sockets) >= 3, cluster.sockets  # the GCS and each raylet's, at least
    for address, port in cluster.sockets:
        assert address in LOOPBACK, (address, port)


def test_revise_on_the_cluster_writes_the_in_process_rows(cluster, teacher_file, tmp_path):
    command = revise_command(teacher_file, "--limit", "12", "--concurrency", "4", "--device", "cpu")
    subprocess.run([*command, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    done = subprocess.run(
        joined([*command, "--output", str(tmp_path / "ray")], cluster),
        env=command_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "ray" / "revised.jsonl").read_text() == (tmp_path / "here" / "revised.jsonl").read_text()
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["replicas_used"] == 2 and summary["items_redone"] == 0


def test_a_worker_node_lost_mid_run_loses_and_doubles_nothing(cluster, teacher_file, tmp_path):
    command = revise_command(teacher_file, "--limit", "16", "--concurrency", "4", "--device", "cpu")
    subprocess.run([*command, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    output = tmp_path / "ray" / "revised.jsonl"
    process = subprocess.Popen(
        joined([*command, "--output", str(tmp_path / "ray")], cluster),
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    removed = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if output.exists() and len(output.read_text().splitlines()) >= 3:
                removed = cluster.workers.pop()
                cluster.remove_node(removed)  # its raylet and its actor die at once, as with a lost machine
                break
            time.sleep(0.05)
        _, stderr = process.communicate(timeout=300)
    finally:
        if removed is not None:
            cluster.workers.append(cluster.add_node(node_ip_address="127.0.0.1", num_cpus=WORKER_CPUS))
    assert removed is not None, "the run ended before a node could be removed"
    assert process.returncode == 0, stderr[-2000:]
    assert output.read_text() == (tmp_path / "here" / "revised.jsonl").read_text()
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["items_redone"] >= 1 and summary["errors"] == 0


def test_a_killed_driver_keeps_every_row_it_had_and_the_rerun_finishes_the_same(cluster, teacher_file, tmp_path):
    command = revise_command(teacher_file, "--limit", "16", "--concurrency", "4", "--device", "cpu")
    subprocess.run([*command, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    folder = tmp_path / "ray"
    output = folder / "revised.jsonl"
    process = subprocess.Popen(
        joined([*command, "--output", str(folder)], cluster),
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and len(output.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before the driver could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = [line for line in output.read_text().splitlines() if line.endswith("}")]
    assert 4 <= len(kept) < 16
    done = subprocess.run(
        joined([*command, "--output", str(folder)], cluster), env=command_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert output.read_text() == (tmp_path / "here" / "revised.jsonl").read_text()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["resumed_samples"] >= len(kept) - 1  # every whole row written before the kill (a torn one redone)


def test_more_replicas_than_the_cluster_holds_is_one_line(cluster, teacher_file, tmp_path):
    command = revise_command(teacher_file, "--limit", "2", "--device", "cpu", "--output", str(tmp_path / "run"))
    done = subprocess.run(
        [*command, "--ray", "--replicas", "5", "--address", cluster.address],
        env=command_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("retrosearch: error: --replicas 5 CPU actors need half a CPU each")
    )
    assert "Traceback" not in done.stderr
