"""`retrosearch revise` end to end with a scripted engine, through the command line: exact statuses, reasons and
summary values, and each option the README promises (--partial, --keywords, --overwrite, --max-input-tokens,
field options, JSON and hub input)."""

import json
import os
import statistics
import subprocess
import sys
import types
from pathlib import Path

import pytest
from scripted import Script, ScriptedEngine

from retrosearch.cli import main
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.seeds import derive_seed
from retrosearch.trace import SEPARATOR, parse

CHAT = "User: {}\nAssistant: "
END = "\n</think>\n\nSo \\boxed{5}."


def think(*steps: str, end: str = END) -> str:
    return "<think>\n" + SEPARATOR.join(steps) + end


ROWS = [
    ("revised", think("Try 3.", "3 fails.", "Wait, try 5.", "5 works.", "Hmm, check 5.", "Still 5.")),
    ("losing", think("Try 5.", "Wait, 5 again.", "Yes 5.")),
    ("straight", think("Try 5.", "5 works.")),
    ("wrong", think("Try 4.", "Wait, 4.", end="\n</think>\n\nSo \\boxed{4}.")),
    ("unfinished", "<think>\nTry 5.\n\nWait, and then"),
    ("no-answer", think("Try 5.", "Wait, 5.", end="\n</think>\n\nNo idea.")),
    ("unscripted", think("Try 9.", "Hmm, 9.", "Then 5.")),
]


def script() -> Script:
    revised, losing = parse(ROWS[0][1]), parse(ROWS[1][1])
    return (
        Script()
        .after(CHAT.format("p-revised") + revised.prefix(2), "Try 5.\n\n5 works." + END)
        .after(CHAT.format("p-revised") + revised.prefix(4), "L." + END.replace("5", "7"))
        .after(CHAT.format("p-losing") + losing.prefix(1), "Hmm, no." + END.replace("5", "8"), "No." + END[:-8])
    )


@pytest.fixture
def scripted(monkeypatch):
    """`revise` loads this engine instead of a model; the test reads what it was asked."""
    engine = ScriptedEngine(script())
    monkeypatch.setattr("retrosearch.executors.local.load_engine", lambda config: engine)
    return engine


def write_rows(path: Path, rows=ROWS, **extra) -> Path:
    with open(path, "w") as handle:
        for name, text in rows:
            handle.write(json.dumps({"id": name, "problem": f"p-{name}", "answer": "5", "response": text, **extra}))
            handle.write("\n")
    return path


def revise_cli(*options: str) -> int:
    return main(["revise", *options])


def rows_of(folder: Path) -> dict[str, dict]:
    return {row["id"]: row for row in map(json.loads, (folder / "revised.jsonl").read_text().splitlines())}


