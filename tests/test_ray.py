"""`revise --ray`: a local Ray cluster on this machine's CPUs, two actors with the organism."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command

pytest.importorskip("ray.data", reason="`revise --ray` needs ray[data] (in the dev extras)")


def actor_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ReviseActor"], capture_output=True, text=True).stdout.split()
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
