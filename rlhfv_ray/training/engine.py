"""The DeepSpeed engine of a training worker: config, initialisation, checkpoints, HF export.

Imported only inside Ray Train workers (and tests of the engine): it is where DeepSpeed lives.
On a machine without CUDA, DeepSpeed's CPU accelerator and the gloo backend are used, in fp32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.training.schedule import warmup_cosine


def prepare_deepspeed() -> None:
    """Before DeepSpeed starts: it picks its accelerator at import time, and without CUDA it must
    be told to use the CPU. On the CPU accelerator its shared-memory all-reduce op is turned off:
    only DeepSpeed's inference all-reduce uses it (training reduces through gloo), yet every
    process that starts DeepSpeed loads it, and from a new install path that is a C++ build of
    over a minute on 2 cores. DeepSpeed keeps its op table in one dict, edits to which persist."""
    if torch.cuda.is_available():
        return
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() == "cpu":
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def resolve_bf16(section: TrainSection) -> bool:
    if section.deepspeed.precision == "auto":
        return section.scaling.use_gpu and torch.cuda.is_available()
    return section.deepspeed.precision == "bf16"


def deepspeed_config(section: TrainSection, bf16: bool) -> dict:
    """The DeepSpeed config dict for `section` (pure; the batch sizes are DeepSpeed's own checks)."""
    optim = section.optim
    zero: dict = {"stage": section.deepspeed.zero_stage}
    if section.deepspeed.zero_stage == 3:
        # Gather the partitioned weights on save, so the final model is one save_pretrained dir.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_batch_size": optim.global_batch_size,
        "train_micro_batch_size_per_gpu": optim.micro_batch_size,
        "gradient_accumulation_steps": section.grad_accum_steps,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": bf16},
        "optimizer": {
            "type": "AdamW",
            # torch's AdamW: no JIT-compiled CUDA op needed, works on CPU and GPU alike.
            "params": {"lr": optim.lr, "betas": list(optim.betas), "eps": 1e-8,
                       "weight_decay": optim.weight_decay, "torch_adam": True},
        },
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


def initialize_engine(model: torch.nn.Module, section: TrainSection):
    """DeepSpeed engine over the trainable parameters, with the warmup+cosine schedule."""
    prepare_deepspeed()
    import deepspeed

    optim = section.optim

    def scheduler(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, optim.warmup_steps, optim.max_steps, optim.min_lr_ratio))

    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=deepspeed_config(section, resolve_bf16(section)),
        lr_scheduler=scheduler,
    )
    return engine


def save_engine_checkpoint(engine, directory: str | Path, client_state: dict) -> None:
    """Every rank writes its shard of model/optimizer/scheduler state (collective call)."""
    engine.save_checkpoint(str(directory), tag="state", client_state=client_state)


def load_engine_checkpoint(engine, directory: str | Path) -> dict:
    """Restore model, optimizer and scheduler state; returns the client state saved with them."""
    path, client_state = engine.load_checkpoint(
        str(directory), tag="state", load_optimizer_states=True, load_lr_scheduler_states=True)
    if path is None:
        raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}")
    return client_state or {}


def full_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """The unpartitioned weights on rank 0 (None elsewhere); collective under ZeRO-3."""
    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()  # gathers the shards onto rank 0
    else:
        state = engine.module.state_dict()
    return state if engine.global_rank == 0 else None


def export_pretrained(engine, processor, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> None:
    """Write a `save_pretrained` directory (model + processor) from rank 0; collective call."""
    state = full_state_dict(engine)
    if engine.global_rank != 0:
        return
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype) for k, v in state.items()}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    engine.module.save_pretrained(str(out), state_dict=state)
    processor.save_pretrained(str(out))
