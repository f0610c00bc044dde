"""Packed pair rows run without their padding: linear layers see only real tokens.

The shared-prompt forward lays each pair out as a row `[prompt | chosen | rejected]` (`packing.py`),
and rows of one batch are padded to the longest: left padding before shorter prompts, right padding
after shorter answers. Everything in a transformer but attention works token by token, so the
model can run on the rows' real tokens laid end to end as one sequence (batch 1, no padding: the
projections, MLPs and norms, most of the work, do no work on padding); attention alone needs the
rows, so it scatters queries, keys and values back into the padded (pairs, heads, width, dim) grid,
runs the kernel with each row's 4-D mask, and gathers the real tokens out again. The attention is
then exactly that of the padded rows, and the tokens of one pair never meet another pair's.

This is a registered transformers attention implementation (`AttentionInterface`): the text model
is switched to `unpadded_sdpa` / `unpadded_eager`, which behave as `sdpa` / `eager` in every call
that does not pass `packed_slots` (generation, the plain forward), so the switch can stay. The
slots travel as a keyword argument of the model call, which transformers hands to every attention
layer, so recomputation under gradient checkpointing sees them too.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

PREFIX = "unpadded_"
KERNELS = ("sdpa", "eager")  # the attention kernels that take a 4-D mask, each with an unpadded form


@dataclass(frozen=True)
class PackedSlots:
    """Where each real token of the unpadded sequence sits in the padded (pairs, width) grid."""

    index: torch.Tensor  # (tokens,): flat grid slot (pair * width + column) of each real token
    pairs: int
    width: int

    @classmethod
    def of(cls, real: torch.Tensor) -> "PackedSlots":
        """From a (pairs, width) bool grid, True on real tokens."""
        return cls(real.reshape(-1).nonzero().squeeze(1), real.shape[0], real.shape[1])

    def unpad(self, values: torch.Tensor) -> torch.Tensor:
        """(..., pairs, width) per-token values -> (..., 1, tokens)."""
        return values.flatten(-2)[..., self.index].unsqueeze(-2)

    def flat_positions(self, grid_columns: torch.Tensor) -> torch.Tensor:
        """(pairs, n) grid columns of real tokens -> their index in the unpadded sequence."""
        rank = torch.zeros(self.pairs * self.width, dtype=torch.long, device=self.index.device)
        rank[self.index] = torch.arange(len(self.index), device=self.index.device)
        rows = torch.arange(self.pairs, device=grid_columns.device)[:, None] * self.width
        return rank[(rows + grid_columns).reshape(-1)].view(grid_columns.shape)


def _to_grid(states: torch.Tensor, slots: PackedSlots) -> torch.Tensor:
    """(1, heads, tokens, dim) -> (pairs, heads, width, dim), zeros on padding."""
    heads, dim = states.shape[1], states.shape[3]
    grid = states.new_zeros(slots.pairs * slots.width, heads, dim)
    grid = grid.index_copy(0, slots.index, states[0].transpose(0, 1))
    return grid.view(slots.pairs, slots.width, heads, dim).transpose(1, 2)


def _kernel_function(kernel: str, module):
    """sdpa is shared; eager is each model's own (`eager_attention_forward` beside its attention
    class: scaling, soft-capping and key/value repetition differ between families)."""
    if kernel == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    return sys.modules[type(module).__module__].eager_attention_forward


def _attention(kernel: str):
    def attention(module, query, key, value, attention_mask, packed_slots: PackedSlots | None = None, **kwargs):
        base = _kernel_function(kernel, module)
        if packed_slots is None:
            return base(module, query, key, value, attention_mask, **kwargs)
        grid = [_to_grid(states, packed_slots) for states in (query, key, value)]
        output, weights = base(module, *grid, attention_mask, **kwargs)  # (pairs, width, heads, dim)
        return output.reshape(-1, *output.shape[2:]).index_select(0, packed_slots.index)[None], weights

    return attention


for _kernel in KERNELS:
    AttentionInterface.register(PREFIX + _kernel, _attention(_kernel))
    ALL_MASK_ATTENTION_FUNCTIONS.register(PREFIX + _kernel, ALL_MASK_ATTENTION_FUNCTIONS[_kernel])


def base_kernel(implementation: str | None) -> str | None:
    """`sdpa` for `unpadded_sdpa`; any other name as it is."""
    return implementation[len(PREFIX):] if implementation and implementation.startswith(PREFIX) else implementation


def enable(text_config) -> None:
    """Switch a text model's sdpa / eager attention to its unpadded form (idempotent)."""
    if text_config._attn_implementation in KERNELS:
        text_config._attn_implementation = PREFIX + text_config._attn_implementation
