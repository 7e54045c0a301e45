"""The running batch's KV cache: each row's keys and values in buffers of its own, attended to row by row.

A batch that shares one buffer must make every row as wide as the longest: on real traces (prompts of 0.5k-4k
tokens) most of such a buffer is padding, and attention reads all of it at every step. Here a row holds one
buffer per layer, as long as its own tokens plus a little room (`room_after`); a decoding step writes each row's
new keys and values after its last column, and `row_attention` attends each row to its own columns only. Memory
follows the tokens in flight, a row that leaves frees its buffers at once, and a row's result does not depend on
the rows beside it.

`row_attention` is registered with transformers under ROW_ATTENTION; for anything but this cache (a prompt's
prefill) it is transformers' own SDPA attention.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from retrosearch.engines.prefix_cache import Layers

ROW_ATTENTION = "retrosearch_rows"
GROWTH = 64  # the least room a row's buffers are made with, in columns


def room_after(columns: int) -> int:
    """Spare columns a buffer holding `columns` is made with: an eighth more, so that growing costs few copies."""
    return max(GROWTH, columns // 8)


class RowKV:
    """One row's keys and values, per layer: buffers of shape (1, heads, capacity, head_dim), the first `length`
    columns in use."""

    def __init__(self, layers: Layers, length: int) -> None:
        self.length = length
        self.buffers = [(_moved(keys, length, length), _moved(values, length, length)) for keys, values in layers]

    @property
    def capacity(self) -> int:
        return self.buffers[0][0].shape[2]

    def reserve(self, columns: int) -> None:
        """Room for `columns` more columns after `length` (made anew, with an eighth to spare, when lacking)."""
        needed = self.length + columns
        if needed > self.capacity:
            self.buffers = [
                (_moved(keys, self.length, needed), _moved(values, self.length, needed))
                for keys, values in self.buffers
            ]

    def prefix(self, length: int) -> Layers:
        """Views of the first `length` columns of every layer (sharing this row's buffers)."""
        return [(keys[:, :, :length], values[:, :, :length]) for keys, values in self.buffers]


def _moved(buffer: torch.Tensor, used: int, needed: int) -> torch.Tensor:
    """A buffer of room for `needed` columns (and room_after them) holding the first `used` columns of `buffer`."""
    heads, _, head_dim = buffer.shape[1:]
    new = buffer.new_empty((1, heads, needed + room_after(needed), head_dim))  # never read past a row's length
    new[:, :, :used] = buffer[:, :, :used]
    return new


class RowsLayer(DynamicLayer):
    """The model's view of one layer of a RowsCache: `update` writes each row's new keys and values after its last
    column (room reserved before the step) and returns, per row, the columns it attends to."""

    def __init__(self, owner: RowsCache, index: int) -> None:
        super().__init__()
        self.owner, self.index = owner, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, added = self.owner.rows, key_states.shape[-2]
        keys = [row.buffers[self.index][0] for row in rows]
        values = [row.buffers[self.index][1] for row in rows]
        # one call writes every row (a per-row copy costs more in dispatch than in bytes on small models)
        torch._foreach_copy_(
            [buffer.narrow(2, row.length, added) for buffer, row in zip(keys + values, rows + rows, strict=True)],
            [*key_states.split(1), *value_states.split(1)],
        )
        return (
            [buffer.narrow(2, 0, row.length + added) for buffer, row in zip(keys, rows, strict=True)],
            [buffer.narrow(2, 0, row.length + added) for buffer, row in zip(values, rows, strict=True)],
        )

    def get_seq_length(self) -> int:
        return max((row.length for row in self.owner.rows), default=0)

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0


class RowsCache:
    """A decoding step's cache over the rows in `rows` (set before each step, in the batch's order)."""

    def __init__(self, layers: int) -> None:
        self.rows: list[RowKV] = []
        self.cache = Cache(layers=[RowsLayer(self, index) for index in range(layers)])


def row_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor | list[torch.Tensor],
    value: torch.Tensor | list[torch.Tensor],
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attention of each row's one new token to that row's own columns (a RowsCache step: `key` and `value` are
    per-row lists); anything else goes to transformers' SDPA attention unchanged."""
    if not isinstance(key, list):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    rows, heads, _, head_dim = query.shape
    key_heads = key[0].shape[1]
    # a row's query heads as queries of its key heads (grouped-query attention without repeating keys)
    grouped = query.reshape(rows, key_heads, heads // key_heads, head_dim)
    attend = torch.nn.functional.scaled_dot_product_attention
    outputs = [
        attend(row_query, row_keys, row_values, scale=scaling)
        for row_query, row_keys, row_values in zip(grouped.split(1), key, value, strict=True)
    ]
    return torch.cat(outputs).reshape(rows, 1, heads, head_dim), None


AttentionInterface.register(ROW_ATTENTION, row_attention)
AttentionMaskInterface.register(ROW_ATTENTION, sdpa_mask)
