"""The run-folder template's identity rules: speed-only settings are field metadata, and the manifest records the
command and a command line that reproduces the run."""

import json
from dataclasses import dataclass

import pytest

from retrosearch.config import option, overwrite_option, speed_only
from retrosearch.engines import EngineConfig
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.folder import RunError
from retrosearch.stages.sft import SFTRunConfig
from retrosearch.stages.template import run_once


@dataclass(frozen=True)
class Work:
    output: str = option("runs/x", "run folder")
    steps: int = option(3, "changes the results")
    threads: int = option(1, "changes only the speed", speed_only=True)
    overwrite: bool = overwrite_option()


def test_speed_only_is_declared_per_field_not_by_name():
    assert {"batch_size", "device", "prefix_cache_mb", "gpu_memory_utilization"} <= set(speed_only(EngineConfig))
    assert speed_only(RetroSearchConfig) == ("lookahead",)
    assert "batch_size" not in speed_only(SFTRunConfig)  # a student's batch size changes what it learns
    assert speed_only(Work(threads=4)) == ("threads", "overwrite")


def test_a_run_resumes_under_other_speed_settings_and_refuses_other_results_settings(tmp_path, monkeypatch):
    from retrosearch.stages import registry

    monkeypatch.setitem(
        registry.COMMANDS,
        "work",
        registry.Command("work", ("work",), "stage", f"{__name__}:Work", (f"{__name__}:Work",), "a test stage"),
    )
    folder = tmp_path / "run"
    calls = []

    def work(config: Work):
        return run_once(
            "work", folder, (config,), config.overwrite, lambda run: calls.append(1) or {"n": 1}, quiet=True
        )

    assert work(Work(str(folder)))["n"] == 1
    assert work(Work(str(folder), threads=8))["n"] == 1 and len(calls) == 1  # resumed: the work is not redone
    with pytest.raises(RunError, match=r"settings \(Work.steps\)"):
        work(Work(str(folder), steps=4))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["command"] == "work"
    assert manifest["command_line"] == f"retrosearch work --output {folder}"
