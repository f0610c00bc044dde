"""What differs between image-text-to-text families, in one place: the rest of the code is generic.

- Token types. Some processors return a per-token input beside the ids: Gemma 3's `token_type_ids`
  (1 on image tokens, which attend to each other both ways), Qwen-VL's `mm_token_type_ids` (image
  tokens, for the 3-D rotary positions), PaliGemma's `token_type_ids` (0 on the prefix, which is
  attended both ways; 1 on the causal suffix). Answer tokens get the value a generated token gets:
  1 for PaliGemma (its `generate` appends ones), 0 (text) for the others.
- Positions. The shared-prompt pair forward (`pair_forward.py`) runs the prompt once and both
  answers on its cache, with explicit position ids (`prompt_positions`): token counts from 0 for
  rotary embeddings (which see only differences, so PaliGemma's 1-based count changes nothing);
  for Qwen-VL the model's own 3-D rotary index of the prompt (`get_rope_index`: image tokens get
  their grid position), the answer continuing from its largest position + 1 on all three axes, as
  `generate` does. Families are listed only once a test shows the shared forward equal to the
  plain one (`tests/test_families.py`); any other family gets the plain forward.
- The vision encoder is `vision_tower` (LLaVA, PaliGemma, Gemma 3), `visual` (Qwen-VL) or
  `vision_model` (Idefics3, SmolVLM).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

TOKEN_ALIGNED_KEYS = ("token_type_ids", "mm_token_type_ids")
SHARED_PROMPT_MODEL_TYPES = frozenset({"llava", "llava_next", "llava_onevision", "idefics3", "smolvlm", "gemma3",
                                       "paligemma", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"})
_GENERATED_TOKEN_TYPE = {"PaliGemmaProcessor": 1}
_VISION_MODULE_NAMES = ("vision_tower", "visual", "vision_model")


def generated_token_type(processor) -> int:
    """The token type of a generated (answer) token, for processors that return token types."""
    return _GENERATED_TOKEN_TYPE.get(type(processor).__name__, 0)


def _unwrapped(model) -> nn.Module:
    """The transformers model inside a DeepSpeed engine or a PEFT wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def to_model(tensors: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """`tensors` on the model's device, floating-point ones (pixel values) in its dtype (bf16 on GPU)."""
    base = _unwrapped(model)
    return {k: v.to(base.device, base.dtype) if v.is_floating_point() else v.to(base.device)
            for k, v in tensors.items()}


def model_type(model) -> str:
    return _unwrapped(model).config.model_type


def uses_shared_prompt(model) -> bool:
    """Also False while training with gradient checkpointing, which turns the key/value cache off."""
    base = _unwrapped(model)
    if base.training and getattr(base, "is_activation_checkpointing", False):
        return False
    return model_type(model) in SHARED_PROMPT_MODEL_TYPES


def describe_pair_forward(model) -> str:
    kind = model_type(model)
    if getattr(_unwrapped(model), "is_activation_checkpointing", False):
        return f"pair forward: plain ({kind}: gradient checkpointing turns the key/value cache off)"
    if uses_shared_prompt(model):
        return f"pair forward: shared prompt ({kind}: both answers on one prompt cache)"
    return f"pair forward: plain ({kind} is not proven equal under the shared-prompt forward)"


def prompt_positions(model, prompt: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(position ids of left-padded prompts, each row's next position) as the model computes them:
    (batch, seq) token counts, or Qwen-VL's (3, batch, seq) rotary index."""
    mask = prompt["attention_mask"]
    rope_index = getattr(getattr(_unwrapped(model), "model", None), "get_rope_index", None)
    if rope_index is None:
        return (mask.cumsum(-1) - 1).clamp(min=0), mask.sum(-1)
    accepted = inspect.signature(rope_index).parameters
    positions, _ = rope_index(**{k: v for k, v in prompt.items() if k in accepted})
    return positions, positions.masked_fill(mask[None] == 0, -1).amax(dim=(0, 2)) + 1


def answer_positions(next_positions: torch.Tensor, length: int, like: torch.Tensor) -> torch.Tensor:
    """Position ids of answers that follow prompts whose next positions are `next_positions`, in
    the layout of the prompt's (`like`: 2-D, or 3-D with the axes first)."""
    positions = next_positions[:, None] + torch.arange(length, device=next_positions.device)
    return positions if like.ndim == 2 else positions[None].expand(like.shape[0], -1, -1)


def vision_module(model) -> nn.Module:
    """The vision encoder of a loaded image-text-to-text model."""
    base = _unwrapped(model)
    for owner in (getattr(base, "model", None), base):
        for name in _VISION_MODULE_NAMES:
            module = getattr(owner, name, None) if owner is not None else None
            if isinstance(module, nn.Module):
                return module
    raise AttributeError(f"no vision encoder ({', '.join(_VISION_MODULE_NAMES)}) found on "
                         f"{type(base).__name__}: set freeze_vision_tower: false, or add its name to "
                         "rlhfv_ray/model/families.py")


def freeze_vision(model) -> None:
    vision_module(model).requires_grad_(False)
