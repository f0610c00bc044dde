"""`rlhfv build-model`: the initial tiny LLaVA (tokenizer, processor, pretrained vision tower,
language model pretrained on scenes as bags of words, projector aligned to it), saved with `save_pretrained` for SFT to start from."""

from __future__ import annotations

import logging
import json
from pathlib import Path

import torch
from pydantic import model_validator

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.scene_world.tiny_llava import TinyLlavaSpec, build_processor, build_tiny_llava, train_tokenizer
from rlhfv_ray.scene_world.language_pretrain import LanguagePretrainConfig, pretrain_language_model
from rlhfv_ray.scene_world.vision_pretrain import VisionPretrainConfig, pretrain_vision_tower
from rlhfv_ray.scene_world.grammar import world_texts
from rlhfv_ray.scene_world.spec import WorldParams

logger = logging.getLogger(__name__)


class BuildModelSection(StrictModel):
    spec: TinyLlavaSpec = TinyLlavaSpec()
    vision_pretrain: VisionPretrainConfig = VisionPretrainConfig()
    language_pretrain: LanguagePretrainConfig = LanguagePretrainConfig()
    seed: int = 0


class BuildModelConfig(BuildModelSection):
    out: str
    world: WorldParams = WorldParams()

    @model_validator(mode="after")
    def _sizes_agree(self) -> "BuildModelConfig":
        if self.spec.image_size != self.world.image_size:
            raise ValueError(f"spec.image_size ({self.spec.image_size}) must equal world.image_size "
                             f"({self.world.image_size})")
        return self


def world_tokenizer(vocab_size: int):
    """The tokenizer of the tiny LLaVA, trained on the world's text."""
    texts = world_texts()
    # Sentences appear both at the start of a text and after a space: train on both forms so the
    # common words are single tokens either way.
    return train_tokenizer(texts + [" " + t for t in texts], vocab_size)


def build_initial_model(config: BuildModelConfig, log=logger.info) -> dict:
    torch.manual_seed(config.seed)
    tokenizer = world_tokenizer(config.spec.tokenizer_vocab_size)
    processor = build_processor(tokenizer, config.spec)
    model = build_tiny_llava(tokenizer, config.spec)
    metrics = pretrain_vision_tower(model.model.vision_tower, processor, config.world, config.vision_pretrain, log=log)
    metrics.update(pretrain_language_model(model, processor, config.world, config.language_pretrain, log=log))
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    metrics["vocab_size"] = len(tokenizer)
    out = Path(config.out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    save_resolved_config(config, out)
    (out / "pretrain_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
