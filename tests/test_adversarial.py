"""Malformed and adversarial inputs through `inspect` and `revise`: each ends with exit 0 or 2 and at most one
line of error, never a traceback, and quickly."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retrosearch.cli import main

GOOD = {"problem": "1 + 1?", "answer": "2", "response": "<think>\nTry 2.\n\nWait, 2 works.\n</think>\n\\boxed{2}"}


def jsonl(*rows) -> bytes:
    return b"".join((row if isinstance(row, bytes) else json.dumps(row).encode()) + b"\n" for row in rows)


CASES = {
    "empty.jsonl": b"",
    "blank-lines.jsonl": b"\n\n   \n",
    "json-list-in-jsonl.jsonl": json.dumps([GOOD, GOOD]).encode(),
    "array-per-line.jsonl": jsonl(b"[1, 2, 3]"),
    "string-per-line.jsonl": jsonl(b'"abc"'),
    "number-per-line.jsonl": jsonl(b"42"),
    "null-per-line.jsonl": jsonl(b"null"),
    "problem-is-object.jsonl": jsonl({**GOOD, "problem": {"text": "x"}}),
    "problem-is-empty.jsonl": jsonl({**GOOD, "problem": "   "}),
    "answer-is-object.jsonl": jsonl({**GOOD, "answer": {"value": 2}}),
    "answer-is-bool.jsonl": jsonl({**GOOD, "answer": True}),
    "answer-is-null.jsonl": jsonl({**GOOD, "answer": None}),
    "answer-is-nan.jsonl": jsonl(b'{"problem": "p", "answer": NaN, "response": "x"}'),
    "response-is-list.jsonl": jsonl({**GOOD, "response": ["a", "b"]}),
    "response-is-number.jsonl": jsonl({**GOOD, "response": 3}),
    "response-is-null.jsonl": jsonl({**GOOD, "response": None}),
    "id-is-list.jsonl": jsonl({**GOOD, "id": [1, 2]}),
    "id-is-object.jsonl": jsonl({**GOOD, "id": {"a": 1}}),
    "id-is-null.jsonl": jsonl({**GOOD, "id": None}, {**GOOD, "id": None}),
    "id-has-newline.jsonl": jsonl({**GOOD, "id": "a\nb"}),
    "duplicate-ids.jsonl": jsonl({**GOOD, "id": "a"}, {**GOOD, "id": "a"}),
    "nul-bytes.jsonl": jsonl({**GOOD, "response": "<think>\nTry\u00002.\n</think>\n\\boxed{2}"}),
    "lone-surrogate.jsonl": jsonl(
        b'{"problem": "p\\ud800", "answer": "2", "response": "\\udcff<think>\\nx\\n</think> \\\\boxed{2}"}'
    ),
    "invalid-utf8.jsonl": jsonl(b'{"problem": "p\xff", "answer": "2", "response": "x"}'),
    "bom-crlf.jsonl": b"\xef\xbb\xbf" + jsonl(GOOD).replace(b"\n", b"\r\n"),
    "deep-nesting.jsonl": jsonl(b"[" * 100_000 + b"]" * 100_000),
    "deep-answer.jsonl": jsonl({**GOOD, "answer": "\\boxed{" * 5000 + "2" + "}" * 5000}),
    "unclosed-boxed.jsonl": jsonl({**GOOD, "response": "<think>\nx\n</think>\n" + "\\boxed{" * 20000}),
    "many-switches.jsonl": jsonl({**GOOD, "response": "<think>\n" + "Wait, 2.\n\n" * 20000 + "</think>\n\\boxed{2}"}),
    "long-spaces.jsonl": jsonl({**GOOD, "response": "the answer is" + " " * 100_000 + "2"}),
    "huge-line.jsonl": jsonl({**GOOD, "response": "<think>\n" + "x" * 5_000_000 + "\n</think>\n\\boxed{2}"}),
    "conversations-is-string.jsonl": jsonl({"conversations": "hello", "answer": "2"}),
    "conversations-odd-turns.jsonl": jsonl({"conversations": [1, None, {"from": "human"}], "answer": "2"}),
    "messages-no-assistant.jsonl": jsonl({"messages": [{"role": "user", "content": "p"}], "answer": "2"}),
    "s1k-number.jsonl": jsonl({"question": "p", "solution": "\\boxed{2}", "thinking_trajectories": 5}),
    "truncated-last-line.jsonl": jsonl(GOOD)[:-20],
    "object.json": json.dumps(GOOD).encode(),
    "broken.json": b'[{"problem": ',
    "random.parquet": b"PAR1 this is not parquet",
    "unknown.csv": b"a,b\n1,2\n",
}


def write_case(folder, name: str):
    path = folder / name
    path.write_bytes(CASES[name])
    return path


def assert_clean(code: int, capsys, seconds: float) -> None:
    err = capsys.readouterr().err
    assert code in (0, 2), err[-3000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("retrosearch: error")]
    assert len(errors) <= 1 and (code == 0 or errors), err[-2000:]
    assert seconds < 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_inspect_takes_any_input_without_a_traceback(name, tmp_path, capsys):
    path = write_case(tmp_path, name)
    started = time.monotonic()
    code = main(["inspect", str(path)])
    assert_clean(code, capsys, time.monotonic() - started)


@pytest.fixture
def organism_here(monkeypatch, organism_engine):
    monkeypatch.setattr("retrosearch.executors.local.load_engine", lambda config: organism_engine)


@pytest.mark.parametrize("name", sorted(CASES))
def test_revise_takes_any_input_without_a_traceback(name, tmp_path, capsys, organism_here):
    path = write_case(tmp_path, name)
    started = time.monotonic()
    code = main(["revise", "--input", str(path), "--output", str(tmp_path / "run"), "--max-new-tokens", "40"])
    assert_clean(code, capsys, time.monotonic() - started)


@pytest.mark.parametrize(
    "options",
    [
        ["--limit", "-1"],
        ["--shard", "5/2"],
        ["--shard", "x"],
        ["--partial", "0"],
        ["--gamma", "1.5"],
        ["--rollouts", "0"],
        ["--keywords", ""],
        ["--max-new-tokens", "0"],
        ["--batch-size", "0"],
        ["--concurrency", "-3"],
        ["--input", "/"],
        ["--input", "no/such/file.jsonl"],
        ["--output", "/proc/version"],
        ["--config", "/dev/null"],
    ],
)
def test_revise_refuses_impossible_options_in_one_line(options, tmp_path, capsys, organism_here):
    path = write_case(tmp_path, "bom-crlf.jsonl")
    command = ["revise", "--input", str(path), "--output", str(tmp_path / "run"), "--max-new-tokens", "40"]
    started = time.monotonic()
    code = main([*command, *options])
    assert_clean(code, capsys, time.monotonic() - started)


# Reliability, round two: each class of the issue, as a rule a command holds whatever it is given.

SAMPLE = {
    "problem": "p",
    "answer": "2",
    "response": "<think>\nx\n</think>\n\\boxed{2}",
    "predicted": "2",
    "correct": True,
    "truncated": False,
    "switches": 0,
}


def samples_file(path):
    rows = [
        {**SAMPLE, "id": f"q{q}#{k}", "problem_id": f"q{q}", "sample": k, "tokens": 10 + k}
        for q in range(2)
        for k in range(2)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jsonl(*rows))
    return path


def tree(folder) -> dict[str, bytes | str]:
    """What a folder holds: files by content, links by target, folders by name (hidden run bookkeeping left out)."""
    found: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[name] = path.read_bytes()
        else:
            found[name] = "dir"
    return found


def test_a_stage_writes_only_into_an_empty_folder_or_its_own_run_folder(tmp_path, capsys):
    folder = tmp_path / "d"
    samples = samples_file(folder / "samples.jsonl")
    (folder / "notes.txt").write_text("x")
    before = tree(folder)
    for extra in ([], ["--overwrite"]):
        assert main(["select", "--input", str(samples), "--output", str(folder), *extra]) == 2
        assert "no retrosearch run folder" in capsys.readouterr().err
    assert tree(folder) == before and not (folder / "manifest.json").exists()


def test_a_run_folder_never_holds_its_own_input(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["select", "--input", str(samples_file(tmp_path / "s.jsonl")), "--output", str(run)]) == 0
    inside = samples_file(run / "mine.jsonl")
    for extra in ([], ["--overwrite"]):
        assert main(["select", "--input", str(inside), "--output", str(run), *extra]) == 2
        assert "lies inside --output" in capsys.readouterr().err
    assert inside.exists() and (run / "traces.jsonl").exists()


def test_overwrite_removes_what_runs_wrote_and_nothing_else_never_through_a_link(tmp_path, capsys):
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "precious.txt").write_text("precious")
    samples = samples_file(tmp_path / "s.jsonl")
    run = tmp_path / "run"
    assert main(["select", "--input", str(samples), "--output", str(run)]) == 0
    traces = run / "traces.jsonl"
    (run / "notes.txt").write_text("mine")
    (run / "link").symlink_to(outside / "keep", target_is_directory=True)
    assert (
        main(["select", "--input", str(samples), "--output", str(run), "--shortest-correct-of", "1", "--overwrite"])
        == 0
    )
    assert (run / "notes.txt").read_text() == "mine" and (run / "link").is_symlink()
    assert traces.exists() and (outside / "keep" / "precious.txt").read_text() == "precious"
    assert not (run / ".overwritten").exists()
    # a folder made before runs kept a ledger cannot tell its runs' files from others: refused, nothing removed
    (run / ".written").unlink()
    before = sorted(path.name for path in run.iterdir())
    assert main(["select", "--input", str(samples), "--output", str(run), "--overwrite"]) == 2
    assert "kept no list of the files its runs wrote" in capsys.readouterr().err
    assert sorted(path.name for path in run.iterdir()) == before


ENTRY = st.tuples(st.sampled_from(["file", "dir", "link"]), st.text("abcxyz._-", min_size=1, max_size=8))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(ENTRY, max_size=6), run_first=st.booleans(), overwrite=st.booleans())
def test_whatever_a_folder_holds_no_command_removes_a_file_it_did_not_write(
    tmp_path_factory, entries, run_first, overwrite
):
    base = tmp_path_factory.mktemp("property")
    folder = base / "out"
    command = ["organism", "teacher", "--count", "2", "--output", str(folder)]
    if run_first:
        assert main(command) == 0
    folder.mkdir(exist_ok=True)
    target = base / "elsewhere"
    target.mkdir()
    (target / "file").write_text("elsewhere")
    for kind, name in entries:
        path = folder / name
        if path.exists() or path.is_symlink() or name in (".", "..") or name.startswith("."):
            continue
        if kind == "file":
            path.write_text(name)
        elif kind == "dir":
            path.mkdir()
            (path / "inner").write_text(name)
        else:
            path.symlink_to(target, target_is_directory=True)
    theirs = {name: value for name, value in tree(folder).items() if not run_first or name.split("/")[0] not in OURS}
    main([*command, "--seed", "1", *(["--overwrite"] if overwrite else [])])
    now = tree(folder)
    assert all(now.get(name) == value for name, value in theirs.items())
    assert (target / "file").read_text() == "elsewhere"


OURS = {"manifest.json", "summary.json", "traces.jsonl"}


def test_generate_refuses_repeated_and_missing_problem_ids(tmp_path, capsys):
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(jsonl({"id": 1, "problem": "a", "answer": "1"}, {"id": "1", "problem": "b", "answer": "2"}))
    assert main(["generate", "--problems", str(problems), "--output", str(tmp_path / "g")]) == 2
    assert f"{problems}:2: id '1' repeats {problems}:1" in capsys.readouterr().err
    problems.write_bytes(jsonl({"id": None, "problem": "a", "answer": "1"}))
    assert main(["generate", "--problems", str(problems), "--output", str(tmp_path / "g")]) == 2
    assert "the id ('id') is missing" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_asking_for_more_organism_problems_than_a_split_holds_is_refused_at_once(tmp_path, capsys):
    started = time.monotonic()
    assert main(["generate", "--problems", "organism", "--limit", "1703", "--output", str(tmp_path / "g")]) == 2
    assert "test split holds 1,702 problems" in capsys.readouterr().err
    assert main(["eval", "--benchmarks", "organism", "--limit", "1703", "--output", str(tmp_path / "e")]) == 2
    assert "test split holds 1,702 problems" in capsys.readouterr().err
    assert time.monotonic() - started < 30


def test_a_transformers_run_resumes_under_other_server_settings(tmp_path, capsys, organism_here):
    command = ["generate", "--limit", "2", "--max-new-tokens", "40", "--output", str(tmp_path / "g")]
    assert main(command) == 0
    assert main([*command, "--retries", "2", "--api-key-env", "SOME_KEY"]) == 0
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["resumed_samples"] == 2


def test_organism_train_is_a_run_folder(tmp_path, capsys):
    command = ["organism", "train", "--output", str(tmp_path / "o"), "--steps", "2", "--batch-size", "2"]
    command += ["--eval-every", "2", "--eval-problems", "1", "--warmup-steps", "1"]
    assert main(command) == 0
    assert "retrosearch organism-train —" in capsys.readouterr().out  # the summary, as every stage prints it
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["command"] == "organism-train"
    assert main([*command, "--seed", "1"]) == 2
    assert "other settings (TrainConfig.seed)" in capsys.readouterr().err
    assert main([*command, "--threads", "1"]) == 0  # speed only: the finished run is returned


def test_failed_samples_make_eval_and_a_recipe_stop_with_exit_3_and_are_retried(tmp_path, capsys):
    dead = ["--engine", "openai", "--base-url", "http://127.0.0.1:9", "--retries", "0", "--max-new-tokens", "8"]
    command = ["eval", "--benchmarks", "organism", "--limit", "2", "--samples", "1", "--output", str(tmp_path / "e")]
    assert main([*command, *dead]) == 3
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["finished"] is None
    capsys.readouterr()
    assert main([*command, *dead]) == 3  # not a finished run: tried again, failed again
    assert "2 row(s) failed" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    stages = [
        {
            "name": "gen",
            "command": "generate",
            "options": {"limit": 2, "engine": "openai", "base_url": dead[3], "retries": 0},
        },
        {"name": "teacher", "command": "teacher", "options": {"count": 2}},
    ]
    recipe.write_text(json.dumps({"output": str(tmp_path / "run"), "stages": stages}))
    assert main(["run", str(recipe)]) == 3
    assert "the recipe stopped at stage gen: 2 row(s) failed" in capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher").exists()


@pytest.mark.parametrize(
    ("stages", "table", "said"),
    [
        ([("gen", "generate", {"output": "{output}/my-gen"}), ("t", "teacher", {"output": "{gen}/t"})], [], None),
        ([("gen", "generate", {"output": "{nothing}/x"})], [], "{nothing} names no stage"),
        ([("gen", "generate", {}), ("gen", "teacher", {})], [], "stage name(s) gen used twice"),
        ([("gen", "generate", {})], ["gen"], "table names stage 'gen', a generate stage"),
    ],
)
def test_a_recipe_is_checked_whole_before_anything_runs(stages, table, said, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    body = {"output": str(tmp_path / "run"), "table": table}
    body["stages"] = [{"name": name, "command": command, "options": options} for name, command, options in stages]
    recipe.write_text(json.dumps(body))
    code = main(["run", str(recipe), "--dry-run"])
    out, err = capsys.readouterr()
    if said is None:
        assert code == 0 and f"--output {tmp_path / 'run' / 'my-gen' / 't'}" in out
    else:
        assert code == 2 and said in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_inspect_refuses_a_blank_keyword(tmp_path, capsys):
    path = write_case(tmp_path, "bom-crlf.jsonl")
    assert main(["inspect", str(path), "--keywords", ""]) == 2
    assert "none may be blank" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_the_vllm_engine_without_vllm_says_how_to_install_it(tmp_path, capsys):
    assert main(["generate", "--engine", "vllm", "--limit", "1", "--output", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'retrosearch[vllm]'" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_closed_pipe_ends_a_command_quietly(tmp_path):
    path = write_case(tmp_path, "bom-crlf.jsonl")
    command = [sys.executable, "-m", "retrosearch.cli", "inspect", str(path), str(path), "--json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=command_env())
    process.stdout.close()  # the reader is gone before the first line
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and err == "", err


def started_children(pid: int, alive_for: float = 3.0) -> list[int]:
    """The child processes of `pid` that have run for `alive_for` seconds (from /proc)."""
    proc = Path("/proc")
    try:
        tasks = (proc / str(pid) / "task").iterdir()
        children = [int(c) for task in tasks for c in (task / "children").read_text().split()]
        ticks, uptime = os.sysconf("SC_CLK_TCK"), float((proc / "uptime").read_text().split()[0])
        stats = {c: (proc / str(c) / "stat").read_text() for c in children}
    except (FileNotFoundError, ProcessLookupError):
        return []
    started = {child: int(stat.rsplit(")", 1)[1].split()[19]) / ticks for child, stat in stats.items()}
    return [child for child, at in started.items() if uptime - at >= alive_for]


def test_ctrl_c_ends_a_run_with_one_line(teacher_file, tmp_path):
    output = tmp_path / "run"
    process = subprocess.Popen(
        # slow on purpose (one row at a time, four rollouts a switch): the Ctrl-C comes mid-run
        revise_command(teacher_file, "--output", str(output), "--batch-size", "1", "--rollouts", "4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=command_env(),
        start_new_session=True,
        # as from a terminal: a run started in the background of a script (CI's, say) inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (output / "revised.jsonl").exists() or not (output / "revised.jsonl").read_text().strip():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    while not started_children(process.pid, alive_for=1.0):  # an answer-checker worker, past its start-up
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.2)
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGINT)  # as a terminal does: the whole group, answer-checker worker included
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 130, err
    said = [
        line
        for line in err.replace("\r", "\n").splitlines()
        if line.strip() and "it/s" not in line and "sample" not in line
    ]
    assert said == ["retrosearch: interrupted; rerun the same command to resume"], err[-3000:]


def test_crlf_traces_are_read_like_lf_ones_and_written_back_with_crlf(tmp_path, capsys):
    from retrosearch.data.inputs import FieldMap, to_sample, with_response

    lf = {**GOOD, "response": "<think>\nTry 2.\n\nWait, 2 works.\n\nHmm, yes.\n</think>\n\\boxed{2}"}
    crlf = {**lf, "response": lf["response"].replace("\n", "\r\n")}
    figures = []
    for name, row in (("lf.jsonl", lf), ("crlf.jsonl", crlf)):
        (tmp_path / name).write_bytes(jsonl(row))
        assert main(["inspect", str(tmp_path / name), "--json"]) == 0
        figures.append({k: v for k, v in json.loads(capsys.readouterr().out).items() if k != "file"})
    assert figures[0] == figures[1] and figures[1]["switches_mean"] == 2
    sample = to_sample(crlf, "crlf.jsonl:1", FieldMap(), 1)
    assert sample.response == lf["response"]
    assert with_response(sample, sample.response) == crlf


@pytest.mark.parametrize(
    ("keyword", "step", "opens"),
    [
        ("等等", "等等我再检查一下", True),
        ("等等", "等等，我再检查一下", True),
        ("待って", "待って、もう一度計算する", True),
        ("Déjà", "déjà vu, on recommence", True),
        ("Déjà", "déjàvu", False),
        ("Wait", "Waiting for it", False),
    ],
)
def test_a_keyword_is_a_whole_word_in_every_script(keyword, step, opens):
    from retrosearch.trace import KeywordMatcher

    assert (KeywordMatcher((keyword,)).match(step) == keyword) is opens


def test_a_run_follows_its_inputs_contents_problems_and_prompt_files_alike(tmp_path, capsys, organism_here):
    problems = tmp_path / "p.jsonl"
    problems.write_bytes(jsonl({"id": "a", "problem": "x", "answer": "1"}, {"id": "b", "problem": "y", "answer": "2"}))
    system = tmp_path / "system.txt"
    system.write_text("Think.")
    command = ["generate", "--problems", str(problems), "--system-prompt-file", str(system), "--max-new-tokens", "8"]
    command += ["--output", str(tmp_path / "g")]
    assert main(command) == 0
    assert main(command) == 0  # unchanged: resumed
    system.write_text("Think step by step.")
    assert main(command) == 2
    assert "input contents (system_prompt_file changed since)" in capsys.readouterr().err
    system.write_text("Think.")
    problems.write_bytes(jsonl({"id": "a", "problem": "x", "answer": "1"}))  # the input shrank
    assert main(command) == 2
    assert "input contents (problems changed since)" in capsys.readouterr().err
    assert main([*command, "--overwrite"]) == 0
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["samples"] == 1


def test_a_prompt_longer_than_the_context_is_skipped_never_generated(tmp_path, organism_engine, monkeypatch):
    from retrosearch.engines import EngineConfig
    from retrosearch.stages.generate import GenerateConfig, generate

    async def never(requests):
        raise AssertionError("a prompt that cannot fit was sent to the model")

    monkeypatch.setattr(organism_engine, "context_length", 8)
    monkeypatch.setattr(organism_engine, "generate", never)
    config = GenerateConfig(output=str(tmp_path / "gen"), limit=3, samples=2)
    summary = generate(config, EngineConfig(model="organism"), engine=organism_engine, quiet=True)
    assert summary["skipped"] == {"longer than the context": 6}
    assert (summary["errors"], summary["truncated"], summary["traces_written"]) == (0, 0, 0)
    assert summary["replicas_used"] == 1  # the one engine in process wrote the rows
    rows = [json.loads(line) for line in (tmp_path / "gen" / "samples.jsonl").open()]
    for row in rows:
        prompt_tokens = organism_engine.count_tokens(organism_engine.chat_prompt(row["problem"]))
        assert row["details"] == {"prompt_tokens": prompt_tokens, "context": 8}
        assert (row["response"], row["tokens"], row["truncated"]) == ("", 0, False)
