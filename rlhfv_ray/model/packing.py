"""A pair's two answers in one row after their shared prompt, `[prompt | chosen | rejected | pad]`:
the layout, attention masks and positions of the shared-prompt pair forward (pure tensor functions).

One row per pair runs the prompt (vision tower included) once for both answers, in one model call
and without a key/value cache, so it also holds under gradient checkpointing. The rejected answer
must not see the chosen one, so the row gets a 4-D mask: each answer attends to the prompt and to
its own earlier tokens; the prompt attends as the model has it attend alone (causal, plus the
bidirectional blocks some families give image or prefix tokens); a sliding window counts positions,
which restart for the rejected answer, so it is the window each answer has in its own sequence.

Shapes: B pairs, prompts left-padded to P columns; `answer_mask` (2B, A) has the answers in the
order chosen 0, rejected 0, chosen 1, ...; a packed row is L columns wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PROMPT, CHOSEN, REJECTED, PADDING = 0, 1, 2, -1


@dataclass(frozen=True)
class PackedLayout:
    region: torch.Tensor   # (B, L): PROMPT / CHOSEN / REJECTED / PADDING per column
    columns: torch.Tensor  # (2B, A): the column of each answer token in its pair's row (L where padding)
    offsets: torch.Tensor  # (B, L - P): an answer column's index within its answer (0 elsewhere)

    @property
    def width(self) -> int:
        return self.region.shape[1]


def packed_layout(prompt_mask: torch.Tensor, answer_mask: torch.Tensor) -> PackedLayout:
    pairs, prompt_width = prompt_mask.shape
    lengths = answer_mask.sum(-1).view(pairs, 2)
    starts = prompt_width + torch.cat([torch.zeros_like(lengths[:, :1]), lengths[:, :1]], dim=1)
    width = prompt_width + int(lengths.sum(-1).max())
    index = torch.arange(answer_mask.shape[1], device=answer_mask.device)
    columns = (starts.view(-1, 1) + index).masked_fill(answer_mask == 0, width)
    region = torch.full((pairs, width + 1), PADDING, dtype=torch.long, device=prompt_mask.device)
    region[:, :prompt_width] = torch.where(prompt_mask.bool(), PROMPT, PADDING)
    sides = torch.tensor([CHOSEN, REJECTED], device=region.device).repeat(pairs)[:, None].expand_as(columns)
    region.scatter_(1, columns.reshape(pairs, -1), sides.reshape(pairs, -1))
    offsets = pack_answers(index.expand_as(columns), torch.zeros_like(prompt_mask), columns, width)
    # column `width` collected the padding's writes
    return PackedLayout(region[:, :width], columns, offsets[:, prompt_width:])


def pack_answers(answer_values: torch.Tensor, prompt_values: torch.Tensor, columns: torch.Tensor,
                 width: int) -> torch.Tensor:
    """(B, width) rows of per-token values: the prompt's, then each pair's two answers' (0 on padding)."""
    pairs, prompt_width = prompt_values.shape
    out = torch.zeros(pairs, width + 1, dtype=answer_values.dtype, device=answer_values.device)
    out[:, :prompt_width] = prompt_values
    out.scatter_(1, columns.reshape(pairs, -1), answer_values.reshape(pairs, -1))
    return out[:, :width]


def packed_attention(region: torch.Tensor, prompt_blocks: torch.Tensor | None = None,
                     text_positions: torch.Tensor | None = None, window: int | None = None) -> torch.Tensor:
    """(B, L, L) bool, [query, key], True where the query attends to the key. `prompt_blocks`
    (B, P): a block id >= 0 on prompt tokens that attend to their whole block both ways, -1
    elsewhere. `window`: keys fewer than `window` positions (`text_positions`, (B, L)) back."""
    width = region.shape[1]
    index = torch.arange(width, device=region.device)
    causal = index[None, :] <= index[:, None]
    crossed = (region[:, :, None] == REJECTED) & (region[:, None, :] == CHOSEN)
    allowed = causal & (region != PADDING)[:, None, :] & ~crossed
    if prompt_blocks is not None:
        blocks = torch.full_like(region, -1)
        blocks[:, :prompt_blocks.shape[1]] = prompt_blocks
        blocks = blocks.masked_fill(region != PROMPT, -1)
        allowed |= (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
    if window is not None:
        allowed &= (text_positions[:, :, None] - text_positions[:, None, :]) < window
    # a padding query attends to itself: no row of the softmax is empty
    return allowed | torch.eye(width, dtype=torch.bool, device=region.device)


def four_d_mask(allowed: torch.Tensor, attention: str, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, L, L) as the attention kernel takes it: SDPA a bool mask (True: attend), which fits
    queries of any dtype; eager attention adds its mask to the scores, so 0 or the dtype's minimum."""
    if attention == "sdpa":
        return allowed[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[:, None]


def predictor_index(layout: PackedLayout, prompt_width: int) -> torch.Tensor:
    """(2B, A): for each answer token, the column whose logits predict it, counted from the
    prompt's last column (the first of the logits kept): the prompt's last column for an answer's
    first token, the previous column for the others; padding clamped into range (masked later)."""
    first = torch.zeros_like(layout.columns, dtype=torch.bool)
    first[:, 0] = True
    predictors = torch.where(first, prompt_width - 1, layout.columns - 1) - (prompt_width - 1)
    return predictors.clamp(max=layout.width - prompt_width)
