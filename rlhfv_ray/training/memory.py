"""What a training worker holds in memory: the bytes of its parameters and of its optimizer state
(master weights and moments), and its peak resident memory, logged with the training metrics.

Tensors are counted by storage, once: where the optimizer's parameters are the model's own
(no ZeRO, fp32) they add nothing; under ZeRO a rank holds its partition of the master weights and
moments, and under ZeRO-3 only its partition of the parameters (`ds_tensor`).
"""

from __future__ import annotations

import resource
import sys

import torch

GIB = float(1 << 30)


def _bytes(tensors, seen: set[int]) -> int:
    total = 0
    for tensor in tensors:
        if not torch.is_tensor(tensor) or tensor.numel() == 0:
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def _state_tensors(optimizer):
    for state in optimizer.state.values():
        yield from (v for v in state.values() if torch.is_tensor(v))


def worker_memory(engine) -> dict[str, float]:
    """GiB of this rank's parameters and optimizer state, and its peak resident set size."""
    seen: set[int] = set()
    params = _bytes((getattr(p, "ds_tensor", p.data) for p in engine.module.parameters()), seen)
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)  # DeepSpeed's ZeRO wrapper or the torch one
    masters = (p for group in inner.param_groups for p in group["params"])
    optimizer = _bytes(masters, seen) + _bytes(_state_tensors(inner), seen)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak = peak_kib if sys.platform == "darwin" else peak_kib * 1024
    out = {"param_gib": params / GIB, "optimizer_gib": optimizer / GIB, "peak_rss_gib": peak / GIB}
    if torch.cuda.is_available():
        out["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / GIB
    return out


def estimate_gib(parameters: float, trainable: float, workers: int, zero_stage: int, bf16: bool) -> dict[str, float]:
    """Per-worker GiB of model state for training `trainable` of `parameters` parameters with Adam
    (activations not included), as DeepSpeed lays it out: weights in bf16 or fp32 (partitioned by
    ZeRO-3), gradients likewise (partitioned from ZeRO-2), an fp32 master copy (with bf16, or
    whenever ZeRO partitions the optimizer) and two fp32 moments (partitioned from ZeRO-1)."""
    width = 2 if bf16 else 4
    weights = parameters * width / (workers if zero_stage == 3 else 1)
    grads = trainable * width / (workers if zero_stage >= 2 else 1)
    master = 4 if bf16 or zero_stage >= 1 else 0
    optimizer = trainable * (master + 8) / (workers if zero_stage >= 1 else 1)
    out = {"weights": weights / GIB, "grads": grads / GIB, "optimizer": optimizer / GIB}
    out["total"] = sum(out.values())
    return out
