"""The run-folder template's identity rules: speed-only settings are field metadata, and the manifest records the
command and a command line that reproduces the run."""

import json
import time
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


@pytest.fixture
def work_command(monkeypatch):
    """`work`, a stage of this file's Work config, known to the registry (a manifest's command line needs it)."""
    from retrosearch.stages import registry

    command = registry.Command("work", ("work",), "stage", f"{__name__}:Work", (f"{__name__}:Work",), "a test stage")
    monkeypatch.setitem(registry.COMMANDS, "work", command)


def test_speed_only_is_declared_per_field_not_by_name():
    assert {"batch_size", "device", "prefix_cache_mb", "gpu_memory_utilization"} <= set(speed_only(EngineConfig))
    assert speed_only(RetroSearchConfig) == ("lookahead",)
    assert "batch_size" not in speed_only(SFTRunConfig)  # a student's batch size changes what it learns
    assert speed_only(Work(threads=4)) == ("threads", "overwrite")


def test_a_run_resumes_under_other_speed_settings_and_refuses_other_results_settings(tmp_path, work_command):
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


def test_rows_are_read_past_blank_lines_and_other_runs_ids_and_an_odd_row_is_named(tmp_path):
    from retrosearch.data.inputs import DataError
    from retrosearch.runner import ErrorRow
    from retrosearch.stages.generate import SampleRow
    from retrosearch.stages.template import read_rows

    sample = {"id": "a", "problem_id": "p", "sample": 0, "problem": "q", "answer": "1", "response": "r"}
    sample |= {"predicted": "1", "correct": True, "truncated": False, "tokens": 3, "switches": 0}
    lines = [
        {**sample, "id": "other"},
        {"id": "failed", "status": "error", "reason": "engine died"},
        {"id": "bare", "status": "error"},
        sample,
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines[:2]) + "\n\n" + json.dumps(lines[2]) + "\n")
    with open(path, "a") as handle:
        handle.write(json.dumps(lines[3]) + "\n")
    read = list(read_rows(path, SampleRow, {"a", "failed", "bare"}))
    assert read == [ErrorRow("failed", "engine died"), ErrorRow("bare", ""), SampleRow(**sample)]
    path.write_text(json.dumps({**sample, "bogus": 1}) + "\n")
    with pytest.raises(DataError) as error:
        list(read_rows(path, SampleRow))
    assert str(error.value) == f"{path}:1: not a SampleRow (unknown fields ['bogus']); is this the right file?"


def test_a_row_stage_says_unfinished_while_it_works_and_counts_only_its_own_engine_work(tmp_path, monkeypatch):
    from collections import Counter

    from scripted import Script, ScriptedEngine

    from retrosearch.engines import EngineConfig
    from retrosearch.stages import template
    from retrosearch.stages.generate import GenerateConfig, generate

    class CountingEngine(ScriptedEngine):
        async def generate(self, requests):
            self.counts["requests"] += len(requests)
            return await super().generate(requests)

    engine = CountingEngine(Script().otherwise("<think>\nso 4\n</think>\n\n\\boxed{4}"))
    engine.counts = Counter()
    manifests = []

    class Watching(template.JsonlAppender):
        def __init__(self, path, *args, **kwargs):
            manifests.append(json.loads((path.parent / "manifest.json").read_text()))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(template, "JsonlAppender", Watching)
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"{n} + 2 ?", "answer": "4"}) + "\n" for n in range(3)))

    def run(name: str) -> dict:
        config = GenerateConfig(problems=str(problems), output=str(tmp_path / name), samples=2)
        return generate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)

    first, second = run("first"), run("second")  # one engine serves both runs
    assert manifests[0]["finished"] is None and "started" in manifests[0]
    assert first["engine_requests"] == second["engine_requests"] == 6 and engine.counts["requests"] == 12
    assert 0 <= second["wall_seconds"] < 60


def test_a_stage_that_stopped_early_is_worked_on_again_and_says_so_meanwhile(tmp_path, work_command, capsys):
    folder, calls = tmp_path / "run", []

    def work(run):
        calls.append(json.loads((run.path / "manifest.json").read_text()))
        return {"stopped_early": len(calls) < 2, "n": len(calls)}

    first = run_once("work", folder, (Work(str(folder)),), False, work)
    assert first["stopped_early"] is True and 0 <= first["wall_seconds"] < 60
    assert "retrosearch work" in capsys.readouterr().out  # the summary, printed unless quiet
    assert json.loads((folder / "summary.json").read_text())["n"] == 1  # saved, though the run is not finished
    assert json.loads((folder / "manifest.json").read_text())["finished"] is None
    assert calls[0]["finished"] is None and calls[0]["started"]
    assert run_once("work", folder, (Work(str(folder)),), False, work, quiet=True)["n"] == 2  # worked on again
    assert run_once("work", folder, (Work(str(folder)),), False, work, quiet=True)["n"] == 2  # finished: returned