def test_every_status_and_reason_and_the_summary_values(tmp_path, scripted, capsys):
    source = write_rows(tmp_path / "in.jsonl")
    out = tmp_path / "run"
    assert revise_cli("--input", str(source), "--output", str(out)) == 3  # a row failed: not a clean exit
    printed = capsys.readouterr()
    assert "1 row(s) failed" in printed.err and "retrosearch revise" in printed.out  # and the final table
    rows = rows_of(out)
    assert list(rows) == [name for name, _ in ROWS]
    statuses = {name: (row["status"], row["reason"]) for name, row in rows.items()}
    assert statuses == {
        "revised": ("revised", "shorter correct rollout accepted"),
        "losing": ("unchanged", "no rollout was correct and shorter"),
        "straight": ("unchanged", "no thought switch"),
        "wrong": ("skipped", "incorrect original answer"),
        "unfinished": ("skipped", "unfinished reasoning"),
        "no-answer": ("skipped", "no final answer"),
        "unscripted": ("error", rows["unscripted"]["reason"]),
    }
    assert rows["unscripted"]["reason"].startswith("UnscriptedRequest: no script for seed")
    revised = rows["revised"]
    assert revised["revised"] == think("Try 3.", "3 fails.", "Try 5.", "5 works.")
    assert revised["revisions"] == [
        {"switch_index": 2, "keyword": "Wait", "length_before": 6, "length_after": 4, "rollout": 0}
    ]
    assert revised["record"] == {"id": "revised", "problem": "p-revised", "answer": "5", "response": revised["revised"]}
    assert (revised["id"], revised["problem"], revised["gold"], revised["format"]) == (
        "revised",
        "p-revised",
        "5",
        "r1",
    )
    # the rollout's seed is drawn from the run's seed, the row's id, the switch and the rollout's number
    assert scripted.seen[0].request.seed == derive_seed(RetroSearchConfig().sampling.seed, "revised", 2, 0)
    count = scripted.count_tokens
    assert (revised["tokens_before"], revised["tokens_after"]) == (count(ROWS[0][1]), count(revised["revised"]))
    assert (revised["steps_before"], revised["thoughts_before"], revised["switches_before"]) == (6, 3, 2)
    assert (revised["steps_after"], revised["thoughts_after"], revised["switches_after"]) == (4, 1, 0)
    assert revised["rollouts"] == 1  # the accepted rollout left no switch after it
    assert revised["generated_tokens"] == sum(len(s.completion.token_ids) for s in scripted.seen[:2])
    for name in ("straight", "wrong", "unfinished", "no-answer"):
        assert rows[name]["revised"] == rows[name]["original"] and rows[name]["rollouts"] == 0
        assert rows[name]["generated_tokens"] == 0 and rows[name]["revisions"] == []
    # the losing rollout: its banned first candidate ("Hmm") was not written
    assert rows["losing"]["revised"] == ROWS[1][1] and rows["losing"]["rollouts"] == 1

    summary = json.loads((out / "summary.json").read_text())
    searched = [rows["revised"], rows["losing"], rows["straight"]]
    expected = {
        "samples": 7,
        "revised": 1,
        "unchanged": 2,
        "skipped": {"incorrect original answer": 1, "unfinished reasoning": 1, "no final answer": 1},
        "errors": 1,
        "error_ids": ["unscripted"],
        "accepted_revisions": 1,
        "tokens_before_mean": statistics.fmean(r["tokens_before"] for r in searched),
        "tokens_after_mean": statistics.fmean(r["tokens_after"] for r in searched),
        "steps_before_mean": statistics.fmean([6, 3, 2]),
        "steps_after_mean": statistics.fmean([4, 3, 2]),
        "switches_before_mean": 1.0,
        "switches_after_mean": 1 / 3,
        "rollouts": 2,
        "generated_tokens": sum(r.get("generated_tokens", 0) for r in rows.values()),
        "resumed_samples": 0,
    }
    assert {key: summary[key] for key in expected} == expected
    assert summary["tokens_ratio"] == pytest.approx(expected["tokens_after_mean"] / expected["tokens_before_mean"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"samples": 7, "revised": 1, "errors": 1}
    assert manifest["model"] == "scripted" and manifest["finished"] >= manifest["started"]

    # the rerun tries the failed row again (the script now covers it) and leaves every other row as it was
    unscripted = parse(ROWS[-1][1])
    scripted.script.after(CHAT.format("p-unscripted") + unscripted.prefix(1), "So 9." + END.replace("5", "9"))
    asked = len(scripted.seen)
    assert revise_cli("--input", str(source), "--output", str(out)) == 0
    again = rows_of(out)
    assert list(again) == list(rows) and len((out / "revised.jsonl").read_text().splitlines()) == 7
    assert again["unscripted"]["status"] == "unchanged" and len(scripted.seen) == asked + 2  # one rollout, two phases
    assert {name: again[name] for name in rows if name != "unscripted"} == {
        name: row for name, row in rows.items() if name != "unscripted"
    }
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors"] == 0 and summary["error_ids"] == [] and summary["resumed_samples"] == 6


def test_a_rerun_resumes_and_overwrite_starts_afresh(tmp_path, scripted, capsys):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    out = tmp_path / "run"
    assert revise_cli("--input", str(source), "--output", str(out)) == 0
    first = (out / "revised.jsonl").read_text()
    asked = len(scripted.seen)
    assert revise_cli("--input", str(source), "--output", str(out)) == 0
    assert len(scripted.seen) == asked  # nothing asked again
    assert json.loads((out / "summary.json").read_text())["resumed_samples"] == 3
    assert revise_cli("--input", str(source), "--output", str(out), "--gamma", "0.5") == 2
    assert "holds a run with other settings (RetroSearchConfig.gamma)" in capsys.readouterr().err
    assert revise_cli("--input", str(source), "--output", str(out), "--gamma", "0.5", "--overwrite") == 0
    assert len(scripted.seen) == 2 * asked
    assert (out / "revised.jsonl").read_text() == first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_samples"] == 0 and summary["samples"] == 3
    assert json.loads((out / "manifest.json").read_text())["config"]["RetroSearchConfig"]["gamma"] == 0.5


def test_keywords_decide_what_a_switch_is(tmp_path, scripted):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:1])
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "run"), "--keywords", "Hmm") == 0
    row = rows_of(tmp_path / "run")["revised"]
    assert row["switches_before"] == 1  # "Wait" is no switch now; only "Hmm" is
    assert [seen.request.banned_starts for seen in scripted.seen if seen.request.banned_starts] == [("Hmm",)]
    assert scripted.seen[0].prompt == CHAT.format("p-revised") + parse(ROWS[0][1]).prefix(4)


