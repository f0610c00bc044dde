"""The packed pair row `[prompt | chosen | rejected | pad]` (pure): layout, mask and predictors on
a hand-laid example. One pair: a prompt of two tokens left-padded to three columns, a chosen
answer of two tokens and a rejected one of one (its answer row padded to two)."""

from __future__ import annotations

import torch

from rlhfv_ray.model.packing import (CHOSEN, PADDING, PROMPT, REJECTED, four_d_mask, pack_answers, packed_attention,
                                     packed_layout, predictor_index)

PROMPT_MASK = torch.tensor([[0, 1, 1]])
ANSWER_MASK = torch.tensor([[1, 1], [1, 0]])  # chosen, rejected


def _bool(rows):
    return torch.tensor(rows, dtype=torch.bool)[None]


def test_layout_puts_rejected_right_after_chosen():
    layout = packed_layout(PROMPT_MASK, ANSWER_MASK)
    assert layout.width == 6
    assert layout.region.tolist() == [[PADDING, PROMPT, PROMPT, CHOSEN, CHOSEN, REJECTED]]
    assert layout.columns.tolist() == [[3, 4], [5, 6]]  # 6: the padding's column, cut
    assert layout.offsets.tolist() == [[0, 1, 0]]
    ids = pack_answers(torch.tensor([[7, 8], [9, 0]]), torch.tensor([[0, 5, 6]]), layout.columns, layout.width)
    assert ids.tolist() == [[0, 5, 6, 7, 8, 9]]


def test_rejected_sees_the_prompt_and_itself_not_chosen():
    region = packed_layout(PROMPT_MASK, ANSWER_MASK).region
    assert torch.equal(packed_attention(region), _bool([
        [1, 0, 0, 0, 0, 0],  # padding: itself only
        [0, 1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],  # chosen
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 0, 0, 1],  # rejected
    ]))


def test_prompt_blocks_attend_both_ways_and_only_in_the_prompt():
    region = packed_layout(PROMPT_MASK, ANSWER_MASK).region
    allowed = packed_attention(region, prompt_blocks=torch.tensor([[-1, 0, 0]]))
    assert allowed[0, 1].tolist() == [False, True, True, False, False, False]
    assert torch.equal(allowed[0, 2:], packed_attention(region)[0, 2:])


def test_window_counts_positions_which_restart_for_rejected():
    region = packed_layout(PROMPT_MASK, ANSWER_MASK).region
    positions = torch.tensor([[0, 0, 1, 2, 3, 2]])  # answers continue from the prompt's next position, 2
    assert torch.equal(packed_attention(region, text_positions=positions, window=2), _bool([
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],  # position 2: keys at positions 1 and 2
        [0, 0, 0, 1, 1, 0],  # position 3: keys at positions 2 and 3
        [0, 0, 1, 0, 0, 1],  # rejected, position 2 again
    ]))


def test_predictors_count_from_the_prompts_last_column():
    layout = packed_layout(PROMPT_MASK, ANSWER_MASK)
    # chosen: columns 2, 3 predict tokens in 3, 4; rejected's first token is predicted by column 2
    # (the prompt's last), not by chosen's last; kept logits start at column 2
    assert predictor_index(layout, prompt_width=3).tolist() == [[0, 1], [0, 3]]


def test_masks_as_each_kernel_takes_them():
    allowed = _bool([[1, 0], [1, 1]])
    assert torch.equal(four_d_mask(allowed, "sdpa", torch.float32), allowed[:, None])
    eager = four_d_mask(allowed, "eager", torch.bfloat16)
    assert eager.dtype == torch.bfloat16 and eager.shape == (1, 1, 2, 2)
    assert eager[0, 0].tolist() == [[0, torch.finfo(torch.bfloat16).min], [0, 0]]
