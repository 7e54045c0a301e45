"""On a real small model (SmolLM2-135M-Instruct: byte-level BPE, ChatML template, 8,192 positions), what the
organism's word-level tokenizer cannot show: the packaged model is what we load, banned starts hold under BPE,
and `revise` of real traces completes through the prompt join with a system prompt. The last two also run on
SmolLM2's twin (tests/tiny_llama.py), which needs no package: they never go untested."""

import asyncio
import json
from collections import Counter

from retrosearch.cli import main
from retrosearch.engines import Request
from retrosearch.prompting import joined_ids
from retrosearch.trace import KeywordMatcher


def test_the_built_folder_is_the_packaged_model(smollm2, smollm2_engine):
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM

    from retrosearch._fixtures.smollm2 import GGUF, PACKAGE

    source = importlib.util.find_spec(PACKAGE).submodule_search_locations[0]
    packaged = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32)
    ids = torch.tensor([smollm2_engine.encode(smollm2_engine.chat_prompt("What is 2 + 3?"))])
    with torch.no_grad():
        assert torch.equal(packaged(ids).logits, smollm2_engine.model(ids).logits)
    assert smollm2_engine.context_length == 8192
    assert smollm2_engine.chat_prompt("Hi").endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_a_banned_start_holds_under_bpe(bpe_engine):
    engine = bpe_engine
    trace = "<|begin_of_thought|>\n\n" + "".join(f"Wait, {k} + {k} = {2 * k}.\n\n" for k in range(1, 9))
    ids = joined_ids(engine.encode, engine.chat_prompt("Double the numbers."), trace)

    def openings(banned: tuple[str, ...]) -> list[str]:
        requests = [Request(ids, 8, seed=seed, stop=("\n\n",), banned_starts=banned) for seed in range(16)]
        return [completion.text for completion in asyncio.run(engine.generate(requests))]

    free = openings(())
    first_words = Counter(text.split()[0] for text in free if text.split())
    word, count = first_words.most_common(1)[0]  # what the model starts with when nothing is banned
    assert count >= 2
    banned = openings((word,))
    assert not [text for text in banned if KeywordMatcher((word,)).match(text)], (word, banned)


def test_revise_of_real_traces_completes_with_a_system_prompt(bpe_model, shared_traces, tmp_path, capsys):
    source = next(path for path in shared_traces if "math500" in path.name)
    out = tmp_path / "run"
    command = ["revise", "--input", str(source), "--limit", "4", "--model", str(bpe_model), "--device", "cpu"]
    command += ["--max-new-tokens", "24", "--batch-size", "16", "--output", str(out)]
    assert main([*command, "--system-prompt", "Think step by step."]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 4 and summary["errors"] == 0 and summary["rollouts"] > 0
    rows = [json.loads(line) for line in (out / "revised.jsonl").read_text().splitlines()]
    assert all(row["record"]["code"] == [row["revised"]] for row in rows)  # written back in the input's layout
