"""`--ray --address` on a real multi-node Ray cluster on this machine: a head and two worker nodes, each its own
raylet (`ray.cluster_utils.Cluster`), every address 127.0.0.1; the commands join it as a user's would, or are
submitted to it as jobs (`ray job submit`, through the head's dashboard)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import ONE_MACHINE, command_env, revise_command

pytest.importorskip("ray", reason="`--ray` needs ray (in the dev extras)")

WORKER_CPUS = 1  # two workers of one CPU: two replicas of half a CPU each, spread one per node


@pytest.fixture(scope="module")
def cluster():
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    # a node address of 127.0.0.1 is resolved to this machine's outward address unless Ray is told it runs on one
    # machine: in this process, and in the environment every raylet and the jobs they run inherit (the drivers the
    # tests start directly get it from command_env): nothing may listen on or dial another interface
    ray_constants.ENABLE_RAY_CLUSTER = False
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ONE_MACHINE.items():
            patch.setenv(name, value)
        before = listening()
        head = {
            "node_ip_address": "127.0.0.1",
            "num_cpus": 0,
            # the dashboard takes `ray job submit`; on loopback, on a port of its own
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": free_port(),
        }
        cluster = Cluster(initialize_head=True, head_node_args=head)
        workers = [cluster.add_node(node_ip_address="127.0.0.1", num_cpus=WORKER_CPUS) for _ in range(2)]
        cluster.wait_for_nodes()
        cluster.workers = workers
        cluster.dashboard = f"http://127.0.0.1:{head['dashboard_port']}"
        cluster.sockets = listening() - before
        yield cluster
        cluster.shutdown()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def revise(teacher_file) -> list[str]:
    """The revise command the cluster tests run, less its output and its Ray options."""
    return revise_command(teacher_file, "--limit", "16", "--concurrency", "4", "--device", "cpu")


@pytest.fixture(scope="module")
def in_process(revise, tmp_path_factory) -> str:
    """The rows of that command run without Ray, which every run on the cluster must write byte for byte."""
    folder = tmp_path_factory.mktemp("in-process") / "run"
    subprocess.run([*revise, "--output", str(folder)], check=True, env=command_env(), capture_output=True)
    return (folder / "revised.jsonl").read_text()


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


def test_revise_on_the_cluster_writes_the_in_process_rows(cluster, revise, in_process, tmp_path):
    done = subprocess.run(
        joined([*revise, "--output", str(tmp_path / "ray")], cluster), env=command_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "ray" / "revised.jsonl").read_text() == in_process
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["replicas_used"] == 2 and summary["items_redone"] == 0


def test_ray_job_submit_runs_revise_on_the_cluster_as_the_guide_does(cluster, revise, in_process, tmp_path):
    """The guide's recipe: `ray job submit -- retrosearch revise … --ray`; the job's driver runs on the head and
    joins that cluster with no --address of its own (its actors are the cluster's: a Ray of its own fails this)."""
    script = Path(sys.executable).with_name("retrosearch")  # the console script a user's PATH finds
    job = [str(script), *revise[3:], "--output", str(tmp_path / "job"), "--ray", "--replicas", "2"]
    ray = Path(sys.executable).with_name("ray")
    actors_before = engine_actors(cluster)
    submitted = subprocess.run(
        [str(ray), "job", "submit", "--address", cluster.dashboard, "--", *job],
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
    assert "succeeded" in submitted.stdout
    assert (tmp_path / "job" / "revised.jsonl").read_text() == in_process
    assert json.loads((tmp_path / "job" / "summary.json").read_text())["replicas_used"] == 2
    assert engine_actors(cluster) == actors_before + 2  # the job's own on this cluster, not a Ray of its own


def engine_actors(cluster) -> int:
    """How many engine actors the cluster has seen, living or dead (Ray's state API, through the dashboard)."""
    from ray.util.state import list_actors

    return len(list_actors(address=cluster.dashboard, filters=[("class_name", "=", "EngineActor")], limit=1000))


@pytest.mark.parametrize(
    ("words", "rows"),
    [
        (("generate", "--problems", "organism", "--limit", "8", "--samples", "2"), "traces.jsonl"),
        (("eval", "--benchmarks", "organism", "--limit", "4", "--samples", "2"), "organism/generate/samples.jsonl"),
    ],
    ids=["generate", "eval"],
)
def test_generate_and_eval_on_the_cluster_write_the_in_process_rows(cluster, words, rows, tmp_path):
    command = [sys.executable, "-m", "retrosearch.cli", *words, "--max-new-tokens", "400", "--device", "cpu"]
    subprocess.run([*command, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    done = subprocess.run(
        joined([*command, "--output", str(tmp_path / "ray")], cluster),
        env=command_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "ray" / rows).read_text() == (tmp_path / "here" / rows).read_text()


def test_a_worker_node_lost_mid_run_loses_and_doubles_nothing(cluster, revise, in_process, tmp_path):
    output = tmp_path / "ray" / "revised.jsonl"
    process = subprocess.Popen(
        joined([*revise, "--output", str(tmp_path / "ray")], cluster),
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
    assert output.read_text() == in_process
    summary = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert summary["items_redone"] >= 1 and summary["errors"] == 0


def test_a_killed_driver_keeps_every_row_it_had_and_the_rerun_finishes_the_same(cluster, revise, in_process, tmp_path):
    folder = tmp_path / "ray"
    output = folder / "revised.jsonl"
    process = subprocess.Popen(
        joined([*revise, "--output", str(folder)], cluster),
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
        joined([*revise, "--output", str(folder)], cluster), env=command_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert output.read_text() == in_process
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
