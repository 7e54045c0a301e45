"""A small random-weight Llama with a byte-level BPE tokenizer trained here: SmolLM2's twin for the engine logic
its tests guard (BPE merges across a join, a chat template, grouped-query attention in the KV cache), built in
seconds from nothing but transformers and tokenizers, so those tests never skip."""

from __future__ import annotations

import hashlib
from pathlib import Path

from retrosearch._fixtures.cache import built_once, cache_root

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    """Text with the words traces use: switch keywords, numbers, markers, answers."""
    lines = []
    for k in range(1, 200):
        lines.append(f"Wait, {k} + {k} = {2 * k}. Alternatively, {k} * 3 = {3 * k}. Hmm, check {k} again.")
        lines.append(f"<think>\nTry {k}.\n\nSo x = {k}.\n</think>\n\nThe answer is \\boxed{{{k}}}.")
        lines.append(f"Double the numbers. What is {k} + {k + 1}? Think step by step about problem {k}.")
    return lines


def byte_level_bpe(texts: list[str], vocab_size: int, special_tokens: list[str], unk_token: str | None = None):
    """A byte-level BPE (GPT-2's kind, as SmolLM2, Qwen and Llama 3 use) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token=unk_token))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer)
    return bpe


def build_tiny_llama(folder: Path, vocab_size: int = 600, positions: int = 8192) -> Path:
    """Write the model's Hugging Face folder (config, weights, tokenizer with a ChatML template) and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(corpus(), vocab_size, SPECIAL),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as SmolLM2 has
        max_position_embeddings=positions,
        initializer_range=0.6,  # peaked next-token distributions: samples repeat, as a trained model's do
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llama_folder() -> Path:
    """The twin's folder, built once per machine and version of this file (2 s a build; mutation testing runs
    each mutant in a fresh process), in the cache SmolLM2's folder uses."""
    version = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return built_once(cache_root() / f"tiny-llama-{version}", build_tiny_llama)
