"""Pretrain the tiny CLIP vision tower on per-cell attributes of world scenes.

Real MLLMs start from a pretrained vision encoder; a tower trained from scratch inside LLaVA on
captions did not learn to see in minutes (design notes). With one 32 px patch per scene cell, the
patch token of cell i predicts that cell's class (or empty), color, count, its own cell index and the scene type with linear heads on
the same hidden layer LLaVA reads (`vision_feature_layer=-1`). The heads are thrown away after.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rlhfv_ray.scene_world.tiny_llava import pixel_values
from rlhfv_ray.scene_world.render import render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import COLORS, COLS, MAX_COUNT, OBJECT_CLASSES, ROWS, SCENE_TYPES, WorldParams, split_seed

logger = logging.getLogger(__name__)

CLASS_INDEX = {c.name: i + 1 for i, c in enumerate(OBJECT_CLASSES)}  # 0 = empty cell
COLOR_INDEX = {name: i for i, name in enumerate(COLORS)}
SCENE_TYPE_INDEX = {s.name: i for i, s in enumerate(SCENE_TYPES)}
N_CELLS = len(ROWS) * len(COLS)


@dataclass(frozen=True)
class VisionPretrainConfig:
    __pydantic_config__ = {"extra": "forbid"}
    scenes: int = 3000
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


def cell_targets(scene) -> tuple[list[int], list[int], list[int]]:
    """Per-cell (row-major) class, color and count targets; color/count are -100 on empty cells."""
    classes, colors, counts = [0] * N_CELLS, [-100] * N_CELLS, [-100] * N_CELLS
    for g in scene.groups:
        i = g.row * len(COLS) + g.col
        classes[i], colors[i], counts[i] = CLASS_INDEX[g.cls], COLOR_INDEX[g.color], g.count - 1
    return classes, colors, counts


class CellHeads(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.cls = nn.Linear(hidden, len(CLASS_INDEX) + 1)
        self.color = nn.Linear(hidden, len(COLOR_INDEX))
        self.count = nn.Linear(hidden, MAX_COUNT)
        self.cell = nn.Linear(hidden, N_CELLS)  # where the patch is: makes position readable too
        self.scene = nn.Linear(hidden, len(SCENE_TYPES))  # every patch sees the background


def _features(vision_tower, pixels: torch.Tensor) -> torch.Tensor:
    out = vision_tower(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[-1][:, 1:]  # (batch, cells, hidden): drop CLS, as LLaVA does


def pretrain_vision_tower(vision_tower, processor, params: WorldParams, config: VisionPretrainConfig,
                          log=logger.info) -> dict:
    """Train `vision_tower` in place; returns held-out per-cell accuracies."""
    torch.manual_seed(config.seed)
    n_eval = max(config.scenes // 10, 64)
    scenes = [sample_scene(split_seed("sft", i), params) for i in range(config.scenes + n_eval)]
    pixels = pixel_values(processor, [render_scene(s, params.image_size) for s in scenes])
    targets = torch.tensor([cell_targets(s) for s in scenes])  # (n, 3, cells)
    scene_types = torch.tensor([SCENE_TYPE_INDEX[s.scene_type] for s in scenes])
    train_x, eval_x = pixels[: config.scenes], pixels[config.scenes:]
    eval_types = scene_types[config.scenes:]
    train_y, eval_y = targets[: config.scenes], targets[config.scenes:]

    heads = CellHeads(vision_tower.config.hidden_size)
    optimizer = torch.optim.AdamW(list(vision_tower.parameters()) + list(heads.parameters()), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps)
    vision_tower.train()
    started = time.perf_counter()
    for step in range(config.steps):
        idx = torch.randint(0, len(train_x), (config.batch_size,))
        feats = _features(vision_tower, train_x[idx])
        y = train_y[idx]
        cells = torch.arange(N_CELLS).expand(len(idx), N_CELLS)
        loss = (F.cross_entropy(heads.cell(feats).transpose(1, 2), cells)
                + F.cross_entropy(heads.scene(feats).transpose(1, 2), scene_types[idx, None].expand(-1, N_CELLS))
                + F.cross_entropy(heads.cls(feats).transpose(1, 2), y[:, 0])
                + F.cross_entropy(heads.color(feats).transpose(1, 2), y[:, 1], ignore_index=-100)
                + F.cross_entropy(heads.count(feats).transpose(1, 2), y[:, 2], ignore_index=-100))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == config.steps - 1:
            log(f"vision pretrain step {step} loss {loss.item():.4f}")
    vision_tower.eval()
    with torch.no_grad():
        feats = _features(vision_tower, eval_x)
        occupied = eval_y[:, 1] != -100
        metrics = {
            "cell_class_accuracy": (heads.cls(feats).argmax(-1) == eval_y[:, 0]).float().mean().item(),
            "cell_color_accuracy": (heads.color(feats).argmax(-1) == eval_y[:, 1])[occupied].float().mean().item(),
            "cell_count_accuracy": (heads.count(feats).argmax(-1) == eval_y[:, 2])[occupied].float().mean().item(),
            "scene_type_accuracy": (heads.scene(feats).argmax(-1) == eval_types[:, None]).float().mean().item(),
            "seconds": time.perf_counter() - started,
        }
    return metrics
