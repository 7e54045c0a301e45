"""The transformers engine's two caches, on tensors made by hand: the prompt prefix cache (what it returns, what
it keeps within its byte budget, what it drops first) and the running batch's slot cache (where a row's keys and
values land, how the buffer grows, what `compact` keeps). The engine tests check that outputs do not change with
the caches on; these pin the caches' own contract, which outputs alone cannot see."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrosearch.engines.kv import MARGIN, SlotCache
from retrosearch.engines.prefix_cache import PrefixCache, common_length

HEADS, HEAD_DIM = 2, 4


def layers_of(length: int, fill: float, layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One row's keys (fill + column) and values (-(fill + column)), so every column is recognisable."""
    column = torch.arange(length, dtype=torch.float32).view(1, 1, length, 1)
    keys = (fill + column).expand(1, HEADS, length, HEAD_DIM).clone()
    return [(keys + layer, -(keys + layer)) for layer in range(layers)]


def entry_bytes(length: int) -> int:
    return sum(k.nbytes + v.nbytes for k, v in layers_of(length, 0.0))


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [([1, 2, 3], [1, 2, 3], 3), ([1, 2, 3], [1, 2, 4], 2), ([1, 2], [1, 2, 3, 4], 2), ([5], [1], 0), ([], [1], 0)],
)
def test_common_length_counts_the_leading_ids_two_prompts_share(first, second, shared):
    assert common_length(np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)) == shared
    assert common_length(np.array(second, dtype=np.int64), np.array(first, dtype=np.int64)) == shared


def test_the_longest_shared_prefix_is_served_but_never_the_prompts_last_token():
    cache = PrefixCache(budget_bytes=1 << 20)
    assert cache.longest([1, 2, 3]) == (0, [])
    short, long = layers_of(3, 10.0), layers_of(5, 20.0)
    cache.add([1, 2, 3], short)
    cache.add([7, 8, 9, 10, 11], long)
    length, layers = cache.longest([7, 8, 9, 4])
    assert length == 3 and layers is long
    length, layers = cache.longest([1, 2, 3, 4, 5])
    assert length == 3 and layers is short
    # the whole prompt is cached: the caller still needs its last token's logits, so one token is left to prefill
    assert cache.longest([7, 8, 9, 10, 11])[0] == 4
    assert cache.longest([7]) == (0, [])
    assert cache.longest([2, 3]) == (0, [])


def test_a_prompt_that_extends_a_cached_one_replaces_it_and_the_bytes_follow():
    cache = PrefixCache(budget_bytes=1 << 20)
    cache.add([1, 2], layers_of(2, 0.0))
    cache.add([1, 2, 3, 4], layers_of(4, 0.0))
    assert cache.bytes == entry_bytes(4)
    assert len(cache._entries) == 1
    cache.add([1, 9], layers_of(2, 0.0))  # shares a prefix but does not extend: both stay
    assert cache.bytes == entry_bytes(4) + entry_bytes(2)
    assert len(cache._entries) == 2


def test_the_least_recently_used_entry_goes_first_once_over_budget():
    cache = PrefixCache(budget_bytes=2 * entry_bytes(3))
    cache.add([1, 1, 1], layers_of(3, 1.0))
    cache.add([2, 2, 2], layers_of(3, 2.0))
    assert cache.longest([1, 1, 1, 5])[0] == 3  # [1, 1, 1] is now the most recently used
    cache.add([3, 3, 3], layers_of(3, 3.0))
    assert cache.bytes == 2 * entry_bytes(3) == cache.budget_bytes
    assert cache.longest([2, 2, 2, 5]) == (0, [])
    assert cache.longest([1, 1, 1, 5])[0] == 3
    assert cache.longest([3, 3, 3, 5])[0] == 3


def test_an_entry_over_the_whole_budget_or_a_budget_of_zero_keeps_nothing():
    exact = PrefixCache(budget_bytes=entry_bytes(3))
    exact.add([1, 2, 3], layers_of(3, 0.0))
    assert exact.bytes == entry_bytes(3)
    too_big = PrefixCache(budget_bytes=entry_bytes(3) - 1)
    too_big.add([1, 2, 3], layers_of(3, 0.0))
    assert too_big.bytes == 0 and too_big.longest([1, 2, 3, 4]) == (0, [])
    off = PrefixCache(budget_bytes=0)
    off.add([1], [])
    assert off.bytes == 0 and off.longest([1, 2]) == (0, [])


def test_a_row_is_placed_so_that_it_ends_at_the_shared_end_column():
    cache = SlotCache(layers_of(1, 0.0), max_slots=8)
    assert (cache.slots, cache.capacity, cache.start, cache.end) == (1, 2 * MARGIN, MARGIN, MARGIN)
    assert cache.place(0, layers_of(5, 100.0), length=3) == 3  # start moved left by 3 to make room
    assert (cache.start, cache.end) == (MARGIN - 3, MARGIN)
    keys, values = cache.buffers[1]
    assert keys[0, 0, cache.start : cache.end, 0].tolist() == [101.0, 102.0, 103.0]
    assert values[0, 1, cache.start : cache.end, 3].tolist() == [-101.0, -102.0, -103.0]
    assert cache.place(0, layers_of(2, 50.0), length=2) == 0  # fits within the columns already in use
    assert keys[0, 0, cache.start : cache.end, 0].tolist() == [101.0, 51.0, 52.0]  # layer 1: fill + 1


