"""A run folder's edge cases (`stages/folder.py`): `--overwrite` after a killed `--overwrite`, a removal that fails
halfway and is undone, a folder from before runs kept a ledger, and the one-line account of what differs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from retrosearch.config import option, overwrite_option
from retrosearch.data.outputs import LEDGER, write_jsonl
from retrosearch.stages.folder import TRASH, RunError, _differences, differing_keys
from retrosearch.stages.revise import parse_shard
from retrosearch.stages.template import run_once


@dataclass(frozen=True)
class Work:
    output: str = option("runs/x", "run folder")
    steps: int = option(3, "changes the results")
    overwrite: bool = overwrite_option()


@pytest.fixture(autouse=True)
def work_command(monkeypatch):
    from retrosearch.stages import registry

    command = registry.Command("work", ("work",), "stage", f"{__name__}:run", (f"{__name__}:Work",), "a test stage")
    monkeypatch.setitem(registry.COMMANDS, "work", command)


def run(folder: Path, overwrite: bool = False, steps: int = 3) -> dict:
    def work(run_folder) -> dict:
        write_jsonl(run_folder.path / "rows.jsonl", [{"id": str(n)} for n in range(steps)])
        write_jsonl(run_folder.path / "more.jsonl", [])
        return {"rows": steps}

    return run_once("work", folder, (Work(str(folder), steps),), overwrite, work, quiet=True)


def test_overwrite_clears_what_a_killed_overwrite_left_behind(tmp_path):
    folder = tmp_path / "run"
    run(folder)
    (folder / TRASH).mkdir()
    (folder / TRASH / "rows.jsonl").write_text("half removed\n")
    assert run(folder, overwrite=True, steps=2)["rows"] == 2
    assert not (folder / TRASH).exists()
    assert len((folder / "rows.jsonl").read_text().splitlines()) == 2


def test_a_removal_that_fails_halfway_is_undone(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    run(folder)
    before = sorted(path.name for path in folder.iterdir())
    original, calls = Path.rename, []

    def failing_second(self, target):
        calls.append(self.name)
        if len(calls) == 2:
            raise OSError("device busy")
        return original(self, target)

    monkeypatch.setattr(Path, "rename", failing_second)
    with pytest.raises(OSError, match="device busy"):
        run(folder, overwrite=True)
    monkeypatch.setattr(Path, "rename", original)
    assert sorted(path.name for path in folder.iterdir()) == before  # the first one moved back, no trash left
    assert len((folder / "rows.jsonl").read_text().splitlines()) == 3


def test_a_folder_from_before_ledgers_is_overwritten_only_when_it_holds_nothing_but_the_lock(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / ".lock").write_text("pid 1 on gone\n")  # a folder whose run was killed before it wrote anything
    assert run(bare, overwrite=True)["rows"] == 3
    legacy = tmp_path / "legacy"
    run(legacy)
    (legacy / LEDGER).unlink()
    with pytest.raises(RunError) as error:
        run(legacy, overwrite=True)
    assert str(error.value) == (
        f"{legacy} was written by a retrosearch that kept no list of the files its runs wrote, so --overwrite cannot "
        "tell them from yours: move out what you keep and delete the folder, or choose another --output"
    )
    assert (legacy / "rows.jsonl").exists()


def test_what_differs_is_said_by_setting_then_by_input_then_as_an_older_run():
    resolved = {"Work": {"steps": 3, "nested": {"a": 1}}}
    manifest = {"config": {"Work": {"steps": 4, "nested": {"a": 2}}}}
    assert _differences(manifest, resolved, {}, ()) == "settings (Work.nested.a, Work.steps)"
    inputs = {"input": "1111", "problems": "2222"}
    same = {"config": resolved, "input_fingerprints": {"input": "0000", "problems": "3333"}}
    assert _differences(same, resolved, inputs, ()) == "input contents (input, problems changed since)"
    assert _differences({}, {}, inputs, ()) == "input contents (input, problems changed since)"
    assert _differences({"config": resolved}, resolved, {}, ()) == "settings (an older retrosearch's run)"


def test_a_setting_that_became_a_section_differs_as_itself():
    assert differing_keys({"a": {"x": 1}, "b": 2}, {"a": 5, "b": 2}) == ["a"]
    assert differing_keys({"a": 5}, {"a": {"x": 1}}) == ["a"]


def test_a_shard_outside_its_count_or_not_of_the_form_i_n_is_refused():
    assert parse_shard("1/2") == (1, 2)
    with pytest.raises(ValueError) as error:
        parse_shard("half")
    assert str(error.value) == "--shard takes i/n (e.g. 0/4), not 'half'"
    for shard in ("2/2", "-1/2"):
        with pytest.raises(ValueError) as error:
            parse_shard(shard)
        assert str(error.value) == f"--shard {shard}: i must be in 0..n-1"


def test_a_folder_inputs_fingerprint_follows_names_and_contents_not_hidden_files(tmp_path, monkeypatch):
    import os

    from retrosearch.stages import folder as run_folder

    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"0123456789")
    first = run_folder.fingerprint(model)
    (model / ".lock").write_text("pid 1")  # hidden files are no part of what a folder holds
    assert run_folder.fingerprint(model) == first
    (model / "sub" / "weights.bin").rename(model / "weights.bin")  # the same bytes under another name
    assert run_folder.fingerprint(model) != first
    (model / "weights.bin").rename(model / "sub" / "weights.bin")
    assert run_folder.fingerprint(model) == first
    # past the size limit a file counts by size and modification time, every such file
    monkeypatch.setattr(run_folder, "WHOLE_FILE_LIMIT", 5)
    big = model / "sub" / "weights.bin"
    stamp = big.stat().st_mtime_ns
    large = run_folder.fingerprint(model)
    big.write_bytes(b"9876543210")
    os.utime(big, ns=(stamp, stamp))
    assert run_folder.fingerprint(model) == large  # contents past the limit are not read
    os.utime(big, ns=(stamp, stamp + 10**9))
    assert run_folder.fingerprint(model) != large
    (model / "zz.txt").write_text("abc")  # a small file after a large one still counts by its contents
    before = run_folder.fingerprint(model)
    (model / "zz.txt").write_text("abd")
    assert run_folder.fingerprint(model) != before
    monkeypatch.setattr(run_folder, "WHOLE_FILE_LIMIT", 10)  # a file of exactly the limit is read whole
    os.utime(big, ns=(stamp, stamp))
    at_limit = run_folder.fingerprint(model)
    big.write_bytes(b"0123456789")
    os.utime(big, ns=(stamp, stamp))
    assert run_folder.fingerprint(model) != at_limit


def test_fingerprints_stay_what_earlier_runs_recorded(tmp_path):
    """A manifest holds fingerprints; a run made by an earlier version resumes only if today's are computed alike."""
    import hashlib

    from retrosearch.stages.folder import fingerprint

    data = tmp_path / "data.jsonl"
    data.write_bytes(b'{"id": "a"}\n')
    assert fingerprint(data) == hashlib.sha256(b'data.jsonl\0{"id": "a"}\n').hexdigest()[:16]


