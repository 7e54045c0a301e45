"""Seeds as independence: each sample of each problem draws with its own seed, and the same (seed, problem,
sample) draws the same text again, whatever the batch, engine or executor (Ray: test_ray.py)."""

import json

import pytest
from scripted import ScriptedEngine

from retrosearch.engines import EngineConfig, SamplingConfig
from retrosearch.stages.eval import EvalConfig, evaluate
from retrosearch.stages.generate import GenerateConfig, generate

RIGHT = "<think>\nIt is 5.\n</think>\n\nSo \\boxed{5}."
WRONG = "<think>\nIt is 4.\n</think>\n\nSo \\boxed{4}."


def coin(prompt: str, seed: int) -> list[str]:
    """A model that is right on half of its seeds: what a sample says depends on its seed alone."""
    return [RIGHT if seed % 2 else WRONG]


def test_every_sample_of_every_problem_has_its_own_seed_and_pass_at_k_sees_it(tmp_path):
    problems = tmp_path / "problems"
    (problems / "math500").mkdir(parents=True)
    rows = [json.dumps({"problem": f"problem {n}?", "answer": "5"}) for n in range(12)]
    (problems / "math500" / "test.jsonl").write_text("\n".join(rows) + "\n")

    def seeds_of_a_run(folder: str, seed: int = 0) -> tuple[list[int], dict]:
        engine = ScriptedEngine(coin)
        config = EvalConfig(
            benchmarks=("math500",),
            output=str(tmp_path / folder),
            data_dir=str(problems),
            samples=4,
            sampling=SamplingConfig(seed=seed),
        )
        result = evaluate(config, EngineConfig(model="scripted"), engine=engine, quiet=True)
        return [seen.request.seed for seen in engine.seen], result["benchmarks"]["math500"]

    seeds, result = seeds_of_a_run("eval")
    assert len(seeds) == 48 and len(set(seeds)) == 48  # 12 problems x 4 samples, no two alike
    # with one seed per problem every problem would be all right or all wrong, and pass@4 would equal avg@4
    assert result["pass@k"] > result["accuracy"] > 0
    assert sorted(seeds_of_a_run("again")[0]) == sorted(seeds)  # the same run draws the same seeds
    assert not set(seeds_of_a_run("seed1", seed=1)[0]) & set(seeds)  # another --seed draws anew


@pytest.mark.parametrize("concurrency", [1, 16])
def test_organism_samples_differ_within_and_across_problems_and_reproduce(tmp_path, organism_engine, concurrency):
    from retrosearch.executors import ExecutorConfig

    def texts(folder: str, seed: int = 0) -> dict[str, str]:
        config = GenerateConfig(
            output=str(tmp_path / folder),
            limit=3,
            samples=3,
            sampling=SamplingConfig(seed=seed, max_new_tokens=120),
        )
        generate(config, EngineConfig(model="organism"), ExecutorConfig(concurrency=concurrency), organism_engine, True)
        rows = [json.loads(line) for line in (tmp_path / folder / "samples.jsonl").open()]
        return {row["id"]: row["response"] for row in rows}

    first = texts("a")
    assert len(first) == 9 and len(set(first.values())) == 9  # within a problem and across problems
    assert texts("b") == first  # the same (seed, problem, sample): the same text, whatever the batch
    assert not set(texts("c", seed=1).values()) & set(first.values())  # another --seed: other problems and draws
