"""The evaluation's figures on hand-computed sets: avg@k averaged per problem (not pooled over samples), pass@k,
tokens and switches, with failed, truncated, unanswered and skipped samples, per benchmark and overall."""

import json
from fractions import Fraction

import pytest
from scripted import PIECES, ScriptedEngine

from retrosearch.engines import EngineConfig, SamplingConfig
from retrosearch.seeds import derive_seed
from retrosearch.stages.eval import EvalConfig, evaluate, load_benchmark
from retrosearch.stages.folder import RunError

BUDGET = 36  # max new tokens: LONG_5 (46 tokens) is cut here, inside its closing marker


def think(*steps: str, answer: str | None) -> str:
    solution = f"So \\boxed{{{answer}}}." if answer is not None else "No idea."
    return "<think>\n" + "\n\n".join(steps) + "\n</think>\n\n" + solution


RIGHT_5 = think("Try 5.", "Wait, check 5.", answer="5")  # 1 switch
WRONG_5 = think("Try 4.", answer="4")  # 0 switches
LONG_5 = think("Try 1.", "Wait, 2.", "Hmm, 3.", "Wait, 4.", "Alternatively, 5.", answer="5")  # cut by the budget
BLANK_7 = think("Try 7.", "Wait, 7.", "Hmm, 7.", answer=None)  # 2 switches, no answer
RIGHT_7 = think("It is 7.", answer="7")
RIGHT_3 = think("Try 3.", "Wait, 3.", "Hmm, 3.", answer="3")  # 2 switches
FAILS = "a server error"


def tokens(text: str) -> int:
    return len(PIECES.findall(text))


def write_benchmark(root, name: str, field: str, rows: list[tuple[str, str]]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    lines = [json.dumps({field: problem, "answer": answer}) for problem, answer in rows]
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture
def benchmarks(tmp_path):
    data = tmp_path / "data"
    write_benchmark(data, "math500", "problem", [("five?", "5"), ("seven?", "7")])
    write_benchmark(data, "gsm8k", "question", [("three?", "#### 3"), ("long " * 40 + "?", "#### 4")])
    return data


def test_avg_pass_tokens_and_switches_per_benchmark_and_overall(benchmarks, tmp_path):
    (five, seven), _ = load_benchmark("math500", str(benchmarks), None)
    (three, long), _ = load_benchmark("gsm8k", str(benchmarks), None)
    plan = {
        five.id: [RIGHT_5, WRONG_5, FAILS],
        seven.id: [LONG_5.replace("5", "7"), BLANK_7, RIGHT_7],
        three.id: [RIGHT_3, RIGHT_3, RIGHT_3],
        long.id: [RIGHT_3, RIGHT_3, RIGHT_3],  # never asked: its prompt does not fit the context
    }
    by_seed = {derive_seed(0, pid, k): text for pid, texts in plan.items() for k, text in enumerate(texts)}
    assert len(by_seed) == 12

    def respond(prompt: str, seed: int) -> list[str]:
        if by_seed[seed] == FAILS:
            raise ConnectionError(FAILS)
        return [by_seed[seed]]

    engine = ScriptedEngine(respond)
    engine.context_length = 60  # "long …?" (over 80 tokens of prompt) cannot be read
    config = EvalConfig(
        benchmarks=("math500", "gsm8k"),
        output=str(tmp_path / "eval"),
        data_dir=str(benchmarks),
        samples=3,
        sampling=SamplingConfig(max_new_tokens=BUDGET),
    )
    summary = evaluate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)
    math500, gsm8k = summary["benchmarks"]["math500"], summary["benchmarks"]["gsm8k"]

    # math500: five? scores 1 of 2 (its failed sample is counted, not scored), seven? 1 of 3
    assert math500["accuracy"] == pytest.approx(float((Fraction(1, 2) + Fraction(1, 3)) / 2))  # 5/12, not 2/5
    assert math500["pass@k"] == 1.0
    assert (math500["samples"], math500["failed_samples"], math500["truncated"]) == (5, 1, 1)
    generated = [RIGHT_5, WRONG_5, LONG_5.replace("5", "7"), BLANK_7, RIGHT_7]
    lengths = [*map(tokens, generated[:2]), BUDGET, *map(tokens, generated[3:])]
    assert math500["tokens_mean"] == pytest.approx(sum(lengths) / 5)
    assert lengths == [30, 22, 36, 30, 24]  # by hand: words, runs of spaces and symbols are one token each
    # the truncated trace keeps its four switches (cut after them); it has no answer
    assert math500["switches_mean"] == pytest.approx((1 + 0 + 4 + 2 + 0) / 5)
    assert math500["skipped"] == {}

    # gsm8k: three? 3 of 3; the long problem is skipped (3 samples, scored wrong, no length)
    assert (gsm8k["accuracy"], gsm8k["pass@k"]) == (0.5, 0.5)
    assert gsm8k["skipped"] == {"longer than the context": 3}
    assert gsm8k["tokens_mean"] == tokens(RIGHT_3) and gsm8k["switches_mean"] == 2.0
    assert summary["errors"] == 1
    assert not [seen for seen in engine.seen if "long long" in seen.prompt]

    table = (tmp_path / "eval" / "results.md").read_text()
    average = next(line for line in table.splitlines() if line.startswith("| average"))
    assert average.split("|")[2].strip() == f"{(5 / 12 + 0.5) / 2:.3f}"
    assert "gsm8k: 3 samples skipped (longer than the context), scored as wrong" in table
    rows = [json.loads(line) for line in (tmp_path / "eval" / "gsm8k" / "generate" / "samples.jsonl").open()]
    skipped = [row for row in rows if row["skipped"]]
    assert len(skipped) == 3 and {row["details"]["context"] for row in skipped} == {60}
    assert all(row["details"]["prompt_tokens"] > 60 for row in skipped)


