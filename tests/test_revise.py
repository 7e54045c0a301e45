import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command

from retrosearch.answers import extract_answer, is_correct
from retrosearch.cli import main
from retrosearch.engines import SamplingConfig
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.revise import ReviseConfig, revise
from retrosearch.tools.report import write_report
from retrosearch.trace import KeywordMatcher, parse

SEARCH = RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=400))
EXPECTED = {
    "samples": 40,
    "revised": 21,
    "unchanged": 0,
    "skipped": {"incorrect original answer": 19},
    "errors": 0,
    "accepted_revisions": 34,
    "rollouts": 124,
    "generated_tokens": 17382,
}


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "revised.jsonl").read_text().splitlines()]


def test_revised_traces_stay_correct_and_bound_changes_nothing_but_work(teacher_file, tmp_path, organism_engine):
    bounded = revise(
        ReviseConfig(input=str(teacher_file), output=str(tmp_path / "on")), SEARCH, engine=organism_engine, quiet=True
    )
    unbounded = revise(
        ReviseConfig(input=str(teacher_file), output=str(tmp_path / "off")),
        RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=400), bound=False),
        engine=organism_engine,
        quiet=True,
    )
    on, off = rows_of(tmp_path / "on"), rows_of(tmp_path / "off")
    assert [(r["id"], r["status"], r["revised"], r["revisions"]) for r in on] == [
        (r["id"], r["status"], r["revised"], r["revisions"]) for r in off
    ]
    assert bounded["generated_tokens"] < unbounded["generated_tokens"]
    # exact on this project's machines (torch 2.13 CPU build): any change to the search shows here
    assert {key: bounded[key] for key in EXPECTED} == EXPECTED
    assert (bounded["tokens_before_mean"], bounded["tokens_after_mean"]) == (6697 / 21, 3790 / 21)
    matcher = KeywordMatcher()
    for row in on:
        if row["status"] == "skipped":
            assert row["reason"] == "incorrect original answer"
            assert row["revised"] == row["original"]
            continue
        assert is_correct(row["gold"], extract_answer(parse(row["revised"]).solution))
        trace = parse(row["revised"])
        for revision in row["revisions"]:
            assert revision["length_after"] < revision["length_before"]
        if row["revisions"]:
            last = row["revisions"][-1]
            assert matcher.match(trace.steps[last["switch_index"]]) is None
            assert len(trace.steps) == last["length_after"]
            assert row["record"]["response"] == row["revised"]
    summary = json.loads((tmp_path / "on" / "summary.json").read_text())
    for key in (
        "samples",
        "revised",
        "unchanged",
        "skipped",
        "errors",
        "tokens_before_mean",
        "tokens_after_mean",
        "switches_before_mean",
        "switches_after_mean",
        "generated_tokens",
        "wall_seconds",
    ):
        assert key in summary
    manifest = json.loads((tmp_path / "on" / "manifest.json").read_text())
    assert manifest["config_hash"] and manifest["versions"]["transformers"] and manifest["finished"]


def test_lookahead_changes_no_row_and_the_work_it_throws_away_is_counted(teacher_file, tmp_path, organism_engine):
    summaries = {}
    for lookahead in (1, 4):
        search = RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=400), lookahead=lookahead)
        config = ReviseConfig(input=str(teacher_file), output=str(tmp_path / str(lookahead)), limit=16)
        summaries[lookahead] = revise(config, search, engine=organism_engine, quiet=True)
    assert (tmp_path / "1" / "revised.jsonl").read_bytes() == (tmp_path / "4" / "revised.jsonl").read_bytes()
    one, four = summaries[1], summaries[4]
    assert one["accepted_revisions"] > 0 and one["generated_tokens"] == four["generated_tokens"]  # rows: taken work
    # one switch at a time throws nothing away: the engine generated what the rows count, and the end-of-sequence
    # token each rollout may have sampled (the engine counts it; a completion's tokens do not hold it)
    assert 0 <= one["engine_generated_tokens"] - one["generated_tokens"] <= one["rollouts"]
    assert one["engine_cancelled_requests"] == one["engine_cancelled_tokens"] == 0
    # rolled out ahead: rollouts cancelled after a win, and finished ones from a replaced trace, cost tokens
    assert four["engine_cancelled_requests"] > 0
    assert four["engine_generated_tokens"] - four["generated_tokens"] >= four["engine_cancelled_tokens"] > 0