def test_partial_revisits_only_some_switches(tmp_path, scripted):
    many = think(*[f"Wait, s{i}." if i % 2 else f"t{i}." for i in range(20)])
    source = write_rows(tmp_path / "in.jsonl", [("many", many)])
    scripted.script = Script().otherwise("x" + END.replace("5", "0"))

    def visits() -> int:
        return sum(1 for seen in scripted.seen if seen.request.banned_starts)

    assert revise_cli("--input", str(source), "--output", str(tmp_path / "all")) == 0
    visited_all = visits()
    scripted.seen.clear()
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "half"), "--partial", "0.5") == 0
    assert 0 < visits() < visited_all == 10 - 1  # 10 switches; the last cannot win and is bounded away
    assert rows_of(tmp_path / "half")["many"]["rollouts"] == visits()


def test_max_input_tokens_skips_longer_traces(tmp_path, scripted):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    limit = scripted.count_tokens(ROWS[1][1])
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r"), "--max-input-tokens", str(limit)) == 0
    rows = rows_of(tmp_path / "r")
    assert (rows["revised"]["status"], rows["revised"]["reason"]) == ("skipped", "longer than --max-input-tokens")
    trace_tokens = scripted.count_tokens(ROWS[0][1])
    assert rows["revised"]["details"] == {"trace_tokens": trace_tokens, "max_input_tokens": limit}
    assert rows["losing"]["status"] == "unchanged" and rows["straight"]["status"] == "unchanged"


def test_field_options_on_the_command_line(tmp_path, scripted):
    source = tmp_path / "odd.jsonl"
    text = ROWS[0][1]
    source.write_text(json.dumps({"key": "k1", "task": "p-revised", "gold_value": "5", "output_text": text}) + "\n")
    options = ["--problem-field", "task", "--answer-field", "gold_value", "--trace-field", "output_text"]
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r"), *options, "--id-field", "key") == 0
    row = rows_of(tmp_path / "r")["k1"]
    assert row["status"] == "revised" and row["gold"] == "5"
    assert row["record"] == {"key": "k1", "task": "p-revised", "gold_value": "5", "output_text": row["revised"]}
    no_gold = tmp_path / "no_gold.jsonl"
    no_gold.write_text(json.dumps({"id": "g", "problem": "p-revised", "response": text}) + "\n")
    assert revise_cli("--input", str(no_gold), "--output", str(tmp_path / "g"), "--gold-from-trace") == 0
    assert rows_of(tmp_path / "g")["g"]["gold"] == "5"


def test_json_input(tmp_path, scripted):
    source = tmp_path / "in.json"
    source.write_text(json.dumps([{"id": n, "problem": f"p-{n}", "answer": "5", "response": t} for n, t in ROWS[:2]]))
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r")) == 0
    assert [row["status"] for row in rows_of(tmp_path / "r").values()] == ["revised", "unchanged"]


def test_hub_input_loads_the_named_split(tmp_path, scripted, monkeypatch):
    asked = []
    records = [{"id": n, "problem": f"p-{n}", "answer": "5", "response": t} for n, t in ROWS[:2]]

    def load_dataset(path, name=None, split=None):  # the signature of datasets.load_dataset
        asked.append((path, split))
        return records

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    assert revise_cli("--input", "someone/traces:validation", "--output", str(tmp_path / "r")) == 0
    assert revise_cli("--input", "someone/traces", "--output", str(tmp_path / "t")) == 0
    assert asked[0] == ("someone/traces", "validation") and asked[-1] == ("someone/traces", "train")
    assert list(rows_of(tmp_path / "r")) == ["revised", "losing"]


def test_an_answer_check_that_never_ends_skips_its_row_alone(tmp_path, scripted):
    """Regression: a check past its deadline reset the shared checker, cancelled the others' checks, and the
    CancelledError ended the run with a traceback and no rows."""
    slow = "9^{9^{9^{9}}}"  # math-verify works on this for minutes
    source = tmp_path / "in.jsonl"
    rows = [{"id": n, "problem": f"p-{n}", "answer": "5", "response": t} for n, t in ROWS[:3]]
    rows.insert(1, {"id": "slow", "problem": "p-slow", "answer": slow, "response": think("Try.", end=END)})
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r")) == 0
    written = rows_of(tmp_path / "r")
    assert list(written) == ["revised", "slow", "losing", "straight"]
    assert (written["slow"]["status"], written["slow"]["reason"]) == ("skipped", "answer check timed out after 5 s")
    assert [written[n]["status"] for n in ("revised", "losing", "straight")] == ["revised", "unchanged", "unchanged"]


def test_overwrite_removes_only_what_runs_wrote(tmp_path, scripted, capsys):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:1])
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("years of work")
    assert revise_cli("--input", str(source), "--output", str(thesis), "--overwrite") == 2
    assert "holds files and is no retrosearch run folder" in capsys.readouterr().err
    assert sorted(p.name for p in thesis.iterdir()) == ["thesis.tex"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert revise_cli("--input", str(source), "--output", str(a_file)) == 2
    assert f"{a_file} is a file; --output names a run folder" in capsys.readouterr().err
    run = tmp_path / "run"
    assert revise_cli("--input", str(source), "--output", str(run)) == 0
    (run / "notes.txt").write_text("mine, put here after the run")
    (run / "revised.jsonl").write_text("")  # the run's own output, spoiled: --overwrite writes it again
    assert revise_cli("--input", str(source), "--output", str(run), "--overwrite") == 0
    assert (run / "notes.txt").read_text() == "mine, put here after the run"
    assert (run / "revised.jsonl").read_text().count("\n") == 1


def test_a_folder_in_use_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path, scripted, capsys):
    from retrosearch.stages.folder import hold

    source = write_rows(tmp_path / "in.jsonl", ROWS[:1])
    run = tmp_path / "run"
    run.mkdir()
    with hold(run):
        assert revise_cli("--input", str(source), "--output", str(run)) == 2
    assert f"{run} is in use by a run (pid {os.getpid()} on" in capsys.readouterr().err
    assert not (run / "revised.jsonl").exists()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time; from pathlib import Path; from retrosearch.stages.folder import hold\n"
            f"with hold(Path({str(run)!r})):\n    print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    assert revise_cli("--input", str(source), "--output", str(run)) == 2
    holder.kill()
    holder.wait()
    assert revise_cli("--input", str(source), "--output", str(run)) == 0


def test_the_same_run_resumes_under_another_spelling_and_after_a_move(tmp_path, scripted, monkeypatch):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:2])
    monkeypatch.chdir(tmp_path)
    assert revise_cli("--input", "in.jsonl", "--output", "x") == 0
    assert revise_cli("--input", "./in.jsonl", "--output", "./x") == 0
    assert json.loads((tmp_path / "x" / "summary.json").read_text())["resumed_samples"] == 2
    (tmp_path / "x").rename(tmp_path / "moved")
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "moved")) == 0
    assert json.loads((tmp_path / "moved" / "summary.json").read_text())["resumed_samples"] == 2


