"""What differs between image-text-to-text families, in one place: the rest of the code is generic.

- Token types. Some processors return a per-token input beside the ids: Gemma 3's `token_type_ids`
  (1 on image tokens, which attend to each other both ways), Qwen-VL's `mm_token_type_ids` (image
  tokens, for the 3-D rotary positions), PaliGemma's `token_type_ids` (0 on the prefix, which is
  attended both ways; 1 on the causal suffix). Answer tokens get the value a generated token gets:
  1 for PaliGemma (its `generate` appends ones), 0 (text) for the others.
- Positions. The shared-prompt pair forward (`pair_forward.py`, `packing.py`) packs a pair's two
  answers after their prompt with explicit position ids (`prompt_positions`): token counts from 0
  for rotary embeddings (which see only differences, so PaliGemma's 1-based count changes nothing);
  for Qwen-VL the model's own 3-D rotary index of the prompt (`get_rope_index`: image tokens get
  their grid position), each answer continuing from its largest position + 1 on all three axes, as
  `generate` does.
- Attention. That forward gives the model a 4-D mask, so it carries what the model's own masks do:
  the blocks that attend both ways (`prompt_blocks`: Gemma 3's images, PaliGemma's prefix) and a
  sliding window, per layer type where layers differ (`attention_windows`). Families are listed only
  once a test shows that forward equal to the plain one (`tests/test_families.py`); any other
  family, and any attention kernel that takes no 4-D mask (flash attention), gets the plain forward.
- The vision encoder is `vision_tower` (LLaVA, PaliGemma, Gemma 3), `visual` (Qwen-VL) or
  `vision_model` (Idefics3, SmolVLM).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from rlhfv_ray.model import unpadded

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


def attention_kernel(model) -> tuple[str, torch.dtype]:
    """(the text model's attention kernel, the model's dtype): `sdpa` also where it runs unpadded."""
    base = _unwrapped(model)
    return unpadded.base_kernel(base.config.get_text_config()._attn_implementation), base.dtype


def enable_unpadded_attention(model) -> None:
    """Let the text model take unpadded packed rows (`unpadded.py`); other calls run as before."""
    unpadded.enable(_unwrapped(model).config.get_text_config())


def uses_shared_prompt(model) -> bool:
    return model_type(model) in SHARED_PROMPT_MODEL_TYPES and attention_kernel(model)[0] in unpadded.KERNELS


def describe_pair_forward(model) -> str:
    kind = model_type(model)
    if uses_shared_prompt(model):
        return f"pair forward: shared prompt ({kind}: both answers packed after one prompt, rows run unpadded)"
    attention = attention_kernel(model)[0]
    if kind in SHARED_PROMPT_MODEL_TYPES:
        return f"pair forward: plain ({kind} with {attention} attention, which takes no 4-D mask)"
    return f"pair forward: plain ({kind} is not proven equal under the shared-prompt forward)"


def _image_blocks(token_type_ids: torch.Tensor) -> torch.Tensor:
    """Gemma 3: each run of image tokens (type 1) attends to itself both ways."""
    is_image = token_type_ids == 1
    starts = is_image & ~nn.functional.pad(is_image, (1, 0))[:, :-1]
    return torch.where(is_image, starts.cumsum(-1) - 1, -1)


def _prefix_block(token_type_ids: torch.Tensor) -> torch.Tensor:
    """PaliGemma: the prefix (type 0: image and prompt) attends to itself both ways."""
    return torch.where(token_type_ids == 0, 0, -1)


_PROMPT_BLOCKS = {"gemma3": _image_blocks, "paligemma": _prefix_block}


def prompt_blocks(model, prompt: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """(batch, prompt) block ids of the prompt tokens that attend to their block both ways (-1:
    causal only), or None where the family's prompt attention is causal."""
    blocks = _PROMPT_BLOCKS.get(model_type(model))
    return None if blocks is None else blocks(prompt["token_type_ids"]).masked_fill(prompt["attention_mask"] == 0, -1)


def attention_windows(model) -> dict[str, int | None] | int | None:
    """The sliding window the text model's layers attend within: None (all full), one window for
    every layer, or {layer type: window or None} where layer types differ (Gemma 3)."""
    text = _unwrapped(model).config.get_text_config()
    window = getattr(text, "sliding_window", None)
    if getattr(text, "use_sliding_window", True) is False:
        window = None
    layer_types = set(getattr(text, "layer_types", None) or ())
    if len(layer_types) > 1:
        return {kind: window if kind == "sliding_attention" else None for kind in layer_types}
    return None if layer_types == {"full_attention"} else window


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


def answer_positions(next_positions: torch.Tensor, offsets: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Position ids of answer tokens at `offsets` (batch, n) within answers that follow prompts whose
    next positions are `next_positions`, in the layout of the prompt's (`like`: 2-D, or 3-D with
    the axes first)."""
    positions = next_positions[:, None] + offsets
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
