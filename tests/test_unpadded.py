"""Packed rows run without their padding (`unpadded.py`): slots on a hand-laid grid, and the
unpadded attention equal to the kernel run on the padded rows."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from rlhfv_ray.model.unpadded import PREFIX, PackedSlots, base_kernel

# two rows of four columns: row 0 left-padded once and right-padded once, row 1 full
REAL = torch.tensor([[False, True, True, False], [True, True, True, True]])


def test_slots_are_the_real_tokens_in_row_order():
    slots = PackedSlots.of(REAL)
    assert slots.index.tolist() == [1, 2, 4, 5, 6, 7]
    values = torch.tensor([[10, 11, 12, 13], [14, 15, 16, 17]])
    assert slots.unpad(values).tolist() == [[11, 12, 14, 15, 16, 17]]
    # 3-D positions (axes first) keep their axes
    assert slots.unpad(torch.stack([values, values + 100])).shape == (2, 1, 6)


def test_grid_columns_map_to_the_unpadded_sequence():
    slots = PackedSlots.of(REAL)
    assert slots.flat_positions(torch.tensor([[1, 2], [0, 3]])).tolist() == [[0, 1], [2, 5]]


def test_kernel_names():
    assert base_kernel(PREFIX + "sdpa") == "sdpa" and base_kernel("eager") == "eager"
    assert base_kernel("flash_attention_2") == "flash_attention_2" and base_kernel(None) is None


def _padded_rows_attention(query, key, value, allowed):
    grid = [x.masked_fill(~REAL[:, None, :, None], 0.0) for x in (query, key, value)]
    output, _ = ALL_ATTENTION_FUNCTIONS["sdpa"](torch.nn.Module(), *grid, allowed[:, None])
    return output  # (rows, columns, heads, dim)


@pytest.mark.parametrize("slots_given", [True, False])
def test_unpadded_attention_is_the_padded_rows_attention(slots_given):
    torch.manual_seed(0)
    rows, heads, columns, dim = 2, 3, 4, 8
    query, key, value = (torch.randn(rows, heads, columns, dim) for _ in range(3))
    causal = torch.ones(columns, columns, dtype=torch.bool).tril()
    allowed = (causal & REAL[:, None, :]) | torch.eye(columns, dtype=torch.bool)
    expected = _padded_rows_attention(query, key, value, allowed)
    attention = ALL_ATTENTION_FUNCTIONS[PREFIX + "sdpa"]
    if not slots_given:  # no slots: the kernel itself, on whatever it is given
        output, _ = attention(torch.nn.Module(), *(x.masked_fill(~REAL[:, None, :, None], 0.0)
                                                   for x in (query, key, value)), allowed[:, None])
        assert torch.allclose(output[REAL], expected[REAL], atol=1e-6)
        return
    slots = PackedSlots.of(REAL)
    flat = [x.transpose(1, 2)[REAL].transpose(0, 1)[None] for x in (query, key, value)]  # (1, heads, tokens, dim)
    output, _ = attention(torch.nn.Module(), *flat, allowed[:, None], packed_slots=slots)
    assert output.shape == (1, int(REAL.sum()), heads, dim)
    assert torch.allclose(output[0], expected[REAL], atol=1e-6)


def test_gradients_reach_only_real_tokens():
    slots = PackedSlots.of(REAL)
    flat = [torch.randn(1, 2, int(REAL.sum()), 4, requires_grad=True) for _ in range(3)]
    allowed = torch.ones(4, 4, dtype=torch.bool).tril() & REAL[:, None, :] | torch.eye(4, dtype=torch.bool)
    output, _ = ALL_ATTENTION_FUNCTIONS[PREFIX + "sdpa"](torch.nn.Module(), *flat, allowed[:, None],
                                                        packed_slots=slots)
    output.sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() for x in flat)