def test_a_run_made_before_a_setting_became_speed_only_resumes(tmp_path, scripted):
    """A run folder from an older version: its hash counted a setting now known to change only speed (here the
    GPU memory share, which also changed its default), and it lacked one added since (--lookahead)."""
    source = write_rows(tmp_path / "in.jsonl", ROWS[:2])
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "run")) == 0
    manifest_path = tmp_path / "run" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["config"]["EngineConfig"]["gpu_memory_utilization"] = 0.9
    del manifest["config"]["RetroSearchConfig"]["lookahead"]
    manifest["config_hash"] = "0123456789abcdef"  # as an older version hashed it
    manifest_path.write_text(json.dumps(manifest))
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "run")) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["resumed_samples"] == 2
    manifest["config"]["RetroSearchConfig"]["gamma"] = 0.5  # a setting results depend on: still refused
    manifest_path.write_text(json.dumps(manifest))
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "run")) == 2


def test_merge_keeps_input_order_with_the_input_moved_away(tmp_path, scripted):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3] + [(f"extra-{i}", ROWS[2][1]) for i in range(4)])
    shards = [str(tmp_path / f"s{i}") for i in range(3)]
    for index, folder in enumerate(shards):
        assert revise_cli("--input", str(source), "--output", folder, "--shard", f"{index}/3") == 0
    order = [json.loads(line)["id"] for line in source.read_text().splitlines()]
    source.rename(tmp_path / "elsewhere.jsonl")  # merged on another machine than the one that ran the shards
    assert main(["merge", *reversed(shards), "--output", str(tmp_path / "all")]) == 0
    assert list(rows_of(tmp_path / "all")) == order  # row j of shard i is input position j * 3 + i


def test_a_merge_is_the_same_run_whatever_order_its_shards_are_named_in(tmp_path, scripted):
    """Shards that differ in a speed-only setting, run with --limit; the merged folder records each shard's
    manifest and the slowest shard's time, and naming the shards in another order reruns the same merge."""
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    shards = [str(tmp_path / f"s{i}") for i in range(2)]
    assert revise_cli("--input", str(source), "--output", shards[0], "--shard", "0/2", "--limit", "2") == 0
    assert (
        revise_cli("--input", str(source), "--output", shards[1], "--shard", "1/2", "--limit", "2", "--lookahead", "1")
        == 0
    )
    resumed = Path(shards[1]) / "summary.json"  # as if shard 1 had been killed and resumed: all its runs' seconds
    resumed.write_text(json.dumps({**json.loads(resumed.read_text()), "wall_seconds_all_runs": 1000.0}))
    merged = tmp_path / "all"
    assert main(["merge", shards[1], shards[0], "--output", str(merged)]) == 0
    assert list(rows_of(merged)) == ["revised", "losing"]
    recorded = json.loads((merged / "shards.json").read_text())
    assert recorded == {folder: json.loads((Path(folder) / "manifest.json").read_text()) for folder in shards}
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["shard_wall_seconds"] == 1000.0 and summary["samples"] == 2
    before = (merged / "manifest.json").read_text()
    assert main(["merge", shards[0], shards[1], "--output", str(merged)]) == 0  # the same run: nothing to do
    assert (merged / "manifest.json").read_text() == before
    # a shard whose rows changed since is another input: refused, then merged anew with --overwrite
    shard_rows = Path(shards[0]) / "revised.jsonl"
    shard_rows.write_text(shard_rows.read_text().replace("Try 3.", "Try 3 .", 1))
    assert main(["merge", *shards, "--output", str(merged)]) == 2
    assert main(["merge", *shards, "--output", str(merged), "--overwrite"]) == 0
    assert "Try 3 ." in (merged / "revised.jsonl").read_text()


def test_merge_names_each_differing_setting_and_takes_speed_settings_and_any_spelling_of_a_path(
    tmp_path, scripted, capsys, monkeypatch
):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3] + [(f"extra-{i}", ROWS[2][1]) for i in range(5)])
    monkeypatch.chdir(tmp_path)
    s0, s1, other = tmp_path / "s0", tmp_path / "s1", tmp_path / "other"
    assert revise_cli("--input", str(source), "--output", str(s0), "--shard", "0/2") == 0
    speed = ("--batch-size", "3", "--prefix-cache-mb", "0")  # the engine's speed-only settings may differ
    assert revise_cli("--input", str(source), "--output", str(s1), "--shard", "1/2", *speed) == 0
    # named by a relative and an absolute path, then by two absolute ones: the same merge, nothing to redo
    capsys.readouterr()
    assert main(["merge", str(s1), "s0", "--output", str(tmp_path / "all")]) == 0
    assert "shard_wall_seconds" in capsys.readouterr().out  # the merged run's summary, as every stage prints it
    before = (tmp_path / "all" / "manifest.json").read_text()
    assert main(["merge", str(s0), str(s1), "--output", str(tmp_path / "all")]) == 0
    assert (tmp_path / "all" / "manifest.json").read_text() == before
    capsys.readouterr()

    def refused(*folders: Path) -> str:
        assert main(["merge", *map(str, folders), "--output", str(tmp_path / "bad")]) == 2
        return capsys.readouterr().err.strip()

    changed = ("--seed", "1", "--gamma", "0.5")
    assert revise_cli("--input", str(source), "--output", str(other), "--shard", "1/2", *changed) == 0
    capsys.readouterr()
    assert refused(s0, other).endswith(  # compared with the first shard by path: other
        f"{s0} was run with other settings than {other}: RetroSearchConfig.gamma, RetroSearchConfig.sampling.seed"
    )
    rows = (s0 / "revised.jsonl").read_text()
    (s0 / "revised.jsonl").write_text("")  # revised, straight, extra-1 and extra-3 lost
    assert refused(s0, s1).endswith(
        "merge: 4 of 8 input ids are in no shard (first: ['revised', 'straight', 'extra-1']); "
        "rerun the shards that lack them"
    )
    (s0 / "revised.jsonl").write_text(rows)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "manifest.json").write_text('{"finished": "2026-01-01"}')  # a manifest without a config
    assert refused(s0, bare).endswith(f"{bare} is not the run folder of a `revise --shard i/n` run")


