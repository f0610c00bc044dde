"""Config sections shared by the training jobs (SFT, DDPO): optimisation, scaling, DeepSpeed, Ray."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rlhfv_ray.config import StrictModel
from rlhfv_ray.training.lora import LoraSettings
from rlhfv_ray.training.tracking import TrackingSettings


class OptimConfig(StrictModel):
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = Field(50, ge=0)
    max_steps: int = Field(600, gt=0)  # optimizer steps
    global_batch_size: int = Field(32, gt=0)  # examples per optimizer step, over all workers
    micro_batch_size: int = Field(32, gt=0)  # examples per forward/backward per worker
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)


class ScalingSettings(StrictModel):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=-1)  # Ray Train FailureConfig: restarts of the worker group


class DeepSpeedSettings(StrictModel):
    zero_stage: Literal[0, 1, 2, 3] = 2
    # "auto": bf16 on GPU, fp32 on CPU (the CPU accelerator has no fast bf16 path for training).
    precision: Literal["auto", "bf16", "fp32"] = "auto"


class LengthGrouping(StrictModel):
    """Micro batches of examples of about the same length (HF Trainer's group_by_length), so that a
    batch pads less: each window of `window` micro batches of the shuffled stream is sorted by length
    and cut again, and its batches are taken in a seeded random order."""

    window: int = Field(16, ge=2)  # micro batches per sorted window: longer, less padding, less random


class CheckpointSettings(StrictModel):
    storage_path: str = "runs/ray_results"  # local dir here; s3://... or NFS on a cluster
    every_steps: int = Field(200, gt=0)
    num_to_keep: int = Field(2, ge=1)


class TrainSection(StrictModel):
    """What every training job shares: optimisation, scaling, engine, checkpoints, logging."""

    optim: OptimConfig = OptimConfig()
    scaling: ScalingSettings = ScalingSettings()
    deepspeed: DeepSpeedSettings = DeepSpeedSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    log_every: int = Field(10, gt=0)  # steps between logged records (metrics.jsonl, Result.metrics_dataframe, trackers)
    tracking: TrackingSettings = TrackingSettings()
    seed: int = 0
    freeze_vision_tower: bool = True  # LLaVA-1.5 trains projector + LLM; the vision tower stays frozen
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% more compute
    lora: LoraSettings | None = None  # train LoRA adapters (PEFT) instead of the full model
    group_by_length: LengthGrouping | None = None  # off: micro batches as the shuffle draws them

    @model_validator(mode="after")
    def _batch_divides(self) -> "TrainSection":
        per_step = self.optim.micro_batch_size * self.scaling.num_workers
        if self.optim.global_batch_size % per_step:
            raise ValueError(
                f"optim.global_batch_size ({self.optim.global_batch_size}) must be a multiple of "
                f"optim.micro_batch_size x scaling.num_workers ({per_step})")
        return self

    @property
    def grad_accum_steps(self) -> int:
        return self.optim.global_batch_size // (self.optim.micro_batch_size * self.scaling.num_workers)