def test_a_stage_shows_its_summary_its_own_way_when_it_has_one(tmp_path, work_command, capsys):
    shown = []
    folder = tmp_path / "run"
    run_once("work", folder, (Work(str(folder)),), False, lambda run: {"n": 1}, show=shown.append)
    assert [entry["n"] for entry in shown] == [1] and "retrosearch work" not in capsys.readouterr().out
    run_once("work", folder, (Work(str(folder)),), False, lambda run: {"n": 1})
    assert "retrosearch work —" in capsys.readouterr().out  # the stage's figures, under its name and folder


def _as_if_killed(folder, seconds: float) -> None:
    """Make a finished run folder look like a run killed `seconds` after it started: no time of its own in the
    manifest, and its last write that long after its start."""
    import os
    from datetime import datetime, timezone

    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["wall_seconds"]
    manifest["finished"] = None
    started = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    manifest["started"] = datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds")
    manifest_path.write_text(json.dumps(manifest))
    for path in folder.rglob("*"):
        os.utime(path, (started + seconds / 2, started + seconds / 2))
    os.utime(folder / "summary.json", (started + seconds, started + seconds))  # the last write


def test_a_resumed_row_stage_counts_the_seconds_of_the_run_that_was_killed(tmp_path):
    from scripted import Script, ScriptedEngine

    from retrosearch.engines import EngineConfig
    from retrosearch.stages.generate import GenerateConfig, generate

    engine = ScriptedEngine(Script().otherwise("<think>\nso 4\n</think>\n\n\\boxed{4}"))
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"problem": f"{n} + 2 ?", "answer": "4"}) + "\n" for n in range(3)))
    folder = tmp_path / "run"

    def run() -> dict:
        config = GenerateConfig(problems=str(problems), output=str(folder), samples=2)
        return generate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)

    first = run()
    assert first["wall_seconds_all_runs"] == first["wall_seconds"]  # the folder's first run
    assert first["items_redone"] == 0 and first["replicas_used"] == 1  # one engine in this process, nothing lost
    _as_if_killed(folder, 100.0)
    second = run()
    assert second["wall_seconds_all_runs"] == pytest.approx(100.0 + second["wall_seconds"])
    assert json.loads((folder / "manifest.json").read_text())["earlier_runs_seconds"] == 100.0
    third = run()  # after a run that finished: its own time, not its files', and every run before it
    assert third["wall_seconds_all_runs"] == pytest.approx(100.0 + second["wall_seconds"] + third["wall_seconds"])
    config = GenerateConfig(problems=str(problems), output=str(folder), samples=2, overwrite=True)
    anew = generate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)
    assert anew["wall_seconds_all_runs"] == anew["wall_seconds"]  # --overwrite starts the count again


def test_a_stage_worked_on_again_counts_the_time_of_the_run_that_stopped_early(tmp_path, work_command):
    import os
    from datetime import datetime

    folder, calls = tmp_path / "run", []

    def work(run):
        calls.append(1)
        time.sleep(0.2)
        return {"stopped_early": len(calls) < 2}

    first = run_once("work", folder, (Work(str(folder)),), False, work, quiet=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    started = datetime.fromisoformat(manifest["started"]).timestamp()
    os.utime(folder / "summary.json", (started + 30.26, started + 30.26))  # the stopped run's last write
    second = run_once("work", folder, (Work(str(folder)),), False, work, quiet=True)
    assert first["stopped_early"] and not second["stopped_early"]
    assert first["wall_seconds"] >= 0.2 and second["wall_seconds"] >= 0.2  # the work's own time counts
    assert second["wall_seconds_all_runs"] == pytest.approx(30.26 + second["wall_seconds"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["earlier_runs_seconds"] == 30.3 and manifest["wall_seconds"] == second["wall_seconds"]


def test_a_summary_from_before_runs_were_added_up_counts_its_own_run():
    from retrosearch.stages.folder import all_runs_seconds

    assert all_runs_seconds({"wall_seconds": 12.5, "wall_seconds_all_runs": 40.0}) == 40.0
    assert all_runs_seconds({"wall_seconds": 12.5}) == 12.5  # written before earlier runs were counted
    assert all_runs_seconds({}) == 0.0 and all_runs_seconds({"wall_seconds": None}) == 0.0


def test_a_stage_showing_its_own_summary_prints_its_folder_and_the_config_to_show(tmp_path, work_command, capsys):
    folder = tmp_path / "run"
    run_once("work", folder, (Work(str(folder)),), False, lambda run: {"n": 1}, show=lambda summary: None)
    digest = json.loads((folder / "manifest.json").read_text())["config_hash"]
    assert f"\nrun folder {folder}, config {digest} (retrosearch show-config {folder})\n" in capsys.readouterr().out
