"""Pure training math: the LR schedule and answer-token log-probs."""

import math

import pytest
import torch

from rlhfv_ray.model.encoding import IGNORE_INDEX, build_lm_batch
from rlhfv_ray.model.logprobs import sequence_mean, token_logps
from rlhfv_ray.training.schedule import warmup_cosine


def test_warmup_then_cosine_by_hand():
    assert warmup_cosine(0, 4, 12) == 0.25
    assert warmup_cosine(3, 4, 12) == 1.0
    assert warmup_cosine(4, 4, 12) == 1.0  # cosine starts at its top
    assert warmup_cosine(8, 4, 12) == pytest.approx(0.5)  # half way through the decay
    assert warmup_cosine(12, 4, 12, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(50, 4, 12, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 10) == 1.0


def test_token_logps_by_hand():
    # vocab of 2, uniform logits except one position: log p = log(1/2) unless stated.
    logits = torch.zeros(1, 4, 2)
    logits[0, 2] = torch.tensor([0.0, math.log(3.0)])  # p(1) = 3/4 at position 2
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 0, 1]])
    logps, mask = token_logps(logits, labels)
    # predictions for labels[1:] come from logits[:-1]: label 0 from position 1, label 1 from position 2
    assert mask.tolist() == [[False, True, True]]
    assert logps[0, 1].item() == pytest.approx(math.log(0.5))
    assert logps[0, 2].item() == pytest.approx(math.log(0.75))
    assert logps[0, 0].item() == 0.0
    assert sequence_mean(logps, mask).item() == pytest.approx((math.log(0.5) + math.log(0.75)) / 2)


def test_lm_batch_masks_the_prompt_and_pads_right():
    batch = build_lm_batch([[5, 6], [7]], [[8, 2], [9, 10, 2]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 8, 2], [7, 9, 10, 2]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, IGNORE_INDEX, 8, 2], [IGNORE_INDEX, 9, 10, 2]]
    batch = build_lm_batch([[5]], [[8]], pad_token_id=0)
    assert batch["attention_mask"].tolist() == [[1, 1]]


def test_model_state_estimate_by_hand():
    from rlhfv_ray.training.memory import GIB, estimate_gib

    p = GIB  # 2^30 parameters: the figures read in bytes per parameter
    # fp32, no ZeRO: weights 4 + grads 4 + moments 8 (the weights are the optimizer's own)
    assert estimate_gib(p, p, 2, 0, bf16=False) == {"weights": 4, "grads": 4, "optimizer": 8, "total": 16}
    # ZeRO-2 over 2 workers: weights 4, grads 4/2, master copy + moments 12/2
    assert estimate_gib(p, p, 2, 2, bf16=False)["total"] == 4 + 2 + 6
    # ZeRO-3 over 8 GPUs in bf16: (2 + 2 + 12) / 8
    assert estimate_gib(p, p, 8, 3, bf16=True)["total"] == 2
    # LoRA on one GPU in bf16: frozen weights 2; 1% trainable with grads 2 and master + moments 12
    assert estimate_gib(p, p / 100, 1, 0, bf16=True)["total"] == pytest.approx(2 + 14 / 100)
