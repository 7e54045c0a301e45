"""Banned starts inside vLLM: a logits processor that vLLM loads in its engine process (vLLM is imported here).

A request names its banned words in `SamplingParams.extra_args`; until its text can no longer open one of them,
the processor masks the tokens that would (the transformers engine's rule, from the same `StartBans`). The
switch-suppressed step is then one request instead of one call per masked token.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from retrosearch.engines.banning import BANNED_STARTS, StartBans


class BannedStarts(AdapterLogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        super().__init__(vllm_config, device, is_pin_memory)
        model = vllm_config.model_config
        self.tokenizer = AutoTokenizer.from_pretrained(model.tokenizer, revision=model.tokenizer_revision)
        self.bans = StartBans(self.tokenizer)

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params) -> Callable[[list[int], torch.Tensor], torch.Tensor] | None:
        words = (params.extra_args or {}).get(BANNED_STARTS)
        if not words:
            return None
        ban, decided = self.bans(tuple(words)), False

        def mask(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            nonlocal decided
            if decided:
                return logits
            state = ban.state(self.tokenizer.decode(output_ids))
            if state is None:
                decided = True
            elif banned := ban.banned_ids(state):
                logits[banned] = float("-inf")
            return logits

        return mask