def test_merge_verifies_its_shards(tmp_path, scripted, capsys):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    shards = [str(tmp_path / f"s{i}") for i in range(2)]
    for index, folder in enumerate(shards):
        assert revise_cli("--input", str(source), "--output", folder, "--shard", f"{index}/2") == 0
    assert main(["merge", *shards, "--output", str(tmp_path / "all")]) == 0
    assert list(rows_of(tmp_path / "all")) == ["revised", "losing", "straight"]

    def refused(*folders: str) -> str:
        assert main(["merge", *folders, "--output", str(tmp_path / "bad")]) == 2
        assert not (tmp_path / "bad").exists()
        return capsys.readouterr().err.strip()

    capsys.readouterr()
    assert main(["merge", *shards]) == 2
    message = "merge needs the shard folders and --output (the merged run folder)"
    assert capsys.readouterr().err.strip() == f"retrosearch: error: {message}"
    lines = (Path(shards[0]) / "revised.jsonl").read_text().splitlines()
    (Path(shards[0]) / "revised.jsonl").write_text(lines[0] + "\n")  # a row lost
    assert refused(*shards).endswith(
        "merge: 1 of 3 input ids are in no shard (first: ['straight']); rerun the shards that lack them"
    )
    (Path(shards[0]) / "revised.jsonl").write_text("\n".join(lines) + "\n")
    other_seed = str(tmp_path / "seed1")
    assert revise_cli("--input", str(source), "--output", other_seed, "--shard", "1/2", "--seed", "1") == 0
    assert f"{other_seed} was run with other settings than {shards[0]}: RetroSearchConfig.sampling.seed" in refused(
        shards[0], other_seed
    )
    manifest = json.loads((Path(shards[1]) / "manifest.json").read_text())
    (Path(shards[1]) / "manifest.json").write_text(json.dumps({**manifest, "finished": None}))
    assert f"{shards[1]}: shard 1/2 did not finish; rerun its command, then merge" in refused(*shards)
    assert "is not the run folder of a `revise --shard i/n` run" in refused(str(tmp_path / "all"), shards[0])
    assert "no manifest.json" in refused(str(tmp_path), shards[0])
    (Path(shards[1]) / "manifest.json").write_text(json.dumps(manifest))

    # merge is a stage: it never writes into a shard, and another command's folder is refused
    before = (Path(shards[0]) / "revised.jsonl").read_bytes()
    assert main(["merge", *shards, "--output", shards[0], "--overwrite"]) == 2
    assert "lies inside --output" in capsys.readouterr().err
    assert (Path(shards[0]) / "revised.jsonl").read_bytes() == before
    # the same input named two ways is one input
    relative = str(tmp_path / "relative")
    assert revise_cli("--input", os.path.relpath(source), "--output", relative, "--shard", "1/2") == 0
    assert main(["merge", shards[0], relative, "--output", str(tmp_path / "mixed")]) == 0
    # a shard holding an id the input lacks is named as such; one another shard holds too, as such
    (Path(shards[0]) / "revised.jsonl").write_text(before.decode().replace('"id": "revised"', '"id": "ghost"', 1))
    assert refused(*shards).endswith(
        f"merge: {shards[0]} holds id 'ghost', which {source} lacks; were the shards run on this input?"
    )
    (Path(shards[0]) / "revised.jsonl").write_text(before.decode().replace('"id": "revised"', '"id": "losing"', 1))
    assert refused(*shards) == (
        "retrosearch: error: merge found an id in more than one shard; were the shards run on the same input?"
    )
    (Path(shards[0]) / "revised.jsonl").write_bytes(before)
    # shards of different splits
    third = str(tmp_path / "third")
    assert revise_cli("--input", str(source), "--output", third, "--shard", "1/3") == 0
    assert "merge needs the folders of shards 0/2 .. 1/2, each once" in refused(shards[0], third)
    # with the input moved away, a shard that lost a row is caught by its own count
    (Path(shards[0]) / "revised.jsonl").write_text(before.decode().splitlines()[0] + "\n")
    source.rename(tmp_path / "moved.jsonl")
    assert f"merge: {shards[0]} holds 1 rows, its run finished with 2" in refused(*shards)


def test_a_trace_longer_than_the_models_context_is_skipped_at_once(tmp_path, scripted):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    prompt = scripted.count_tokens(CHAT.format("p-revised"))
    whole = prompt + scripted.count_tokens(ROWS[0][1])
    scripted.context_length = whole  # the first trace fills it exactly, leaving no room for a rollout
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r")) == 0
    rows = rows_of(tmp_path / "r")
    assert (rows["revised"]["status"], rows["revised"]["reason"]) == ("skipped", "longer than the context")
    assert rows["revised"]["details"] == {"prompt_tokens": prompt, "trace_tokens": whole - prompt, "context": whole}
    assert rows["losing"]["status"] == "unchanged"
    assert not [seen for seen in scripted.seen if seen.prompt.startswith(CHAT.format("p-revised"))]


def test_skip_reasons_are_categories_and_their_numbers_fields(tmp_path, scripted):
    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    lengths = {row_id: scripted.count_tokens(trace) for row_id, trace, *_ in ROWS[:3]}
    assert len(set(lengths.values())) == 3  # three traces of three lengths: one reason
    scripted.context_length = min(lengths.values())
    assert revise_cli("--input", str(source), "--output", str(tmp_path / "r")) == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["skipped"] == {"longer than the context": 3}
    rows = rows_of(tmp_path / "r")
    assert {row_id: row["details"]["trace_tokens"] for row_id, row in rows.items()} == lengths
    assert {row["details"]["context"] for row in rows.values()} == {scripted.context_length}


def test_the_organism_engine_knows_its_context(organism_engine):
    assert organism_engine.context_length == 1024


