"""The running batch's KV cache: one buffer per layer, a slot (row) per request, written in place.

transformers' DynamicCache concatenates the whole cache at every token, copies it again whenever a row leaves
(`batch_select_indices`) and once more when rows join; with a long prompt per row, those copies, not the model,
took most of a CPU decoding step. Here rows are left aligned to a shared last column `end`: a decoding step writes
column `end` of every row, a new row's prompt is written into a free slot so that it ends at `end`, and a row
that leaves frees its slot without moving the others. The buffer is made anew, with spare columns on both sides,
when a step or a prompt needs room it lacks; `compact` drops freed slots when many are free.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class SlotLayer(DynamicLayer):
    """The model's view of one layer of a SlotCache: `update` writes new keys and values at the shared end
    column and returns the columns in use."""

    def __init__(self, owner: SlotCache, index: int) -> None:
        super().__init__()
        self.owner, self.index = owner, index
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        owner = self.owner
        keys, values = owner.buffers[self.index]
        rows, added = key_states.shape[0], key_states.shape[-2]
        keys[:rows, :, owner.end : owner.end + added] = key_states
        values[:rows, :, owner.end : owner.end + added] = value_states
        self.keys = keys[:rows, :, owner.start : owner.end + added]
        self.values = values[:rows, :, owner.start : owner.end + added]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.owner.end - self.owner.start

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0


MARGIN = 256  # the least room a resize leaves on either side, in columns


class SlotCache:
    def __init__(self, layers: list[tuple[torch.Tensor, torch.Tensor]], max_slots: int) -> None:
        """Shaped after the keys and values of one prefilled row (`layers`); slots grow up to `max_slots`."""
        self.buffers = [
            (
                keys.new_zeros((1, keys.shape[1], 2 * MARGIN, keys.shape[3])),
                values.new_zeros((1, values.shape[1], 2 * MARGIN, values.shape[3])),
            )
            for keys, values in layers
        ]
        self.start = self.end = MARGIN
        self.max_slots = max_slots
        self.cache = Cache(layers=[SlotLayer(self, index) for index in range(len(layers))])

    @property
    def capacity(self) -> int:
        return self.buffers[0][0].shape[2]

    @property
    def slots(self) -> int:
        return self.buffers[0][0].shape[0]

    def reserve(self, columns: int) -> None:
        """Room for `columns` more columns after `end` (the next step's)."""
        if self.end + columns > self.capacity:
            self._resize(self.slots, 0, columns)

    def advance(self, columns: int) -> None:
        """The columns a forward pass just wrote after `end` (reserved before it) are now in use."""
        self.end += columns

    def place(self, slot: int, layers: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> int:
        """Write one row's first `length` cached tokens into `slot`, ending at `end`; returns how many columns
        `start` moved left to make room (the caller widens its mask by as many)."""
        if slot >= self.slots or self.end - length < 0:
            slots = self.slots if slot < self.slots else min(self.max_slots, max(slot + 1, self.slots * 3 // 2))
            self._resize(slots, max(0, length - (self.end - self.start)), 1)
        wider = max(0, self.start - (self.end - length))
        self.start -= wider
        for (keys, values), (row_keys, row_values) in zip(self.buffers, layers, strict=True):
            keys[slot, :, self.end - length : self.end] = row_keys[0, :, :length]
            values[slot, :, self.end - length : self.end] = row_values[0, :, :length]
        return wider

    def trim(self, columns: int) -> None:
        """Leave out the first `columns` columns in use (padding in every row)."""
        self.start += columns

    def compact(self, keep: list[int]) -> None:
        """Keep only the rows in `keep`, in that order, in slots 0.."""
        index = torch.tensor(keep, device=self.buffers[0][0].device)
        for layer, (keys, values) in enumerate(self.buffers):
            self.buffers[layer] = (keys.index_select(0, index), values.index_select(0, index))
        self._release_views()

    def _resize(self, slots: int, left: int, right: int) -> None:
        """New buffers, one layer at a time (the old one freed before the next is made), with `left` and `right`
        more columns of room around the columns in use, and `slots` slots."""
        used = self.end - self.start
        margin = max(MARGIN, used // 8)
        start = left + margin
        columns = start + used + right + margin
        self._release_views()
        for layer, (keys, values) in enumerate(self.buffers):
            self.buffers[layer] = (self._moved(keys, slots, columns, start), self._moved(values, slots, columns, start))
            del keys, values
        self.start, self.end = start, start + used

    def _moved(self, buffer: torch.Tensor, slots: int, columns: int, start: int) -> torch.Tensor:
        new = buffer.new_zeros((slots, buffer.shape[1], columns, buffer.shape[3]))  # zeros: padding must be finite
        rows = min(slots, buffer.shape[0])
        new[:rows, :, start : start + self.end - self.start] = buffer[:rows, :, self.start : self.end]
        return new

    def _release_views(self) -> None:
        """The model's views of the last step's buffers, dropped so that a replaced buffer is freed at once."""
        for layer in self.cache.layers:
            layer.keys = layer.values = None