def test_rerun_resumes_and_a_changed_config_is_refused(teacher_file, tmp_path, organism_engine, capsys):
    config = ReviseConfig(input=str(teacher_file), output=str(tmp_path / "run"), limit=6)
    first = revise(config, SEARCH, engine=organism_engine, quiet=True)
    again = revise(config, SEARCH, engine=organism_engine, quiet=True)
    assert again["resumed_samples"] == first["samples"] == 6
    assert len(rows_of(tmp_path / "run")) == 6
    code = main(
        ["revise", "--input", str(teacher_file), "--output", str(tmp_path / "run"), "--limit", "6", "--gamma", "0.5"]
    )
    assert code == 2
    assert "holds a run with other settings (RetroSearchConfig.gamma, " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"problem": "p", "answer": "1", "response": "x"}\n{"problem": \n', "bad.jsonl:2: broken JSON"),
        ('{"problem": "p", "response": "x"}\n', "bad.jsonl:1: no gold answer"),
        ('{"question": "p", "answer": "1"}\n', "bad.jsonl:1: no trace field"),
        ("", "bad.jsonl: the file is empty"),
    ],
)
def test_bad_input_gives_one_clear_line_and_writes_nothing(tmp_path, capsys, content, expected):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    code = main(["revise", "--input", str(bad), "--output", str(tmp_path / "out")])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert expected in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_format_and_missing_named_field(tmp_path, capsys):
    odd = tmp_path / "traces.csv"
    odd.write_text("a,b\n")
    assert main(["inspect", str(odd)]) == 2
    assert "unknown format '.csv'" in capsys.readouterr().err
    good = tmp_path / "t.jsonl"
    good.write_text('{"problem": "p", "answer": "1", "response": "r"}\n')
    assert main(["revise", "--input", str(good), "--trace-field", "trace", "--output", str(tmp_path / "o")]) == 2
    assert "t.jsonl:1: field 'trace' is missing" in capsys.readouterr().err


def test_killed_run_resumes_to_the_same_output(teacher_file, tmp_path):
    command = revise_command(teacher_file, "--limit", "20", "--batch-size", "4", "--device", "cpu")

    subprocess.run([*command, "--output", str(tmp_path / "whole")], check=True, env=command_env(), capture_output=True)
    killed = tmp_path / "killed"
    process = subprocess.Popen(  # its own process group: the kill takes its answer checkers too, as a scheduler's does
        [*command, "--output", str(killed)],
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    output = killed / "revised.jsonl"
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and len(output.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert len(output.read_text().splitlines()) < 20
    subprocess.run([*command, "--output", str(killed)], check=True, env=command_env(), capture_output=True)
    assert output.read_text() == (tmp_path / "whole" / "revised.jsonl").read_text()


def test_shards_merge_into_the_unsharded_output(teacher_file, tmp_path, organism_engine, capsys):
    whole = ReviseConfig(input=str(teacher_file), output=str(tmp_path / "whole"), limit=12)
    revise(whole, SEARCH, engine=organism_engine, quiet=True)
    shards = []
    for index in range(3):
        folder = str(tmp_path / f"shard{index}")
        revise(
            ReviseConfig(input=str(teacher_file), output=folder, limit=12, shard=f"{index}/3"),
            SEARCH,
            engine=organism_engine,
            quiet=True,
        )
        shards.append(folder)
    assert main(["merge", *reversed(shards), "--output", str(tmp_path / "merged")]) == 0
    assert (tmp_path / "merged" / "revised.jsonl").read_text() == (tmp_path / "whole" / "revised.jsonl").read_text()
    manifest = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert manifest["command"] == "merge" and manifest["finished"]
    assert set(json.loads((tmp_path / "merged" / "shards.json").read_text())) == set(shards)
    assert write_report(tmp_path / "merged")["rows_in_run"] == 12  # the report reads a merge as a revise run
    assert main(["merge", *shards, "--output", str(tmp_path / "merged")]) == 0  # a rerun returns the summary
    assert main(["merge", *shards[:2], "--output", str(tmp_path / "partial")]) == 2
    assert "shards 0/3 .. 2/3" in capsys.readouterr().err