def test_a_full_disk_ends_the_run_with_one_line_and_a_rerun_resumes(tmp_path, scripted, capsys, monkeypatch):
    import errno

    from retrosearch.data.outputs import JsonlAppender

    source = write_rows(tmp_path / "in.jsonl", ROWS[:3])
    out = tmp_path / "run"
    original = JsonlAppender.write
    written = []

    def write_until_full(self, row):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        written.append(row)
        original(self, row)

    monkeypatch.setattr(JsonlAppender, "write", write_until_full)
    assert revise_cli("--input", str(source), "--output", str(out)) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"retrosearch: error: {out / 'revised.jsonl'}: No space left on device; free space or fix permissions, "
        "then rerun the same command to resume"
    )
    assert len((out / "revised.jsonl").read_text().splitlines()) == 1  # the row that was written stays
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(JsonlAppender, "write", original)
    assert revise_cli("--input", str(source), "--output", str(out)) == 0
    assert json.loads((out / "summary.json").read_text())["resumed_samples"] == 1


def test_a_summary_that_cannot_be_written_leaves_no_temporary_file(tmp_path, monkeypatch):
    from retrosearch.data import outputs

    def no_room(self, text, *args, **kwargs):  # a write that stops part way
        with open(self, "w") as handle:
            handle.write(text[:3])
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", no_room)
    with pytest.raises(OSError):
        outputs.write_json(tmp_path / "summary.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_the_progress_bar_counts_accepted_revisions_and_an_empty_run_has_zero_means(scripted):
    import asyncio

    from retrosearch.data.inputs import Sample
    from retrosearch.stages.revise import ReviseConfig, Reviser, summarize

    reviser = Reviser.on(scripted, RetroSearchConfig(), ReviseConfig())
    assert reviser.progress() == {"accepted": 0}
    for name, text in ROWS[:3]:
        asyncio.run(reviser(Sample(name, f"p-{name}", "5", text, "in.jsonl:1")))
    assert reviser.progress() == {"accepted": 1}  # "revised" once; "losing" and "straight" not
    asyncio.run(reviser(Sample("again", "p-revised", "5", ROWS[0][1], "in.jsonl:4")))
    assert reviser.progress() == {"accepted": 2}
    empty = summarize([])
    means = {key: value for key, value in empty.items() if key.endswith("_mean")}
    assert "tokens_before_mean" in means and set(means.values()) == {0.0} and empty["tokens_ratio"] == 0.0


def test_revise_without_an_input_is_one_line(tmp_path, capsys):
    assert revise_cli("--output", str(tmp_path / "run")) == 2
    assert capsys.readouterr().err.strip() == "retrosearch: error: revise needs --input: a traces file or dataset id"


def test_a_revise_row_is_told_by_its_four_fields():
    from retrosearch.stages.revise import RevisedRow

    row = {"original": "a", "revised": "b", "status": "revised", "record": {}}
    assert RevisedRow.is_one(row) and RevisedRow.is_one({**row, "id": "x"})
    for field in row:
        assert not RevisedRow.is_one({key: value for key, value in row.items() if key != field})


def test_revise_uses_the_engine_it_is_given_records_its_input_and_refuses_limits_below_one(tmp_path):
    from retrosearch.engines import EngineConfig
    from retrosearch.stages.folder import RunError
    from retrosearch.stages.revise import ReviseConfig, revise

    engine = ScriptedEngine(script())
    source = write_rows(tmp_path / "in.jsonl", ROWS[:1])
    config = ReviseConfig(input=str(source), output=str(tmp_path / "run"))
    revise(config, engine_config=EngineConfig(model="not-a-model-anyone-has"), engine=engine, quiet=True)
    assert engine.seen  # the engine given served the run: nothing was loaded
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["input"] == str(source)
    source.write_text(source.read_text().replace("Try 3.", "Try 3 ."))
    with pytest.raises(RunError, match=r"other input contents \(input changed since\)"):
        revise(config, engine_config=EngineConfig(model="not-a-model-anyone-has"), engine=engine, quiet=True)
    for option in ("limit", "max_input_tokens"):
        with pytest.raises(ValueError, match=f"--{option.replace('_', '-')} must be at least 1"):
            ReviseConfig(**{option: 0})