def test_the_manifest_records_the_versions_and_the_wall_time_of_a_finished_run(tmp_path):
    import json
    import platform
    from importlib import metadata

    from retrosearch.stages.folder import versions

    found = versions()
    assert found["python"] == platform.python_version()
    for package in ("retrosearch", "torch", "transformers", "tokenizers", "math-verify", "trl"):
        assert found[package] == metadata.version(package)
    assert set(found) == {"python", "retrosearch", "torch", "transformers", "tokenizers", "math-verify", "vllm", "trl"}
    try:
        vllm = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        vllm = None  # absent is None, not a blank version
    assert found["vllm"] == vllm
    summary = run(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["wall_seconds"] == summary["wall_seconds"] and manifest["versions"] == found
    assert len(manifest["config_hash"]) == 16 and int(manifest["config_hash"], 16) >= 0


def test_times_in_the_manifest_are_utc(tmp_path):
    import json
    from datetime import datetime, timedelta

    run(tmp_path / "run")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert datetime.fromisoformat(manifest["finished"]).utcoffset() == timedelta(0)


def test_an_output_inside_any_local_path_of_a_list_is_refused_by_its_option(tmp_path):
    """Every item of a path list is checked, a hub id before it or not; the option is named as typed."""
    from retrosearch.stages.folder import open_run

    data = tmp_path / "data"
    (data / "shard").mkdir(parents=True)
    inside = data / "out"
    payload = {"Merge": {"steps": 2, "shards": ["org/hub-id", str(data / "shard"), str(data)]}}
    with pytest.raises(RunError) as refused, open_run(inside, payload, overwrite=False):
        pass
    assert str(refused.value) == f"--output {inside} lies inside --shards {data}; choose another --output"
    with pytest.raises(RunError) as refused, open_run(inside, {"Eval": {"data_dir": str(data)}}, overwrite=False):
        pass
    assert str(refused.value) == f"--output {inside} lies inside --data-dir {data}; choose another --output"
    assert not inside.exists()


@dataclass(frozen=True)
class Reads:
    output: str = option("runs/x", "run folder")
    model: str = option("", "a local model folder")
    shards: tuple[str, ...] = option((), "local folders")
    overwrite: bool = overwrite_option()


def test_another_local_model_or_other_shards_are_other_settings_however_written(tmp_path, monkeypatch):
    """Path settings count resolved: the same folder named another way resumes, another folder (even one with the
    same contents, when its contents are not fingerprinted) is another run."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)

    def reads(model: str, shards: tuple[str, ...]) -> dict:
        config = Reads(str(tmp_path / "run"), model, shards)
        return run_once("work", tmp_path / "run", (config,), False, lambda folder: {"rows": 0}, quiet=True)

    reads("a", ("a", "b"))
    reads(str(tmp_path / "a"), ("./a", str(tmp_path / "b")))
    with pytest.raises(RunError, match=r"holds a run with other settings \(Reads\.model\)"):
        reads("b", ("a", "b"))
    with pytest.raises(RunError, match=r"holds a run with other settings \(Reads\.shards\)"):
        reads("a", ("b", "a"))


def test_a_config_hashes_the_same_in_every_version_and_key_order_with_its_inputs_apart():
    """A run folder that an earlier retrosearch wrote resumes only if its config hashes as it did then."""
    from retrosearch.stages.folder import _digest, comparable, config_hash

    assert config_hash({"b": 1, "a": Path("x")}) == "385820f0096fd558"  # keys sorted, a Path as its text
    assert config_hash({"a": Path("x"), "b": 1}) == "385820f0096fd558"
    resolved = {"work": {"steps": 3}}
    assert _digest(resolved, None) == _digest(resolved, {}) == config_hash(resolved)
    assert _digest(resolved, {"input": "abc"}) == config_hash(
        {"work": {"steps": 3}, "input_fingerprints": {"input": "abc"}}
    )
    assert comparable({"work": {"steps": Path("3")}}, ()) == {"work": {"steps": "3"}}


def test_a_killed_runs_time_runs_from_its_start_to_its_last_write(tmp_path):
    import os
    from datetime import datetime

    from retrosearch.stages.folder import seconds_so_far

    started = datetime(2026, 1, 1, 12, 0, 0).timestamp()
    (tmp_path / "rows.jsonl").write_text("")
    os.utime(tmp_path / "rows.jsonl", (started + 0.25, started + 0.25))
    manifest = {"started": datetime.fromtimestamp(started).isoformat(), "earlier_runs_seconds": 2.0}
    assert seconds_so_far(tmp_path, manifest) == pytest.approx(2.25)


def test_a_broken_summary_is_one_line_and_a_missing_one_none(tmp_path):
    from retrosearch.stages.folder import summary_of

    assert summary_of(tmp_path) is None
    (tmp_path / "summary.json").write_text('{"samples": 3,\n "wall_seconds": ')
    with pytest.raises(RunError, match=r"summary.json:2: broken JSON .*is the run folder damaged"):
        summary_of(tmp_path)
