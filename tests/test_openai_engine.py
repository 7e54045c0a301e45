"""The OpenAI-compatible engine against a real server on loopback: `transformers serve` with the organism."""

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
from commands import command_env, revise_command
from servers import FaultProxy, OrganismServer

from retrosearch.engines import EngineConfig, SamplingConfig, load_engine
from retrosearch.engines.base import Request
from retrosearch.engines.watch import finish, limit_end, stop_end
from retrosearch.organism import checkpoint_path
from retrosearch.search.retro_search import RetroSearchConfig
from retrosearch.stages.revise import ReviseConfig, revise
from retrosearch.trace import DEFAULT_KEYWORDS, KeywordMatcher, parse

# one switch at a time: the request counts below hold no rollouts started ahead and then cancelled
SEARCH = RetroSearchConfig(sampling=SamplingConfig(max_new_tokens=400), lookahead=1)
pytest.importorskip("fastapi", reason="`transformers serve` needs transformers[serving] (in the dev extras)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = OrganismServer(str(checkpoint_path()), log=tmp_path_factory.mktemp("serve") / "serve.log")
    server.start()
    yield server
    server.kill()


def engine_for(url: str, retries: int = 12, **settings):
    return load_engine(
        EngineConfig(engine="openai", base_url=url, ban_method="generation_config", retries=retries, **settings)
    )


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "revised.jsonl").read_text().splitlines()]


def input_ids(path: Path, limit: int) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()[:limit]]


def test_stop_strings_and_limits_cut_the_text_right_after_the_match():
    assert stop_end("a\n\nb\n\nc", ("\n\n",)) == 3
    assert stop_end("abc", ("\n\n",)) is None
    assert limit_end("x\n\ny\n\nz\n\n</think>\n\nw", ("\n\n", 2, "</think>")) == 6
    assert limit_end("x\n\n</think>\n\n\n\n", ("\n\n", 2, "</think>")) is None
    request = Request(prompt_ids=(1,), max_new_tokens=5, stop=("END",), occurrence_limit=("\n\n", 1, None))
    assert finish(request, "ab END cd\n\n") == ("stop", 6)
    assert finish(request, "ab\n\ncd") == ("limit", 4)


def test_revise_through_transformers_serve(server, teacher_file, tmp_path):
    engine = engine_for(server.url)
    ban = DEFAULT_KEYWORDS
    completions = asyncio.run(
        engine.generate(
            [
                Request(
                    prompt_ids=tuple(engine.encode("<|user|>x<|assistant|><think>\n\n")),
                    max_new_tokens=8,
                    seed=s,
                    stop=("\n\n",),
                    banned_starts=ban,
                )
                for s in range(6)
            ]
        )
    )
    matcher = KeywordMatcher(ban)
    assert all(matcher.match(c.text) is None and c.finish_reason in ("stop", "eos", "length") for c in completions)
    summary = revise(
        ReviseConfig(input=str(teacher_file), output=str(tmp_path / "run"), limit=16), SEARCH, engine=engine, quiet=True
    )
    rows = rows_of(tmp_path / "run")
    assert [row["id"] for row in rows] == input_ids(teacher_file, 16)
    # which rows are searched does not depend on sampling: those whose teacher answer is correct (10 of 16)
    teacher = [json.loads(line) for line in teacher_file.read_text().splitlines()[:16]]
    assert [row["status"] == "skipped" for row in rows] == [not row["correct"] for row in teacher]
    assert summary["skipped"] == {"incorrect original answer": 6} and summary["revised"] + summary["unchanged"] == 10
    assert summary["errors"] == 0 and summary["revised"] >= 1  # the server seeds one global generator: no exact count
    # counted for this run alone (6 requests came before it): masked starts went token by token
    assert summary["rollouts"] <= summary["engine_requests"] <= 2 * summary["rollouts"]
    assert summary["engine_calls"] > summary["engine_requests"]
    for row in rows:
        if row["status"] == "revised":
            assert parse(row["revised"]).finished and row["tokens_after"] < row["tokens_before"]


def test_faults_between_client_and_server_lose_nothing(server, teacher_file, tmp_path):
    with FaultProxy(server.port) as proxy:
        # three connections in four fail, counted over all requests in flight: with the second organism's longer
        # rollouts one request met 12 faults in a row, so it may retry more here
        engine = engine_for(proxy.url, retries=40)
        engine.backoff, engine.max_backoff = 0.02, 0.5  # the waits between retries, not what this test is about
        summary = revise(
            ReviseConfig(input=str(teacher_file), output=str(tmp_path / "run"), limit=4),
            SEARCH,
            engine=engine,
            quiet=True,
        )
    rows = rows_of(tmp_path / "run")
    assert [row["id"] for row in rows] == input_ids(teacher_file, 4)
    assert summary["errors"] == 0, [row["reason"] for row in rows if row["status"] == "error"]
    assert proxy.faults >= 3 and summary["engine_retries"] >= 3


def test_server_killed_and_restarted_mid_run_loses_nothing(teacher_file, tmp_path):
    server = OrganismServer(str(checkpoint_path()), log=tmp_path / "serve.log")
    server.start()
    output = tmp_path / "run"
    command = revise_command(teacher_file, "--limit", "16", "--output", str(output), "--engine", "openai")
    command += ["--base-url", server.url, "--ban-method", "generation_config", "--retries", "12"]
    process = subprocess.Popen(
        command,
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if (output / "revised.jsonl").exists() and len((output / "revised.jsonl").read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before the server could be killed"
        server.kill()
        time.sleep(3.0)
        assert process.poll() is None, "the run went on without a server: kill it earlier or give it more work"
        server.start()
        _, stderr = process.communicate(timeout=600)
    finally:
        server.kill()
    assert process.returncode == 0, stderr[-2000:]
    rows = rows_of(output)
    assert [row["id"] for row in rows] == input_ids(teacher_file, 16)
    summary = json.loads((output / "summary.json").read_text())
    assert summary["errors"] == 0 and summary["engine_retries"] >= 1


def test_a_server_engine_knows_the_context_its_model_config_states(shared_tokenizer):
    from retrosearch.engines.openai_engine import _context_length

    assert _context_length(str(checkpoint_path()), None) == 1024
    assert _context_length(shared_tokenizer.name_or_path, None) is None  # a tokenizer alone: the server knows
