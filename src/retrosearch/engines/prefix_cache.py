"""Prompt KV caches kept after their prefill, so that a later prompt sharing a prefix prefills only the rest.

Retro-Search asks for many prompts that share a long prefix: the rollouts of one switch share their whole prompt,
and the next switch's prompt extends this one's. Entries are one row's per-layer keys and values; the least
recently used go first once the cache holds more than its budget of bytes. A prompt that extends a cached one
replaces it (the longer entry serves every prompt the shorter one did).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import psutil
import torch

Layers = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of shape (1, heads, length, head_dim)


DEFAULT_MB = 1024


def default_budget_bytes(device: torch.device) -> int:
    """DEFAULT_MB, or an eighth of the memory the device has free now where that is less (a laptop, a full GPU)."""
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else psutil.virtual_memory().available
    return min(DEFAULT_MB << 20, free // 8)


def common_length(first: np.ndarray, second: np.ndarray) -> int:
    """How many leading ids two id arrays share."""
    length = min(len(first), len(second))
    differ = np.flatnonzero(first[:length] != second[:length])
    return int(differ[0]) if len(differ) else length


class PrefixCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[int, tuple[np.ndarray, Layers, int]] = OrderedDict()
        self._keys = 0
        self.bytes = 0

    def longest(self, prompt_ids: Sequence[int]) -> tuple[int, Layers]:
        """The most leading tokens of the prompt some entry holds (at most all but the last, whose logits the
        caller needs), with that entry's layers (longer than that: the caller slices)."""
        if not self._entries:
            return 0, []
        prompt = np.asarray(prompt_ids, dtype=np.int64)
        best, best_key = 0, None
        for key, (ids, _, _) in self._entries.items():
            shared = common_length(ids, prompt)
            if shared > best:
                best, best_key = shared, key
        best = min(best, len(prompt) - 1)
        if best_key is None or best <= 0:
            return 0, []
        self._entries.move_to_end(best_key)
        return best, self._entries[best_key][1]

    def add(self, prompt_ids: Sequence[int], layers: Layers) -> None:
        if self.budget_bytes <= 0:
            return
        ids = np.asarray(prompt_ids, dtype=np.int64)
        # an entry's tensors may be views of a larger buffer (a row's, kv.py): what counts is what they keep alive
        size = sum(keys.untyped_storage().nbytes() + values.untyped_storage().nbytes() for keys, values in layers)
        if size > self.budget_bytes:
            return
        for key, (held, _, held_size) in list(self._entries.items()):
            if len(held) <= len(ids) and common_length(held, ids) == len(held):
                del self._entries[key]
                self.bytes -= held_size
        self._keys += 1
        self._entries[self._keys] = (ids, layers, size)
        self.bytes += size
        while self.bytes > self.budget_bytes:
            _, (_, _, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped
