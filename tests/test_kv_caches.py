"""The transformers engine's two caches, on tensors made by hand: the prompt prefix cache (what it returns, what
it keeps within its byte budget, what it drops first) and the running batch's per-row cache (where a row's keys
and values land, how its buffers grow, what each row attends to). The engine tests check that outputs do not
change with the caches on; these pin the caches' own contract, which outputs alone cannot see."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrosearch.engines.kv import GROWTH, RowKV, RowsCache, room_after, row_attention
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


def test_a_row_is_made_with_its_tokens_and_an_eighth_or_growth_columns_to_spare():
    short = RowKV(layers_of(5, 100.0), length=3)
    assert (short.length, short.capacity) == (3, 3 + GROWTH)
    assert short.buffers[1][0][0, 0, :3, 0].tolist() == [101.0, 102.0, 103.0]  # layer 1: fill + 1 + column
    assert short.buffers[1][1][0, 1, :3, 3].tolist() == [-101.0, -102.0, -103.0]
    long = RowKV(layers_of(16 * GROWTH, 0.0), length=16 * GROWTH)
    assert long.capacity == 16 * GROWTH + 2 * GROWTH == 16 * GROWTH + room_after(16 * GROWTH)


def test_reserve_keeps_the_buffer_while_it_has_room_and_carries_the_columns_when_it_grows():
    row = RowKV(layers_of(4, 10.0), length=4)
    before = row.buffers[0][0]
    row.reserve(GROWTH)
    assert row.buffers[0][0] is before
    row.reserve(GROWTH + 1)
    assert row.capacity == 4 + GROWTH + 1 + GROWTH
    assert row.buffers[0][0][0, 0, :4, 0].tolist() == [10.0, 11.0, 12.0, 13.0]
    assert row.buffers[1][1][0, 0, :4, 0].tolist() == [-11.0, -12.0, -13.0, -14.0]


def test_a_step_writes_each_row_after_its_own_last_column_and_hands_out_its_columns_only():
    first, second = RowKV(layers_of(3, 10.0), length=3), RowKV(layers_of(5, 20.0), length=5)
    cache = RowsCache(layers=2)
    cache.rows = [first, second]
    layer = cache.cache.layers[1]
    other_layer = first.buffers[0][0].clone()
    assert layer.get_seq_length() == 5 and layer.get_mask_sizes(1) == (6, 0)
    step_keys = torch.tensor([7.0, 8.0]).view(2, 1, 1, 1).expand(2, HEADS, 1, HEAD_DIM)
    keys, values = layer.update(step_keys, -step_keys)
    assert [row_keys[0, 0, :, 0].tolist() for row_keys in keys] == [[11, 12, 13, 7], [21, 22, 23, 24, 25, 8]]
    assert [row_values[0, 1, -1, 2].item() for row_values in values] == [-7.0, -8.0]
    assert torch.equal(first.buffers[0][0].view(torch.int32), other_layer.view(torch.int32))  # bits: may hold NaN


def test_each_row_attends_to_its_own_columns_as_a_padded_masked_batch_does():
    """Grouped-query attention (6 query heads over 2 key heads) of two rows of 3 and 7 columns: the same as SDPA
    over the keys repeated per query head, the short row padded and masked."""
    torch.manual_seed(0)
    lengths, key_heads, heads = (3, 7), 2, 6
    keys = [torch.randn(1, key_heads, n, HEAD_DIM) for n in lengths]
    values = [torch.randn(1, key_heads, n, HEAD_DIM) for n in lengths]
    query = torch.randn(2, heads, 1, HEAD_DIM)
    output, _ = row_attention(torch.nn.Module(), query, keys, values, None, scaling=0.5)
    assert output.shape == (2, 1, heads, HEAD_DIM)
    padded = [torch.nn.functional.pad(tensor, (0, 0, max(lengths) - tensor.shape[2], 0)) for tensor in keys]
    padded_values = [torch.nn.functional.pad(tensor, (0, 0, max(lengths) - tensor.shape[2], 0)) for tensor in values]
    mask = torch.tensor([[False] * (7 - n) + [True] * n for n in lengths]).view(2, 1, 1, 7)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query,
        torch.cat(padded).repeat_interleave(heads // key_heads, dim=1),
        torch.cat(padded_values).repeat_interleave(heads // key_heads, dim=1),
        attn_mask=mask,
        scale=0.5,
    )
    torch.testing.assert_close(output, expected.transpose(1, 2))


def test_a_cached_view_counts_the_whole_buffer_it_keeps_alive():
    row = RowKV(layers_of(40, 0.0), length=40)
    cache = PrefixCache(budget_bytes=1 << 20)
    cache.add(list(range(10)), row.prefix(10))
    assert cache.bytes == 2 * 2 * HEADS * row.capacity * HEAD_DIM * 4  # 2 layers, keys and values, float32
    assert cache.longest(list(range(12)))[1][0][0].untyped_storage().data_ptr() == (
        row.buffers[0][0].untyped_storage().data_ptr()
    )


def test_one_shared_token_is_served_and_a_prompt_added_twice_is_held_once():
    cache = PrefixCache(budget_bytes=1 << 20)
    cache.add([4, 5, 6], layers_of(3, 0.0))
    assert cache.longest([4, 9, 9])[0] == 1
    cache.add([4, 5, 6], layers_of(3, 0.0))
    assert cache.bytes == entry_bytes(3) and len(cache._entries) == 1


def test_the_default_budget_is_a_gibibyte_or_an_eighth_of_the_free_memory_where_less(monkeypatch):
    from types import SimpleNamespace

    from retrosearch.engines import prefix_cache

    cpu = torch.device("cpu")
    monkeypatch.setattr(prefix_cache.psutil, "virtual_memory", lambda: SimpleNamespace(available=4 << 30))
    assert prefix_cache.default_budget_bytes(cpu) == 512 << 20
    monkeypatch.setattr(prefix_cache.psutil, "virtual_memory", lambda: SimpleNamespace(available=64 << 30))
    assert prefix_cache.default_budget_bytes(cpu) == 1 << 30
