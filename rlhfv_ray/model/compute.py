"""Where and in what precision a stage runs its model: the reference log-prob actors, the
feedback generation actors, the evaluation and the serving replicas take the same settings."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlhfv_ray.config import StrictModel


class ComputeSettings(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA where the process has a GPU
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    num_gpus: float = Field(0, ge=0)  # per Ray actor (a fraction shares a GPU between actors)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def load_for_inference(path: str, compute: ComputeSettings = ComputeSettings()):
    """(model in eval mode on its device and dtype, processor)."""
    from rlhfv_ray.model.io import load_model, load_processor

    device = resolve_device(compute.device)
    model = load_model(path, resolve_dtype(compute.dtype, device), device).eval()
    return model, load_processor(path)
