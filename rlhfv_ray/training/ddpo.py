"""Dense direct preference optimisation (RLHF-V, eq. 5) as pure functions of per-token log-probs.

Score of a response y (chosen y_w or rejected y_l), from per-token log-probs and a corrected mask:

    score = (1/N) [ sum_{unchanged} log p(y_i) + gamma * sum_{corrected} log p(y_i) ],
    N = |y_u| + gamma * |y_c|                                       (normalize=True, the paper)
    score = sum_{unchanged} log p(y_i) + gamma * sum_{corrected} log p(y_i)  (normalize=False,
                                                      the released recipe, "more stable")

The same weighting applies to the frozen reference model's cached per-token log-probs. Loss:

    -log sigmoid( beta * [ (score_pi(y_w) - score_ref(y_w)) - (score_pi(y_l) - score_ref(y_l)) ] )

times `preference_weight` (1), plus, optionally, `sft_weight` times the mean NLL of the chosen
answer; with `dense_sft` that NLL is weighted like the score (corrected tokens gamma times,
normalised), so the anchor, too, leans on the corrections. `preference_weight: 0` leaves SFT on the
corrected answers alone (the limit beta -> 0 of the preference term's gradient): the baseline that
says whether the preference term earns its place. gamma = 1 with normalisation is length-normalised vanilla DPO, the paper's ablation
baseline (and makes `dense_sft` the plain mean NLL).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfv_ray.model.logprobs import PairLogps


@dataclass(frozen=True)
class DDPOParams:
    __pydantic_config__ = {"extra": "forbid"}
    beta: float = 0.5
    gamma: float = 5.0
    normalize: bool = True
    sft_weight: float = 0.0
    dense_sft: bool = False
    preference_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.gamma <= 0 or self.sft_weight < 0 or self.preference_weight < 0:
            raise ValueError("beta and gamma must be > 0, sft_weight and preference_weight >= 0")
        if self.preference_weight == 0 and self.sft_weight == 0:
            raise ValueError("preference_weight 0 needs an sft_weight: the loss would be 0")


def weighted_score(logps: torch.Tensor, mask: torch.Tensor, corrected: torch.Tensor, gamma: float,
                   normalize: bool) -> torch.Tensor:
    """(batch, seq) per-token log-probs -> (batch,) eq. 5 scores; `corrected` is a subset of `mask`."""
    weights = mask.float() * (1.0 + (gamma - 1.0) * corrected.float())
    total = (logps * weights).sum(-1)
    return total / weights.sum(-1).clamp(min=1e-8) if normalize else total



def ddpo_loss(policy: PairLogps, reference: PairLogps, chosen_mask: torch.Tensor, rejected_mask: torch.Tensor,
              chosen_corrected: torch.Tensor, rejected_corrected: torch.Tensor,
              params: DDPOParams) -> tuple[torch.Tensor, dict[str, float]]:
    """(scalar loss, metrics) of a batch of preference pairs. Reference log-probs carry no grad."""
    score = lambda lp, m, c: weighted_score(lp, m, c, params.gamma, params.normalize)  # noqa: E731
    chosen_ratio = score(policy.chosen, chosen_mask, chosen_corrected) - score(
        reference.chosen.detach(), chosen_mask, chosen_corrected)
    rejected_ratio = score(policy.rejected, rejected_mask, rejected_corrected) - score(
        reference.rejected.detach(), rejected_mask, rejected_corrected)
    logits = params.beta * (chosen_ratio - rejected_ratio)
    preference_loss = -F.logsigmoid(logits).mean()
    chosen_nll = -(policy.chosen * chosen_mask).sum(-1) / chosen_mask.sum(-1).clamp(min=1)
    loss = params.preference_weight * preference_loss
    if params.sft_weight:
        anchor = (-weighted_score(policy.chosen, chosen_mask, chosen_corrected, params.gamma, normalize=True)
                  if params.dense_sft else chosen_nll)
        loss = loss + params.sft_weight * anchor.mean()
    corrected_tokens = (chosen_corrected * chosen_mask).sum() + (rejected_corrected * rejected_mask).sum()
    with torch.no_grad():
        metrics = {
            "preference_loss": preference_loss.item(),
            "reward_accuracy": (logits > 0).float().mean().item(),
            "chosen_reward": (params.beta * chosen_ratio).mean().item(),
            "rejected_reward": (params.beta * rejected_ratio).mean().item(),
            "reward_margin": (logits).mean().item(),
            "chosen_nll": chosen_nll.mean().item(),
            "corrected_token_share": (corrected_tokens / (chosen_mask.sum() + rejected_mask.sum())).item(),
        }
    return loss, metrics
