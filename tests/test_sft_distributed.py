"""`accelerate launch --multi_gpu --num_processes 2 -m retrosearch.cli sft` on this GPU-less machine: data-parallel
training (DDP over gloo) in two processes, every address 127.0.0.1. The main process holds the run folder; both train.
(`accelerate launch --cpu` runs a single process whatever `--num_processes` says: accelerate starts several only
through torchrun, its `--multi_gpu` launcher, which trains on the CPU where there is no GPU.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import command_env
from servers import free_port

from retrosearch.stages.teacher import export_teacher

pytest.importorskip("accelerate", reason="distributed SFT needs accelerate (in the dev extras)")


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sft") / "teacher.jsonl"
    export_teacher(path, 16, split="train", seed=0)
    return path


def launch(traces: Path, output: Path, *more: str) -> list[str]:
    """16 traces, 4 a step in each of two processes (8 in all), two epochs: four steps, each saved and logged."""
    accelerate = Path(sys.executable).with_name("accelerate")
    return [
        *(str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"),
        *("--mixed_precision", "no", "--dynamo_backend", "no"),
        *("--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())),
        *("-m", "retrosearch.cli", "sft", "--input", str(traces), "--output", str(output)),
        *("--max-length", "1024", "--batch-size", "4", "--epochs", "2", "--learning-rate", "1e-3"),
        *("--logging-steps", "1", "--save-steps", "1", *more),
    ]


def loopback_env() -> dict[str, str]:
    return {**command_env(), "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


def test_two_processes_train_one_student_in_one_run_folder(traces, tmp_path):
    done = subprocess.run(launch(traces, tmp_path / "run"), env=loopback_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4 and summary["rows"] == 16
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    logged = [json.loads(line) for line in (tmp_path / "run" / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]
    assert done.stdout.count("retrosearch sft") == 1  # one summary: the main process reports, the other trains
    again = subprocess.run(launch(traces, tmp_path / "run"), env=loopback_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]  # finished: both processes return at once
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary


def test_a_killed_launch_resumes_from_its_last_checkpoint(traces, tmp_path):
    output = tmp_path / "run"
    process = subprocess.Popen(
        launch(traces, output),
        env=loopback_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None and not (output / "checkpoint-2").is_dir():
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "final").exists()
    done = subprocess.run(launch(traces, output), env=loopback_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["steps"] == 4 and (output / "final" / "model.safetensors").exists()
    logged = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged] == [1, 2, 3, 4]  # the killed run's steps come from its checkpoint
