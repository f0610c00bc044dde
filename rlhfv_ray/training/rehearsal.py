"""Rehearsal of the SFT corpus's short-answer questions during DDPO (InstructGPT's "PPO-ptx").

The preference pairs are all detailed descriptions. Trained on them long enough, the model forgets
where a one-word answer ends: past 400 steps of the tiny recipe, "Is there a cup?" is answered
"no no top center red" (right first word, run-on answer), which is all of the VQA accuracy lost.
Rehearsal adds, to every micro batch, the NLL of the clean VQA conversations of a few SFT-split
scenes, so the model keeps answering questions the way the SFT corpus taught it.

Which scenes a micro batch rehearses is a pure function of the pair ids in it (and the run's seed),
so a resumed run draws the same rehearsal batches as an uninterrupted one.
"""

from __future__ import annotations

import random
from typing import Literal, Sequence

import torch
from PIL import Image
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.model.encoding import encode_conversations, pad_lm_batch, pixel_values
from rlhfv_ray.training.sft import sft_loss
from rlhfv_ray.world.grammar import sample_vqa
from rlhfv_ray.world.render import render_scene
from rlhfv_ray.world.scene import sample_scene
from rlhfv_ray.world.spec import WorldParams, split_seed

VQAKind = Literal["existence", "count", "color", "position"]
PREFIX = "rehearsal_"


class RehearsalConfig(StrictModel):
    weight: float = Field(0.0, ge=0)  # of the rehearsal NLL in the loss; 0 turns rehearsal off
    scenes_per_micro_batch: int = Field(4, gt=0)
    questions_per_scene: int = Field(6, gt=0)
    # Only these question kinds are rehearsed; a scene drawn without any is skipped for another.
    kinds: tuple[VQAKind, ...] = ("existence", "count", "color", "position")
    scenes: int = Field(4000, gt=0)  # the pool: scenes [0, scenes) of the "sft" split (SFT's default)
    world: WorldParams = WorldParams()

    @property
    def enabled(self) -> bool:
        return self.weight > 0


def rehearsal_conversations(pair_ids: Sequence[int], seed: int,
                            config: RehearsalConfig) -> tuple[list[Image.Image], list[list[tuple[str, str]]]]:
    """(images, conversations) a micro batch of pairs `pair_ids` rehearses: `scenes_per_micro_batch`
    SFT-split scenes, each with its questions of `config.kinds`, drawn as the SFT corpus draws its
    questions (`sample_vqa`: existence first). Scenes without a question of those kinds are skipped,
    so every micro batch rehearses the same number of scenes (ranks run the same forwards, as ZeRO-3
    needs)."""
    rng = random.Random(f"rehearsal:{seed}:{','.join(str(int(i)) for i in pair_ids)}")
    images, conversations = [], []
    for _ in range(100 * config.scenes_per_micro_batch):  # bounded: a kind is drawn 1 time in 4
        if len(conversations) == config.scenes_per_micro_batch:
            break
        scene = sample_scene(split_seed("sft", rng.randrange(config.scenes)), config.world)
        questions = random.Random(f"{scene.seed}:rehearsal")
        items = [i for i in sample_vqa(scene, questions, config.questions_per_scene) if i.kind in config.kinds]
        if items:
            images.append(render_scene(scene, config.world.image_size))
            conversations.append([(i.question, i.answer) for i in items])
    if len(conversations) < config.scenes_per_micro_batch:
        raise RuntimeError(f"rehearsal drew too few scenes with questions of kinds {config.kinds}")
    return images, conversations


def rehearsal_batch(pair_ids: Sequence[int], seed: int, config: RehearsalConfig, processor) -> dict[str, torch.Tensor]:
    """The rehearsal tensors of one micro batch, keys prefixed with `PREFIX`."""
    images, conversations = rehearsal_conversations(pair_ids, seed, config)
    encoded = encode_conversations(processor, images, conversations)
    batch = pad_lm_batch([ids for ids, _ in encoded], [labels for _, labels in encoded],
                         processor.tokenizer.pad_token_id)
    batch["pixel_values"] = pixel_values(processor, images)
    return {PREFIX + k: v for k, v in batch.items()}


def rehearsal_nll(model, batch: dict) -> torch.Tensor:
    """The SFT loss (mean NLL over answer tokens) of the batch's rehearsal part."""
    return sft_loss(model, {k[len(PREFIX):]: v for k, v in batch.items() if k.startswith(PREFIX)})[0]
