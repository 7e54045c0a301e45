import asyncio
import itertools
import threading
from types import SimpleNamespace

import pytest
import torch
from tiny_llama import byte_level_bpe
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from retrosearch.engines import prefix_cache
from retrosearch.engines.banning import StartBan, token_texts
from retrosearch.engines.base import Request
from retrosearch.engines.transformers_engine import TransformersEngine
from retrosearch.organism.tokenizer import build_tokenizer
from retrosearch.trace import DEFAULT_KEYWORDS

CORPUS = [
    "we compute the sum of the numbers and then check it again",
    "so the answer is seven and we are done with this problem",
    "let me think about the next step carefully before going on",
    "Alternatively we could try another value for x",
    "Wait that is not right",
    "Hmm maybe the other one works better",
] * 20


def bpe_tokenizer() -> PreTrainedTokenizerFast:
    core = byte_level_bpe(CORPUS, 330, ["<pad>", "</s>", "<unk>"], unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


class KeywordLover(torch.nn.Module):
    """A real tiny Llama whose logits prefer to spell out the transition keywords, token by token."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        self.inner = LlamaForCausalLM(config)
        self.config = config
        self.generation_config = self.inner.generation_config
        self.start = torch.zeros(len(tokenizer))
        self.follow = torch.zeros(len(tokenizer), len(tokenizer))
        for keyword in DEFAULT_KEYWORDS:
            for variant in (keyword, " " + keyword, keyword.lower(), "\n" + keyword):
                ids = tokenizer(variant, add_special_tokens=False)["input_ids"]
                self.start[ids[0]] = 12.0
                for previous, following in itertools.pairwise(ids):
                    self.follow[previous, following] = 30.0
                for boundary in (",", " the"):  # a whole word: what the parser counts as a switch
                    self.follow[ids[-1], tokenizer(boundary, add_special_tokens=False)["input_ids"][0]] = 30.0

    def set_attn_implementation(self, implementation: str) -> None:
        self.inner.set_attn_implementation(implementation)

    def forward(self, input_ids, cache=None, **kwargs):
        output = self.inner(input_ids=input_ids, past_key_values=cache, **kwargs)
        output.logits = output.logits + self.start + self.follow[input_ids[:, -1]].unsqueeze(1)
        return output


@pytest.mark.parametrize("make_tokenizer", [build_tokenizer, bpe_tokenizer], ids=["organism", "bpe"])
def test_no_completion_starts_with_a_banned_keyword(make_tokenizer):
    tokenizer = make_tokenizer()
    if make_tokenizer is bpe_tokenizer:  # the point of this tokenizer: keywords take several tokens
        assert len(tokenizer("Alternatively", add_special_tokens=False)["input_ids"]) > 1
    engine = TransformersEngine(KeywordLover(tokenizer), tokenizer, max_batch_size=64)
    prompt = tuple(tokenizer("so the answer is\n\n", add_special_tokens=False)["input_ids"])
    ban = StartBan(token_texts(tokenizer), DEFAULT_KEYWORDS)

    def sample(banned: tuple[str, ...]) -> list[str]:
        requests = [
            Request(prompt, max_new_tokens=16, temperature=1.0, top_p=1.0, seed=s, banned_starts=banned)
            for s in range(160)
        ]
        return [c.text for c in engine.run_batch(requests)]

    free = sample(())
    assert sum(ban.violates(text) for text in free) >= 10  # the test can fail: the model loves keywords
    suppressed = sample(DEFAULT_KEYWORDS)
    assert not [text for text in suppressed if ban.violates(text)]
    assert len(set(suppressed)) > 20


def test_start_ban_tracks_multi_token_and_whitespace_variants():
    texts = ["\n", " ", "**", "Al", "tern", "atively", " Wait", "wa", "it", "ok", "But", " wait", "Wa"]
    ban = StartBan(texts, ["Alternatively", "Wait", "But wait"])
    banned = lambda state: {texts[i] for i in ban.banned_ids(state)}  # noqa: E731
    assert banned(ban.state("")) == {" Wait", " wait"}
    assert ban.state("\n**Al") == "al"
    assert banned("altern") == {"atively"}
    assert banned("wa") == {"it"}
    assert banned("but") == {" wait", " Wait"}
    assert ban.state("ok then") is None


def test_a_row_depends_on_its_request_alone(organism_engine):
    engine = organism_engine
    prompt = tuple(engine.encode(engine.chat_prompt("find the digit x : x + 3 then * 7 then + 2 gives 5")))
    other = tuple(engine.encode(engine.chat_prompt("find the digit x : x * 3 gives 1")))
    request = Request(prompt, max_new_tokens=120, seed=7)
    alone = engine.run_batch([request])[0]
    crowded = engine.run_batch([Request(other, 50, seed=1), request, Request(other, 200, seed=2)])[1]
    assert alone == crowded
    assert asyncio.run(engine.generate([request]))[0] == alone


def test_stops_limits_and_lengths(organism_engine):
    engine = organism_engine
    prompt = tuple(engine.encode(engine.chat_prompt("find the digit x : x + 3 then * 7 then + 2 gives 5")))
    stopped = engine.run_batch([Request(prompt, 300, seed=0, stop=("\n\n",))])[0]
    assert stopped.finish_reason == "stop" and stopped.text.count("\n\n") == 1
    limited = engine.run_batch([Request(prompt, 300, seed=0, occurrence_limit=("\n\n", 3, None))])[0]
    assert limited.finish_reason == "limit" and limited.text.count("\n\n") == 3
    short = engine.run_batch([Request(prompt, 5, seed=0)])[0]
    assert short.finish_reason == "length" and len(short.token_ids) == 5
    assert engine.tokenizer.decode(list(short.token_ids)) == short.text


def test_from_pretrained_pins_the_revision_of_both_halves_and_places_the_model(organism_engine, monkeypatch):
    """A revision pins the tokenizer and the weights alike (a run's fingerprint records it), the dtype reaches the
    loader, the model goes to the device asked for (CUDA where there is one and none was named), and the CLI's
    defaults are the API's."""
    from retrosearch.engines import EngineConfig
    from retrosearch.engines import transformers_engine as module

    calls: dict[str, object] = {}

    class Loaded:
        def to(self, device):
            calls["device"] = device
            return organism_engine.model

    def tokenizer_loader(model_id, **kwargs):
        calls["tokenizer"] = (model_id, kwargs)
        return organism_engine.tokenizer

    def model_loader(model_id, **kwargs):
        calls["model"] = (model_id, kwargs)
        return Loaded()

    monkeypatch.setattr(module.AutoTokenizer, "from_pretrained", tokenizer_loader)
    monkeypatch.setattr(module.AutoModelForCausalLM, "from_pretrained", model_loader)
    monkeypatch.setattr(module.torch.cuda, "is_available", lambda: True)
    engine = TransformersEngine.from_pretrained(
        "org/model", revision="abc123", device="cpu", dtype="bfloat16", max_batch_size=5, prefix_cache_mb=3
    )
    assert calls == {
        "tokenizer": ("org/model", {"revision": "abc123"}),
        "model": ("org/model", {"revision": "abc123", "dtype": "bfloat16"}),
        "device": "cpu",
    }
    assert (engine.model_id, engine.max_batch_size, engine.prefix_cache.budget_bytes) == ("org/model", 5, 3 << 20)

    plenty = SimpleNamespace(available=64 << 30)  # free memory over 8 GiB: the default budget is DEFAULT_MB
    monkeypatch.setattr(prefix_cache.psutil, "virtual_memory", lambda: plenty)
    engine = TransformersEngine.from_pretrained("org/model")
    assert calls["device"] == "cuda" and calls["model"] == ("org/model", {"revision": None, "dtype": "auto"})
    defaults = EngineConfig()
    assert defaults.prefix_cache_mb is None
    assert (engine.max_batch_size, engine.prefix_cache.budget_bytes) == (
        defaults.batch_size,
        prefix_cache.DEFAULT_MB << 20,
    )
    monkeypatch.setattr(module.torch.cuda, "is_available", lambda: False)
    TransformersEngine.from_pretrained("org/model")
    assert calls["device"] == "cpu"


def test_the_decoding_thread_never_keeps_the_process_alive(organism_engine):
    """The engine decodes on a daemon thread named for it: a command that returns (or is interrupted) exits
    without waiting on a worker blocked on its queue."""
    prompt = tuple(organism_engine.encode(organism_engine.chat_prompt("find the digit x : x * 3 gives 1")))
    asyncio.run(organism_engine.generate([Request(prompt, 4, temperature=0.0)]))
    workers = [thread for thread in threading.enumerate() if thread.name == "retrosearch-engine"]
    assert workers and all(thread.daemon for thread in workers)


def test_what_the_engine_reads_off_the_model_and_tokenizer(organism_engine, monkeypatch):
    """Its id and revision (a run's fingerprint), padding, end-of-sequence ids and context length."""
    from copy import deepcopy

    from retrosearch.engines import EngineConfig

    monkeypatch.setattr(prefix_cache.psutil, "virtual_memory", lambda: SimpleNamespace(available=64 << 30))
    model, tokenizer = deepcopy(organism_engine.model), deepcopy(organism_engine.tokenizer)
    model.name_or_path = "/models/organism"
    model.config._commit_hash = "0123abc"
    engine = TransformersEngine(model, tokenizer)
    assert (engine.model_id, engine.revision) == ("/models/organism", "0123abc")
    assert (engine.max_batch_size, engine.prefix_cache.budget_bytes) == (
        EngineConfig().batch_size,
        prefix_cache.DEFAULT_MB << 20,
    )
    assert engine.model_id == TransformersEngine(model, tokenizer, model_id="").model_id
    assert TransformersEngine(model, tokenizer, model_id="named").model_id == "named"
    assert engine.max_length == engine.context_length == model.config.max_position_embeddings
    assert engine.device == torch.device("cpu")
    assert engine.pad_id == tokenizer.pad_token_id != tokenizer.eos_token_id
    assert engine.eos_ids == {model.generation_config.eos_token_id}

    model.generation_config.eos_token_id = [tokenizer.eos_token_id, 3]
    assert TransformersEngine(model, tokenizer).eos_ids == {tokenizer.eos_token_id, 3}
    model.generation_config.eos_token_id = None
    assert TransformersEngine(model, tokenizer).eos_ids == {tokenizer.eos_token_id}
    model.generation_config = None
    assert TransformersEngine(model, tokenizer).eos_ids == {tokenizer.eos_token_id}
    tokenizer.pad_token = None
    assert TransformersEngine(model, tokenizer).pad_id == tokenizer.eos_token_id
    del model.name_or_path
    assert TransformersEngine(model, tokenizer).model_id == ""


def test_a_failed_request_raises_in_its_caller_and_a_cancelled_one_stops_decoding(organism_engine, tiny_llama):
    prompt = tuple(organism_engine.encode(organism_engine.chat_prompt("find the digit x : x * 3 gives 1")))
    broken = (*prompt, organism_engine.model.config.vocab_size + 5)  # no such token: the embedding lookup fails
    with pytest.raises(IndexError):
        asyncio.run(organism_engine.generate([Request(broken, 8, seed=1)]))

    from retrosearch.engines import EngineConfig, load_engine

    engine = load_engine(EngineConfig(model=str(tiny_llama), device="cpu"))  # random weights: no early end

    async def cancel_after_a_few_tokens() -> tuple[int, int]:
        task = asyncio.create_task(engine.generate([Request((1, 2, 3), 4000, seed=1)]))
        while engine.generated_tokens < 5:
            await asyncio.sleep(0.005)
        task.cancel()
        await asyncio.sleep(0.3)  # the row leaves at the next step, milliseconds away
        left_at = engine.generated_tokens
        await asyncio.sleep(0.3)
        return left_at, engine.generated_tokens

    left_at, later = asyncio.run(cancel_after_a_few_tokens())
    assert left_at == later < 4000


def test_streamed_text_never_shows_half_a_character_and_ends_as_the_whole_decode(tiny_llama):
    """Byte-level BPE splits a multi-byte character over tokens: the growing text waits for the whole character
    (no U+FFFD), and at every point is a prefix of the final decode."""
    from transformers import AutoTokenizer

    from retrosearch.engines.transformers_engine import IncrementalText

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    text = "Wait, 数学 ü é 🙂 = 7. Alternatively x = 3 ∑"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) > len(text) // 2  # rare characters come in bytes, several tokens each
    stream = IncrementalText(tokenizer)
    seen = []
    for token in ids:
        stream.append(token)
        assert "\ufffd" not in stream.text
        assert text.startswith(stream.text)
        seen.append(stream.text)
    assert stream.text == stream.final() == text
    assert len(set(seen)) < len(seen)  # some tokens added no whole character at once
