"""`retrosearch export`: each layout loads back with `datasets` (rows, ids and reasoning markers intact, the input's
own rows round-tripped), the card's header is one huggingface_hub reads, the push reaches a stand-in Hub through
HF_ENDPOINT with the folder's own files, and what cannot be exported is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrosearch.cli import main
from retrosearch.data.inputs import DataError
from retrosearch.stages import export as export_module
from retrosearch.stages.cut import CutConfig, cut
from retrosearch.stages.decontaminate import DecontaminateConfig, decontaminate
from retrosearch.stages.export import ExportConfig, export
from retrosearch.stages.generate import GenerateConfig, generate
from tests.servers import StandInHub


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def cut_run(teacher_file, tmp_path_factory) -> Path:
    """A finished cut run over the teacher's traces: revise's rows, most of them cut (revised)."""
    folder = tmp_path_factory.mktemp("export") / "cut"
    cut(CutConfig(input=str(teacher_file), output=str(folder)), quiet=True)
    return folder


def load(folder: Path) -> list[dict]:
    """The dataset as `datasets` loads it, from a cache of its own (the default cache is keyed by the folder's
    name and would hand back another test's folder of the same name)."""
    import datasets

    return datasets.load_dataset(str(folder), split="train", cache_dir=str(folder / ".cache")).to_list()


def test_each_layout_loads_back_with_datasets_rows_ids_and_markers_intact(cut_run, tmp_path):
    written = [row for row in rows(cut_run / "revised.jsonl") if row["status"] in ("revised", "unchanged")]
    assert 0 < len(written) < len(rows(cut_run / "revised.jsonl")) + 1
    for layout in ("messages", "sharegpt", "prompt-completion", "record"):
        summary = export(ExportConfig(run=str(cut_run), output=str(tmp_path / layout), layout=layout), quiet=True)
        loaded = load(tmp_path / layout)
        assert summary["rows"] == len(loaded) == len(written)
        if layout == "record":
            assert loaded == [row["record"] for row in written]  # the input's rows, the revised trace in place
            continue
        assert [row["id"] for row in loaded] == [row["id"] for row in written]
        assert [row["answer"] for row in loaded] == [row["gold"] for row in written]
    messages = load(tmp_path / "messages")
    assert messages[0]["messages"] == [
        {"role": "user", "content": written[0]["problem"]},
        {"role": "assistant", "content": written[0]["revised"]},
    ]
    assert all(row["messages"][1]["content"].startswith("<think>") for row in messages)
    assert all("</think>" in row["messages"][1]["content"] for row in messages)
    conversations = load(tmp_path / "sharegpt")[0]["conversations"]
    assert [turn["from"] for turn in conversations] == ["human", "gpt"]
    pairs = load(tmp_path / "prompt-completion")
    assert [(p["prompt"], p["completion"]) for p in pairs] == [(r["problem"], r["revised"]) for r in written]


def test_the_original_trace_and_every_row_on_request(cut_run, tmp_path):
    everything = rows(cut_run / "revised.jsonl")
    config = ExportConfig(run=str(cut_run), output=str(tmp_path / "o"), trace="original", all_rows=True)
    export(config, quiet=True)
    assert [row["messages"][1]["content"] for row in load(tmp_path / "o")] == [row["original"] for row in everything]
    with pytest.raises(DataError, match="--layout record holds each row's revised trace"):
        export(ExportConfig(run=str(cut_run), output=str(tmp_path / "r"), layout="record", trace="original"))
    assert not (tmp_path / "r").exists()


def test_the_card_is_a_hub_dataset_card_that_says_how_the_data_was_made(cut_run, tmp_path):
    from huggingface_hub import DatasetCard

    export(ExportConfig(run=str(cut_run), output=str(tmp_path / "d"), license="apache-2.0"), quiet=True)
    card = DatasetCard.load(tmp_path / "d" / "README.md", ignore_metadata_errors=False)
    assert card.data.license == "apache-2.0" and card.data.task_categories == ["text-generation"]
    assert card.data.size_categories == ["n<1K"]
    assert card.data.configs == [
        {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}
    ]
    manifest = json.loads((cut_run / "manifest.json").read_text())
    summary = json.loads((cut_run / "summary.json").read_text())
    for fact in (manifest["command_line"], manifest["config_hash"], "arXiv:2504.04383", "| `CutConfig.method` |"):
        assert fact in card.text
    assert f"| revised | {summary['revised']} |" in card.text and "not decontaminated by retrosearch" in card.text
    assert export_module.size_category(999) == "n<1K" and export_module.size_category(1000) == "1K<n<10K"
    assert export_module.size_category(2_500_000) == "1M<n<10M"


def test_a_decontaminated_input_is_named_on_the_card(tmp_path):
    from retrosearch.stages.teacher import export_teacher

    export_teacher(tmp_path / "train.jsonl", 12, split="train", seed=0)
    clean = decontaminate(
        DecontaminateConfig(
            input=str(tmp_path / "train.jsonl"), output=str(tmp_path / "clean"), against=("organism",), drop=True
        ),
        quiet=True,
    )
    assert clean["contaminated"] == 0  # the organism's splits are disjoint
    cut(CutConfig(input=clean["clean"], output=str(tmp_path / "cut")), quiet=True)
    export(ExportConfig(run=str(tmp_path / "cut"), output=str(tmp_path / "d")), quiet=True)
    text = (tmp_path / "d" / "README.md").read_text()
    assert (
        "0 of 12 rows matched a benchmark problem and were removed (checked against organism (1,702 problems)" in text
    )


def test_large_runs_are_written_in_shards_read_back_in_order(cut_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "SHARD_BYTES", 4096)
    summary = export(ExportConfig(run=str(cut_run), output=str(tmp_path / "d")), quiet=True)
    shards = sorted((tmp_path / "d" / "data").glob("*.parquet"))
    assert summary["shards"] == len(shards) > 2 and shards[0].name == f"train-00000-of-{len(shards):05d}.parquet"
    searched = [row["id"] for row in rows(cut_run / "revised.jsonl") if row["status"] in ("revised", "unchanged")]
    assert [row["id"] for row in load(tmp_path / "d")] == searched


def test_the_push_reaches_the_hub_through_hf_endpoint_with_the_folders_own_files(cut_run, tmp_path):
    import os
    import subprocess
    import sys

    folder = tmp_path / "d"
    with StandInHub() as hub:
        # a process of its own, as a user runs it: huggingface_hub reads HF_ENDPOINT when it is imported
        environment = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_stand_in"}
        command = [sys.executable, "-m", "retrosearch.cli", "export", str(cut_run), "--output", str(folder)]
        done = subprocess.run(
            [*command, "--push-to-hub", "someone/revised"], env=environment, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr
    expected = {"README.md": (folder / "README.md").read_bytes()}
    expected |= {f"data/{path.name}": path.read_bytes() for path in (folder / "data").glob("*.parquet")}
    assert hub.files == {"someone/revised": expected}  # no manifest, summary or ledger
    assert hub.validated == [(folder / "README.md").read_text()]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["pushed"].startswith(f"{hub.url}/datasets/someone/revised/commit/")
    assert [request.split("?")[0] for request in hub.requests] == [
        "POST /api/repos/create",
        "POST /api/validate-yaml",
        "POST /api/datasets/someone/revised/preupload/main",
        "POST /api/datasets/someone/revised/commit/main",
    ]


def test_generate_runs_export_their_correct_samples_and_every_sample_on_request(tmp_path):
    options = {"problems": "organism", "limit": 4, "samples": 2, "output": str(tmp_path / "g")}
    generate(GenerateConfig(**options), quiet=True)
    samples = rows(tmp_path / "g" / "samples.jsonl")
    assert 0 < sum(row["correct"] for row in samples) < len(samples)
    export(ExportConfig(run=str(tmp_path / "g"), output=str(tmp_path / "d")), quiet=True)
    assert [row["id"] for row in load(tmp_path / "d")] == [row["id"] for row in samples if row["correct"]]
    export(ExportConfig(run=str(tmp_path / "g"), output=str(tmp_path / "all"), all_rows=True), quiet=True)
    assert [row["messages"][1]["content"] for row in load(tmp_path / "all")] == [row["response"] for row in samples]


def test_what_cannot_be_exported_is_refused_in_one_line(cut_run, teacher_file, tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "manifest.json").write_text(json.dumps({"command": "revise", "finished": None}))
    listed = tmp_path / "listed"
    decontaminate(DecontaminateConfig(input=str(teacher_file), output=str(listed), against=("organism",)), quiet=True)
    capsys.readouterr()
    for run, message in (
        (plain, "no manifest.json; give a run folder that retrosearch wrote"),
        (unfinished, "the run has not finished; rerun its command"),
        (listed, "a decontaminate run holds no traces to export"),
    ):
        assert main(["export", str(run), "--output", str(tmp_path / "out")]) != 0
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1
    assert main(["export", str(cut_run), "--output", str(tmp_path / "out"), "--trace", "original"]) == 0
    assert main(["export", str(listed), "--output", str(tmp_path / "other"), "--trace", "original"]) != 0
    assert "--trace original is for revise and cut runs" in capsys.readouterr().err
