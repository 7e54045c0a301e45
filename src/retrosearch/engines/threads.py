"""How many threads torch gets for a model on the CPU.

torch's default is one thread per core, and its threads meet at the end of every operation: when another process
keeps one core busy, every step waits for the thread on that core. Revising 154 organism traces on 2 cores took
29.1 s alone, and beside one CPU-bound process 87.1 s with torch's two threads against 34.1 s with this default
(benchmarks/busy_machine.py): one thread per core this process may use that no other process keeps busy, measured
when the model loads.
"""

from __future__ import annotations

import os

SAMPLE_SECONDS = 0.2  # long enough to see a busy core as busy (20 ticks of each core), short beside a model's load


def resolved_device(device: str | None) -> str:
    """The device a model goes to: the one asked for, else CUDA where there is one, else the CPU."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def usable_cores() -> set[int]:
    """The cores this process may run on (its affinity: a container's or a scheduler's share of the machine)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def busy_cores(cores: set[int], seconds: float = SAMPLE_SECONDS) -> float:
    """How many of `cores` other work keeps busy: their utilization over `seconds`, summed (a process the
    scheduler moves between two cores counts once, not twice as half)."""
    import psutil

    shares = psutil.cpu_percent(interval=seconds, percpu=True)
    return sum(shares[core] for core in cores if core < len(shares)) / 100.0


def cpu_threads(asked: int | None = None, at_most: int | None = None) -> int:
    """`asked` where given; else one per usable core that nothing else keeps busy (at least one, at most
    `at_most`: a Ray actor's share of its node)."""
    if asked:
        return asked
    cores = usable_cores()
    free = len(cores) - round(busy_cores(cores))
    return max(1, min(free, at_most or len(cores)))


def use_cpu_threads(asked: int | None = None, at_most: int | None = None) -> int:
    """Set torch's threads for this process by `cpu_threads`, unless nothing was asked and OMP_NUM_THREADS says
    how many (the user's own setting stands); the number in use."""
    import torch

    if not asked and at_most is None and os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    threads = cpu_threads(asked, at_most)
    torch.set_num_threads(threads)
    return threads
