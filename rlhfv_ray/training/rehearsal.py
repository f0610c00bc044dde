"""Rehearsal of SFT data during DDPO (InstructGPT's "PPO-ptx").

Preference pairs are usually detailed descriptions. Trained on them long enough, a model forgets
the other things its SFT data taught it, such as where a one-word answer ends (on the scene world,
past 400 steps "Is there a cup?" gets "no no top center red"). Rehearsal adds to every micro batch
`weight` times the NLL of a few conversations drawn from an SFT dataset (`rehearsal.data`, any
format `rlhfv sft` reads; pick the part worth keeping, e.g. the short-answer questions).

The driver reads, checks and tokenizes that data once (rejects counted like SFT's) and hands it to
every worker whole (a Ray Train dataset that is not split). Which conversations a micro batch
rehearses is a pure function of the pair ids in it and the run's seed, so a resumed run draws the
same rehearsal batches as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch
from pydantic import Field

from rlhfv_ray.data.conversations import ConversationData
from rlhfv_ray.data.sources import Paths
from rlhfv_ray.images import decode_image
from rlhfv_ray.model.inputs import lm_batch
from rlhfv_ray.training.sft import sft_loss

PREFIX = "rehearsal_"
DATASET = "rehearsal"  # the Ray Train dataset name of the rehearsal pool


class RehearsalConfig(ConversationData):
    weight: float = Field(0.0, ge=0)  # of the rehearsal NLL in the loss; 0 turns rehearsal off
    per_micro_batch: int = Field(4, gt=0)  # conversations rehearsed beside each micro batch of pairs
    data: Paths = []  # an SFT dataset (path, glob or list); required when weight > 0

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def load_pool(shard) -> list[dict]:
    """The whole rehearsal dataset from a worker's (unsplit) dataset shard, in a fixed order."""
    rows = [row for batch in shard.iter_batches(batch_format="pandas") for row in batch.to_dict("records")]
    return sorted(rows, key=lambda r: r["id"])


def draw(pair_ids: Sequence[int], seed: int, pool_size: int, n: int) -> list[int]:
    """Indices into the pool that a micro batch of pairs `pair_ids` rehearses."""
    rng = random.Random(f"rehearsal:{seed}:{','.join(str(int(i)) for i in pair_ids)}")
    return [rng.randrange(pool_size) for _ in range(n)]


def rehearsal_batch(rows: Sequence[dict], processor) -> dict[str, torch.Tensor]:
    """The rehearsal tensors of one micro batch (prepared rows: image, question, input_ids, labels), keys
    prefixed with `PREFIX`."""
    batch = lm_batch(processor, [decode_image(bytes(r["image"])) for r in rows], [str(r["question"]) for r in rows],
                     [list(r["input_ids"]) for r in rows], [list(r["labels"]) for r in rows])
    return {PREFIX + k: v for k, v in batch.items()}


def rehearsal_nll(model, batch: dict) -> torch.Tensor:
    """The SFT loss (mean NLL over answer tokens) of the batch's rehearsal part."""
    return sft_loss(model, {k[len(PREFIX):]: v for k, v in batch.items() if k.startswith(PREFIX)})[0]
