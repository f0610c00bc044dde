"""DDPO loss (eq. 5) with values computed by hand, and rank-splitting equivalence."""

import math

import pytest
import torch

from rlhfv_ray.training.ddpo import DDPOParams, PairLogps, ddpo_loss, weighted_score


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _one_pair():
    # chosen: 3 tokens, the middle one corrected; rejected: 2 tokens, the first corrected.
    policy = PairLogps(torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-2.0, -2.0, 0.0]]))
    reference = PairLogps(torch.tensor([[-1.0, -1.0, -1.0]]), torch.tensor([[-1.0, -3.0, 0.0]]))
    masks = dict(chosen_mask=torch.tensor([[1, 1, 1]]), rejected_mask=torch.tensor([[1, 1, 0]]),
                 chosen_corrected=torch.tensor([[0, 1, 0]]), rejected_corrected=torch.tensor([[1, 0, 0]]))
    return policy, reference, masks


def test_weighted_score_by_hand():
    logps = torch.tensor([[-1.0, -2.0, -3.0]])
    mask, corrected = torch.tensor([[1, 1, 1]]), torch.tensor([[0, 1, 0]])
    # weights (1, 5, 1): normalised (-1 - 10 - 3) / 7 = -2; summed -14
    assert weighted_score(logps, mask, corrected, 5.0, True).item() == pytest.approx(-2.0)
    assert weighted_score(logps, mask, corrected, 5.0, False).item() == pytest.approx(-14.0)
    assert weighted_score(logps, mask, corrected, 1.0, True).item() == pytest.approx(-2.0)  # plain mean


def test_ddpo_normalised_by_hand():
    policy, reference, masks = _one_pair()
    loss, metrics = ddpo_loss(policy, reference, **masks, params=DDPOParams(beta=0.5, gamma=5.0))
    # chosen: pi -14/7 = -2, ref -7/7 = -1 -> -1; rejected: pi -12/6 = -2, ref -8/6 -> -2/3
    # logits = 0.5 * (-1 + 2/3) = -1/6
    assert loss.item() == pytest.approx(softplus(1 / 6))
    assert metrics["reward_margin"] == pytest.approx(-1 / 6)
    assert metrics["chosen_reward"] == pytest.approx(-0.5)
    assert metrics["rejected_reward"] == pytest.approx(-1 / 3)
    assert metrics["reward_accuracy"] == 0.0
    assert metrics["corrected_token_share"] == pytest.approx(2 / 5)


def test_ddpo_without_normalisation_by_hand():
    policy, reference, masks = _one_pair()
    loss, _ = ddpo_loss(policy, reference, **masks, params=DDPOParams(beta=0.5, gamma=5.0, normalize=False))
    # chosen: -14 - (-7) = -7; rejected: -12 - (-8) = -4; logits = 0.5 * (-3)
    assert loss.item() == pytest.approx(softplus(1.5))


def test_gamma_one_is_length_normalised_vanilla_dpo():
    policy, reference, masks = _one_pair()
    loss, _ = ddpo_loss(policy, reference, **masks, params=DDPOParams(beta=0.5, gamma=1.0))
    # chosen: mean -2 vs -1 -> -1; rejected: mean -2 vs -2 -> 0; logits = -0.5
    assert loss.item() == pytest.approx(softplus(0.5))


def test_sft_term_adds_chosen_nll():
    policy, reference, masks = _one_pair()
    base, _ = ddpo_loss(policy, reference, **masks, params=DDPOParams())
    with_sft, metrics = ddpo_loss(policy, reference, **masks, params=DDPOParams(sft_weight=0.1))
    assert metrics["chosen_nll"] == pytest.approx(2.0)  # mean of 1, 2, 3
    assert with_sft.item() == pytest.approx(base.item() + 0.1 * 2.0)


