"""torch's threads for a model on the CPU: as asked, else OMP_NUM_THREADS, else one per core no other process keeps
busy (benchmarks/busy_machine.py measures what that buys)."""

import subprocess
import sys
import time

import pytest
import torch

from retrosearch.engines import threads


@pytest.fixture
def torch_threads():
    """torch's thread count, as it was before the test."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_default_to_the_cores_no_other_process_keeps_busy(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: {0, 1, 2, 3})
    for busy, expected in ((0.1, 4), (0.6, 3), (1.0, 3), (1.4, 3), (2.6, 1), (4.0, 1)):
        monkeypatch.setattr(threads, "busy_cores", lambda cores, busy=busy: busy)
        assert threads.cpu_threads() == expected, busy
    monkeypatch.setattr(threads, "busy_cores", lambda cores: 0.0)
    assert threads.cpu_threads(at_most=2) == 2  # a Ray actor's share of its node
    assert threads.cpu_threads(6) == 6 and threads.cpu_threads(6, at_most=2) == 6  # as asked


def test_a_core_kept_busy_by_another_process_is_seen_busy():
    cores = threads.usable_cores()
    spinner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])
    try:
        time.sleep(0.5)
        assert threads.busy_cores(cores) >= 0.7
    finally:
        spinner.kill()
        spinner.wait()


def test_the_users_omp_num_threads_stands_unless_threads_are_asked(monkeypatch, torch_threads):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    monkeypatch.setattr(threads, "busy_cores", lambda cores: pytest.fail("measured although the user said"))
    assert threads.use_cpu_threads() == 3 and torch.get_num_threads() == 3
    assert threads.use_cpu_threads(2) == 2 and torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads, "cpu_threads", lambda asked, at_most: 1)
    assert threads.use_cpu_threads() == 1 and torch.get_num_threads() == 1


def test_an_engine_on_the_cpu_takes_its_threads_and_refuses_fewer_than_one(torch_threads):
    from retrosearch.engines import EngineConfig, load_engine

    load_engine(EngineConfig(model="organism", device="cpu", threads=1))
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match=r"^--threads must be at least 1 \(got 0\)$"):
        EngineConfig(threads=0)


def test_revised_rows_are_the_same_whatever_the_threads(teacher_file, tmp_path, torch_threads):
    from retrosearch.cli import main

    for count in (1, 2):
        command = ["revise", "--input", str(teacher_file), "--limit", "8", "--device", "cpu", "--threads", str(count)]
        assert main([*command, "--output", str(tmp_path / str(count))]) == 0
        assert torch.get_num_threads() == count
    assert (tmp_path / "1" / "revised.jsonl").read_bytes() == (tmp_path / "2" / "revised.jsonl").read_bytes()


def test_a_ray_actor_measures_the_node_only_for_a_transformers_model_on_the_cpu(monkeypatch):
    from retrosearch.engines import EngineConfig
    from retrosearch.executors import ray as ray_executor

    monkeypatch.setattr(threads, "cpu_threads", lambda asked, at_most: 10 * (asked or 0) + at_most)
    assert ray_executor.with_cpu_threads(EngineConfig(device="cpu"), share=2).threads == 2
    assert ray_executor.with_cpu_threads(EngineConfig(device="cpu", threads=4), share=3).threads == 43
    monkeypatch.setattr(threads, "cpu_threads", lambda asked, at_most: pytest.fail("measured for nothing"))
    others = (EngineConfig(engine="vllm", device="cpu"), EngineConfig(device="cuda"), EngineConfig(engine="openai"))
    for config in others:
        assert ray_executor.with_cpu_threads(config, share=2) == config