def test_new_slots_grow_by_half_up_to_the_limit_and_keep_what_is_in_use():
    cache = SlotCache(layers_of(1, 0.0), max_slots=8)
    slots = []
    for slot in range(8):
        cache.place(slot, layers_of(2, 10.0 * (slot + 1)), length=2)
        slots.append(cache.slots)
    assert slots == [1, 2, 3, 4, 6, 6, 8, 8]  # max(slot + 1, half again), at most max_slots
    keys = cache.buffers[0][0]
    in_use = keys[:, 0, cache.start : cache.end, 0].tolist()
    assert in_use == [[10.0 * (slot + 1), 10.0 * (slot + 1) + 1] for slot in range(8)]
    assert cache.start >= MARGIN and cache.capacity - cache.end >= MARGIN


def test_a_prompt_longer_than_the_room_on_the_left_resizes_with_a_margin():
    cache = SlotCache(layers_of(1, 0.0), max_slots=2)
    cache.place(0, layers_of(MARGIN + 10, 0.0), length=MARGIN + 10)
    assert cache.end - cache.start == MARGIN + 10
    assert cache.start == MARGIN  # the margin is max(MARGIN, used // 8), here MARGIN
    assert cache.buffers[0][0][0, 0, cache.start : cache.end, 0].tolist() == [float(i) for i in range(MARGIN + 10)]


def test_reserve_advance_trim_and_the_layer_view_the_model_writes_through():
    cache = SlotCache(layers_of(1, 0.0), max_slots=2)
    cache.place(0, layers_of(3, 10.0), length=3)
    cache.place(1, layers_of(3, 20.0), length=3)
    cache.reserve(1)
    assert cache.capacity - cache.end >= 1
    step_keys = torch.full((2, HEADS, 1, HEAD_DIM), 7.0)
    layer = cache.cache.layers[0]
    keys, values = layer.update(step_keys, -step_keys)
    assert keys.shape == (2, HEADS, 4, HEAD_DIM) and keys[:, 0, :, 0].tolist() == [[10, 11, 12, 7], [20, 21, 22, 7]]
    assert values[:, 0, -1, 0].tolist() == [-7.0, -7.0]
    cache.advance(1)
    assert layer.get_seq_length() == 4 and layer.get_mask_sizes(1) == (5, 0)
    cache.trim(2)
    assert layer.get_seq_length() == 2
    assert cache.buffers[0][0][:2, 0, cache.start : cache.end, 0].tolist() == [[12.0, 7.0], [22.0, 7.0]]
    before = cache.capacity
    cache.reserve(before)  # more than the room left: a new buffer, the columns in use carried over
    assert cache.capacity - cache.end >= before
    assert cache.buffers[0][0][:2, 0, cache.start : cache.end, 0].tolist() == [[12.0, 7.0], [22.0, 7.0]]
    assert layer.keys is None  # the model's view of the old buffer is dropped so that it is freed


def test_compact_keeps_the_rows_asked_for_in_that_order():
    cache = SlotCache(layers_of(1, 0.0), max_slots=3)
    for slot, fill in enumerate((10.0, 20.0, 30.0)):
        cache.place(slot, layers_of(2, fill), length=2)
    cache.compact([2, 0])
    assert cache.slots == 2
    first_layer_keys, first_layer_values = cache.buffers[0]
    assert first_layer_keys[:, 0, cache.start : cache.end, 0].tolist() == [[30.0, 31.0], [10.0, 11.0]]
    assert first_layer_values[:, 0, cache.start : cache.end, 0].tolist() == [[-30.0, -31.0], [-10.0, -11.0]]
    assert cache.buffers[1][0][:, 0, cache.start : cache.end, 0].tolist() == [[31.0, 32.0], [11.0, 12.0]]


def test_a_resize_of_a_long_cache_leaves_an_eighth_of_its_columns_on_either_side():
    cache = SlotCache(layers_of(1, 0.0), max_slots=1)
    used = 16 * MARGIN
    cache.place(0, layers_of(used, 0.0), length=used)
    asked = cache.capacity
    cache.reserve(asked)  # room it lacks: a new buffer around the columns in use
    margin = used // 8
    assert (cache.start, cache.end - cache.start) == (margin, used)
    assert cache.capacity == margin + used + asked + margin


def test_one_shared_token_is_served_and_a_prompt_added_twice_is_held_once():
    cache = PrefixCache(budget_bytes=1 << 20)
    cache.add([4, 5, 6], layers_of(3, 0.0))
    assert cache.longest([4, 9, 9])[0] == 1
    cache.add([4, 5, 6], layers_of(3, 0.0))
    assert cache.bytes == entry_bytes(3) and len(cache._entries) == 1