def test_preference_weight_zero_is_sft_on_the_corrected_answers_alone():
    policy, reference, masks = _one_pair()
    sft_only, metrics = ddpo_loss(policy, reference, **masks, params=DDPOParams(sft_weight=1.0, preference_weight=0.0))
    assert sft_only.item() == pytest.approx(2.0)  # the chosen NLL, mean of 1, 2, 3
    assert metrics["preference_loss"] > 0  # still measured, not trained on
    with pytest.raises(ValueError, match="needs an sft_weight"):
        DDPOParams(preference_weight=0.0)


def test_dense_sft_term_weights_corrected_tokens_like_the_score():
    # chosen log-probs (-1, -4, -1), the middle token corrected: plain NLL 2, dense (gamma 5)
    # (1 + 20 + 1) / 7 = 22/7; with gamma 1 the dense term is the plain one
    _, reference, masks = _one_pair()
    policy = PairLogps(torch.tensor([[-1.0, -4.0, -1.0]]), torch.tensor([[-2.0, -2.0, 0.0]]))
    for gamma, expected in ((5.0, 22 / 7), (1.0, 2.0)):
        base, _ = ddpo_loss(policy, reference, **masks, params=DDPOParams(gamma=gamma))
        dense, metrics = ddpo_loss(policy, reference, **masks,
                                   params=DDPOParams(gamma=gamma, sft_weight=0.1, dense_sft=True))
        assert metrics["chosen_nll"] == pytest.approx(2.0)  # the metric stays the plain mean
        assert dense.item() == pytest.approx(base.item() + 0.1 * expected)


def test_gradient_flows_to_policy_only_and_favours_corrected_tokens():
    policy, reference, masks = _one_pair()
    policy = PairLogps(policy.chosen.clone().requires_grad_(), policy.rejected.clone().requires_grad_())
    reference = PairLogps(reference.chosen.clone().requires_grad_(), reference.rejected.clone().requires_grad_())
    loss, _ = ddpo_loss(policy, reference, **masks, params=DDPOParams(gamma=5.0))
    loss.backward()
    assert reference.chosen.grad is None and reference.rejected.grad is None
    grad = policy.chosen.grad[0]
    assert torch.all(grad < 0)  # raising any chosen log-prob lowers the loss
    assert grad[1] == pytest.approx(5 * grad[0])  # the corrected token weighs gamma times more


def test_two_ranks_give_the_same_loss_and_gradient_as_one():
    torch.manual_seed(0)
    n, seq = 4, 6
    theta = torch.randn(seq, requires_grad=True)  # a toy "policy": logps = base + theta * feature
    features = torch.randn(2, n, seq)
    base = -torch.rand(2, n, seq) - 0.1
    ref = -torch.rand(2, n, seq) - 0.1
    chosen_mask = torch.ones(n, seq, dtype=torch.long)
    rejected_mask = torch.ones(n, seq, dtype=torch.long)
    rejected_mask[:, -2:] = 0  # padding
    corrected = (torch.rand(2, n, seq) > 0.6).long()
    params = DDPOParams(beta=0.3, gamma=3.0)

    def loss_on(rows):
        logps = base[:, rows] + theta * features[:, rows]
        loss, _ = ddpo_loss(PairLogps(logps[0], logps[1] * rejected_mask[rows]), PairLogps(ref[0, rows], ref[1, rows]),
                            chosen_mask[rows], rejected_mask[rows], corrected[0, rows], corrected[1, rows], params)
        return loss

    full = loss_on(slice(0, n))
    (full_grad,) = torch.autograd.grad(full, theta)
    halves = [loss_on(slice(0, 2)), loss_on(slice(2, 4))]
    # DDP averages the ranks' gradients; the mean of per-rank mean losses is the global mean
    averaged_grad = sum(torch.autograd.grad(h, theta)[0] for h in halves) / 2
    assert (halves[0] + halves[1]).item() / 2 == pytest.approx(full.item())
    assert torch.allclose(averaged_grad, full_grad, atol=1e-6)
