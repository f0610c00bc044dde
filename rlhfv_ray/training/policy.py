"""The model a training worker trains, set up one way for SFT and DDPO.

- ZeRO-3 partitions the weights while they load (transformers' `HfDeepSpeedConfig` makes
  `from_pretrained` build the model under `deepspeed.zero.Init`), so no worker ever holds the whole
  model: the point of ZeRO-3 for a model that does not fit one device.
- bf16 where the engine trains in bf16 (GPU), fp32 otherwise.
- The vision encoder frozen by config; LoRA adapters through PEFT (`lora.py`); gradient
  checkpointing (non-reentrant, which needs no input gradients, so it composes with LoRA and a
  frozen vision encoder).
"""

from __future__ import annotations

import logging

import torch

from rlhfv_ray.logs import configure_logging
from rlhfv_ray.model.families import freeze_vision
from rlhfv_ray.model.io import load_model, load_processor
from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.training.engine import deepspeed_config, prepare_deepspeed, resolve_bf16
from rlhfv_ray.training.lora import apply_lora, quantization_config

log = logging.getLogger(__name__)

# transformers reads the ZeRO-3 config through a weak reference: it must outlive the load
_ZERO3_CONFIGS: list = []


def load_policy(section: TrainSection, model_path: str):
    """(model ready for `engine.initialize_engine`, processor)."""
    configure_logging()  # a Ray Train worker: its own process
    bf16 = resolve_bf16(section)
    if section.deepspeed.zero_stage == 3:
        prepare_deepspeed()
        import deepspeed
        from transformers.integrations import HfDeepSpeedConfig

        deepspeed.init_distributed()  # joins Ray Train's process group: the config needs the world size

        _ZERO3_CONFIGS.append(HfDeepSpeedConfig(deepspeed_config(section, bf16)))
    kwargs = {}
    if section.lora is not None and section.lora.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(section.lora)
    dtype = torch.bfloat16 if bf16 else torch.float32
    frozen_bf16 = section.lora is not None and section.lora.frozen_dtype == "bfloat16"
    model = load_model(model_path, dtype=torch.bfloat16 if frozen_bf16 else dtype, **kwargs)
    if section.freeze_vision_tower:
        freeze_vision(model)
    if section.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if section.lora is not None:
        model = apply_lora(model, section.lora, trainable_dtype=dtype if frozen_bf16 else None)
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in model.parameters()]  # ZeRO-3: ds_numel
    trainable, total = sum(n for n, grad in sizes if grad), sum(n for n, _ in sizes)
    log.info("training %d of %d parameters (%.2f%%)", trainable, total, 100 * trainable / max(total, 1))
    return model, load_processor(model_path)
