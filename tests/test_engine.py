import asyncio
import itertools

import pytest
import torch
from tiny_llama import byte_level_bpe
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

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
