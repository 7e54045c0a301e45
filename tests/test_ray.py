"""`revise --ray`: a local Ray cluster on this machine's CPUs, two actors with the organism."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command

pytest.importorskip("ray.data", reason="`revise --ray` needs ray[data] (in the dev extras)")


def actor_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "EngineActor"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if int(pid) != os.getpid()]


def test_ray_replicas_write_the_single_process_rows_even_when_an_actor_dies(teacher_file, tmp_path):
    command = revise_command(teacher_file, "--concurrency", "4", "--device", "cpu")

    subprocess.run([*command, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    output = tmp_path / "ray" / "revised.jsonl"
    process = subprocess.Popen(
        [*command, "--output", str(tmp_path / "ray"), "--ray", "--replicas", "2"],
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None and killed is None:
        pids = actor_pids()
        if len(pids) >= 2 and output.exists() and len(output.read_text().splitlines()) >= 4:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, stderr = process.communicate(timeout=600)
    assert killed is not None, "the run ended before an actor could be killed"
    assert process.returncode == 0, stderr[-2000:]
    assert output.read_text() == (Path(tmp_path / "here") / "revised.jsonl").read_text()


def stage_command(*words: str) -> list[str]:
    return [sys.executable, "-m", "retrosearch.cli", *words, "--max-new-tokens", "400", "--device", "cpu"]


@pytest.mark.parametrize(
    ("words", "rows"),
    [
        (("generate", "--problems", "organism", "--limit", "12", "--samples", "2"), ("samples.jsonl", "traces.jsonl")),
        (
            ("eval", "--benchmarks", "organism", "--limit", "6", "--samples", "2"),
            ("organism/generate/samples.jsonl", "results.md"),
        ),
    ],
)
def test_generate_and_eval_on_ray_write_the_single_process_output(words, rows, tmp_path):
    base = stage_command(*words)  # default concurrency: one actor could hold the whole run
    subprocess.run([*base, "--output", str(tmp_path / "here")], check=True, env=command_env(), capture_output=True)
    done = subprocess.run(
        [*base, "--output", str(tmp_path / "ray"), "--ray", "--replicas", "2"], env=command_env(), capture_output=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for name in rows:  # results.md ends with its own folder, and the same config hash: ray is a speed-only setting
        ray = (tmp_path / "ray" / name).read_text().replace(str(tmp_path / "ray"), "FOLDER")
        assert ray == (tmp_path / "here" / name).read_text().replace(str(tmp_path / "here"), "FOLDER"), name
    expected_rows = 24 if words[0] == "generate" else 12  # problems x samples
    assert (tmp_path / "ray" / rows[0]).read_text().count("\n") == expected_rows
    summary = json.loads((tmp_path / "ray" / rows[0]).with_name("summary.json").read_text())
    assert summary["replicas_used"] == 2  # both actors returned rows, not one doing all the work


def test_every_replica_gets_work_on_a_small_run_and_a_chunk_starts_before_the_last_drains():
    from retrosearch.executors.ray import chunk_size

    assert chunk_size(20, 2, 128) == 10  # generate --limit 20 --replicas 2: a chunk for each, not one for both
    assert chunk_size(1000, 2, 128) == 64  # half the in-flight share: the next chunk goes out while one finishes
    assert chunk_size(1000, 2, 5) == 3
    assert chunk_size(3, 4, 128) == 1
    assert chunk_size(0, 2, 128) == 1


def test_items_of_a_lost_actor_go_out_again_first_and_in_order():
    from retrosearch.executors.ray import Queue

    queue = Queue(iter([(0, "a"), (1, "b"), (2, "c"), (3, "d"), (4, "e")]))
    assert queue.take(2) == [(0, "a"), (1, "b")]
    assert queue.take(1) == [(2, "c")]
    queue.put_back([(1, "b"), (0, "a")])
    assert not queue.empty()
    assert queue.take(2) == [(0, "a"), (1, "b")]
    assert queue.take(5) == [(3, "d"), (4, "e")]
    assert queue.empty() and queue.take(1) == []