def test_eval_prints_its_table_records_its_figures_and_follows_its_data(benchmarks, tmp_path, capsys):
    engine = ScriptedEngine(lambda prompt, seed: [RIGHT_5 if "five" in prompt else WRONG_5])
    with open(benchmarks / "math500" / "test.jsonl", "a") as handle:
        handle.write(json.dumps({"problem": "no gold?", "answer": ""}) + "\n")  # left out, and counted
    output = tmp_path / "eval"

    def run(**options) -> dict:
        config = EvalConfig(benchmarks=("math500",), output=str(output), data_dir=str(benchmarks), samples=2, **options)
        return evaluate(config, EngineConfig(model="scripted-model"), engine=engine)

    summary = run()
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("| scripted-model | accuracy (avg@2) | pass@2 | avg tokens")
    assert "| math500 | 0.500 | 0.500 | 26.0 | 0.50 | 0 |" in printed  # five? right twice, seven? wrong twice
    assert printed == (output / "results.md").read_text()
    recorded = json.loads((output / "summary.json").read_text())
    assert (recorded["model"], recorded["k"], recorded["errors"]) == ("scripted-model", 2, 0)
    assert recorded["benchmarks"]["math500"]["left_out_no_gold"] == 1
    assert {key: summary[key] for key in ("model", "k", "errors")} == {"model": "scripted-model", "k": 2, "errors": 0}

    asked = len(engine.seen)
    assert run() == summary and len(engine.seen) == asked  # finished: returned, and shown again, without work
    assert capsys.readouterr().out == printed
    with open(benchmarks / "math500" / "test.jsonl", "a") as handle:
        handle.write(json.dumps({"problem": "nine?", "answer": "9"}) + "\n")
    with pytest.raises(RunError, match=r"input contents \(data_dir changed since\)"):
        run()
    assert run(overwrite=True)["benchmarks"]["math500"]["problems"] == 3
    manifest = json.loads((output / "math500" / "generate" / "manifest.json").read_text())
    assert manifest["problems"] == "math500"  # the benchmark's generate run names what it ran
    capsys.readouterr()
    model = tmp_path / "local-model"  # a local model folder is fingerprinted by content like the data
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = EvalConfig(benchmarks=("math500",), output=str(tmp_path / "local"), data_dir=str(benchmarks), samples=1)
    evaluate(config, EngineConfig(model=str(model)), engine=engine, quiet=True)
    assert capsys.readouterr().out == ""  # quiet prints nothing
    (model / "config.json").write_text('{"changed": true}')
    with pytest.raises(RunError, match=r"input contents \(model changed since\)"):
        evaluate(config, EngineConfig(model=str(model)), engine=engine, quiet=True)
    with pytest.raises(RunError, match=r"--output .*/data/eval lies inside --data-dir .*/data; choose another"):
        evaluate(EvalConfig(benchmarks=("math500",), output=str(benchmarks / "eval"), data_dir=str(benchmarks)))


def test_the_organism_benchmark_follows_the_seed(tmp_path, organism_engine):
    from retrosearch.stages.eval import load_benchmark

    first, _ = load_benchmark("organism", None, 5, seed=0)
    other, _ = load_benchmark("organism", None, 5, seed=1)
    assert [p.id for p in first] != [p.id for p in other]
    config = EvalConfig(output=str(tmp_path / "e"), limit=5, samples=1, sampling=SamplingConfig(seed=1))
    engine = ScriptedEngine(lambda prompt, seed: [RIGHT_5])
    engine.chat_prompt = organism_engine.chat_prompt  # type: ignore[method-assign]
    evaluate(config, EngineConfig(model="organism"), engine=engine, quiet=True)
    asked = {seen.prompt for seen in engine.seen}
    assert asked == {organism_engine.chat_prompt(problem.problem) for problem in other}


