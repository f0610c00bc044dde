"""LoRA (and QLoRA) through PEFT, for SFT and DDPO on any image-text-to-text family.

The adapters go on the language model's linear layers named in `target_modules` (and on the
vision encoder's only with `vision: true`); `modules_to_save` trains whole modules beside them
(e.g. the projector: `multi_modal_projector` for LLaVA, PaliGemma and Gemma 3, `connector` for
Idefics3 and SmolVLM). A DDPO run's reference log-probs stay those of the frozen base: at step 0
the adapted model equals it, since PEFT starts every adapter's B matrix at zero.

The trained output is the adapter (`adapter_config.json` + weights) with the processor; with
`merge: true`, also the merged model under `merged/`. `model.io.load_model` loads either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.model.families import vision_module

MERGED_SUBDIR = "merged"


class LoraSettings(StrictModel):
    r: int = Field(16, gt=0)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], min_length=1)
    vision: bool = False  # also adapt the vision encoder's matching layers
    modules_to_save: list[str] = []  # trained in full beside the adapters, e.g. the projector
    merge: bool = False  # also write base + adapter merged, as a plain save_pretrained model
    load_in_4bit: bool = False  # QLoRA: the frozen base in 4-bit NF4 (bitsandbytes, CUDA only)
    # The frozen base in bf16 while the adapters train in fp32: half the memory of an fp32 base
    # (it is never updated, so it needs no fp32 copy). "auto": the training precision.
    frozen_dtype: Literal["auto", "bfloat16"] = "auto"


def target_module_names(model: torch.nn.Module, settings: LoraSettings) -> list[str]:
    """Full names of the linear layers to adapt: last name component in `target_modules`, outside
    the vision encoder unless `settings.vision`."""
    vision = {id(m) for m in vision_module(model).modules()} if not settings.vision else set()
    wanted = set(settings.target_modules)
    names = [name for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] in wanted and id(module) not in vision]
    if not names:
        raise ValueError(f"lora.target_modules {sorted(wanted)} match no linear layer of {type(model).__name__}")
    return names


def apply_lora(model: torch.nn.Module, settings: LoraSettings, trainable_dtype: torch.dtype | None = None):
    """`model` wrapped as a PeftModel with fresh adapters; only adapters and `modules_to_save` train,
    in `trainable_dtype` if given (fp32 adapters on a bf16 base)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=target_module_names(model, settings),
                        modules_to_save=settings.modules_to_save or None)
    peft_model = get_peft_model(model, config)
    if trainable_dtype is not None:
        for parameter in peft_model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(trainable_dtype)
    return peft_model


def quantization_config(settings: LoraSettings):
    """The 4-bit base of QLoRA, or None."""
    if not settings.load_in_4bit:
        return None
    if not torch.cuda.is_available():
        raise ValueError("lora.load_in_4bit (QLoRA) needs CUDA: bitsandbytes' 4-bit layers do not train on CPU")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def write_merged(adapter_dir: str | Path) -> Path:
    """base + adapter merged into `adapter_dir/merged` (a plain save_pretrained model)."""
    from rlhfv_ray.model.io import load_model, load_processor

    out = Path(adapter_dir) / MERGED_SUBDIR
    load_model(adapter_dir).save_pretrained(str(out))
    load_processor(adapter_dir).save_pretrained(str(out))
    return out
