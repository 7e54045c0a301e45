"""The organism's network: a tiny Llama, saved like any hub checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from retrosearch.organism import MAX_NEW_TOKENS


@dataclass(frozen=True)
class ModelSize:
    hidden: int = 128
    layers: int = 3
    heads: int = 4  # head dimension 32: vLLM's CPU attention takes 32, 64, 80, ... (not 24)
    intermediate: int = 384
    max_positions: int = 1024


def build_model(tokenizer: PreTrainedTokenizerBase, size: ModelSize = ModelSize()) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=size.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.6,
        top_p=0.95,
        max_new_tokens=MAX_NEW_TOKENS,
    )
    return model