def test_eval_settings_gold_answers_and_benchmark_names_exactly(tmp_path, monkeypatch):
    from retrosearch.stages import eval as stage
    from retrosearch.stages.eval import BENCHMARKS, expand, gold_answer, results_table, score

    for bad in (dict(samples=0), dict(limit=0)):
        with pytest.raises(ValueError):
            EvalConfig(**bad)
    EvalConfig(samples=1, limit=1)
    assert gold_answer("gsm8k", "so 6 #### 1,234") == "1234"
    assert gold_answer("gsm8k", "a #### b #### 1 000") == "1 000"  # all after the last ####, as written
    assert gold_answer("math500", "\\$32,\\!348") == "\\$32,\\!348"  # only GSM8K's answers lose their commas
    assert gold_answer("olympiadbench", ["$1$", "$2$"]) == "1, 2"
    assert expand(["all"]) == list(BENCHMARKS) and expand(["organism", "all", "organism"])[0] == "organism"
    with pytest.raises(ValueError, match=r"^unknown benchmark 'nope'; known: aime24, aime25, .*, organism, all$"):
        expand(["nope"])
    assert score([], 4) == {"avg@k": 0.0, "pass@k": 0.0}
    one = {"accuracy": 0.5, "pass@k": 1.0, "tokens_mean": 3.0, "switches_mean": 1.0, "truncated": 0, "skipped": {}}
    table = results_table("m", {"aime24": one}, 2)
    assert table.splitlines()[0] == "| m | accuracy (avg@2) | pass@2 | avg tokens | avg switches | truncated |"
    assert "| aime24 |" in table and "average" not in table  # one benchmark: no average row
    skipped = {**one, "skipped": {"longer than the context": 2, "other": 1}}
    assert results_table("m", {"aime24": skipped}, 2) == table + (
        "\naime24: 2 samples skipped (longer than the context), scored as wrong\n"
        "\naime24: 1 samples skipped (other), scored as wrong\n"
    )
    older = {key: value for key, value in one.items() if key != "skipped"}  # a finished run of an older version
    assert results_table("m", {"aime24": older}, 2) == table

    # each benchmark's own fields, even where a row has the others' too; gold left out when empty
    data = tmp_path / "data"
    rows = [
        {"question": "Q1", "problem": "P1", "answer": "1", "final_answer": ["$9$"]},
        {"question": "Q2", "problem": "P2", "answer": "", "final_answer": []},
        {"question": "Q3", "problem": "P3", "answer": None, "final_answer": None},
        {"question": "Q4", "problem": "P4", "answer": "  ", "final_answer": ["  "]},
        {"question": "Q5", "problem": "P5", "answer": "5", "final_answer": ["$5$"]},
    ]
    for name in ("amc23", "olympiadbench"):
        (data / name).mkdir(parents=True)
        (data / name / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (data / "gsm8k").mkdir()
    (data / "gsm8k" / "test.jsonl").write_text(json.dumps({"question": "Q", "answer": "so #### 1,234"}) + "\n")
    amc, left_out = load_benchmark("amc23", str(data), None)
    assert [(p.problem, p.gold) for p in amc] == [("Q1", "1"), ("Q5", "5")] and left_out == 3  # no gold: left out
    olympiad, left_out = load_benchmark("olympiadbench", str(data), 1)
    assert [(p.problem, p.gold) for p in olympiad] == [("Q1", "9")] and left_out == 3  # --limit after leaving out
    assert [p.gold for p in load_benchmark("gsm8k", str(data), None)[0]] == ["1234"]
    assert load_benchmark("organism", None, 3)[1] == 0 and len(load_benchmark("organism", None, 3)[0]) == 3
    assert load_benchmark("organism", None, 3)[0] == load_benchmark("organism", None, 3, seed=0)[0]
    asked = []
    monkeypatch.setattr(stage, "read_problems", lambda source, *args, **kwargs: asked.append(source) or [])
    load_benchmark("math500", None, None)
    assert asked == ["HuggingFaceH4/MATH-500:test"]  # no --data-dir: the hub


def test_figures_of_a_benchmark_whose_every_sample_was_skipped():
    from retrosearch.stages.eval import summarize_samples
    from retrosearch.stages.generate import SampleRow

    rows = [
        SampleRow(f"p#{k}", "p", k, "p", "1", "", None, False, False, 0, 0, "longer than the context", {"context": 8})
        for k in range(2)
    ]
    summary = summarize_samples(rows, 2)
    assert (summary["accuracy"], summary["tokens_mean"], summary["switches_mean"]) == (0.0, 0.0, 0.0)
    assert summary["skipped"] == {"longer than the context": 2}
