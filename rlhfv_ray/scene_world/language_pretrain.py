"""Pretrain the tiny language model to read a scene and answer about it, then align the projector.

Real MLLMs start from a pretrained LLM that already does in-context lookup ("what color are the
cars?" -> find the cars, read their color). A 4-layer decoder trained from scratch inside LLaVA
learned that lookup far too slowly from images (VQA stuck near 0.6 after 2400 SFT steps: design
notes), while the same decoder learns it in a few hundred steps from text. So the build mirrors the
LLaVA recipe with a stand-in for each pretrained part:

1. Language pretraining: each of the 9 image-token positions holds a "bag of words" of its cell:
   the sum of the input embeddings of the scene type, its row, column and, when occupied, class,
   color and count words. The decoder learns conversations over those cells: several VQA
   questions, then a clean detailed description (the lookup circuit forms much faster when each
   sequence repeats it). Alongside, each step trains a batch of single existence questions whose
   cells fade in: only the class words at first, the other words added linearly after a hold. On
   full cells from the start, existence stays at chance (the class word is one of six superposed
   words, and the "is there a <class>?" lookup never leaves ln 2 within the budget); the fade lets
   the circuit form on class-only cells and carries it over (benchmarks/existence_probe.py:
   existence 0.50 -> 0.83, all kinds 0.603 -> 0.694 at 1,000 steps on exact cells).
2. Feature alignment (LLaVA stage 1): with the decoder frozen, the projector learns to map the
   pretrained vision tower's cell features onto those bags of words.

Only clean text is seen here: the web-text noise that teaches hallucination comes in SFT.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from rlhfv_ray.model.encoding import encode_conversations, pad_lm_batch
from rlhfv_ray.model.generate import generate_batched
from rlhfv_ray.scene_world.grammar import (DESCRIPTION_PROMPTS, absent_existence, clean_caption, normalize_answer,
                                     sample_vqa, vqa_for_group)
from rlhfv_ray.scene_world.render import render_scene
from rlhfv_ray.scene_world.scene import Scene, sample_scene
from rlhfv_ray.scene_world.spec import COLS, NUMBER_WORDS, OBJECT_CLASSES, ROWS, WorldParams, split_seed
from rlhfv_ray.scene_world.tiny_llava import pixel_values

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanguagePretrainConfig:
    __pydantic_config__ = {"extra": "forbid"}
    scenes: int = 6000
    questions_per_scene: int = 6
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50
    existence_batch_size: int = 32  # single existence questions per step, cells faded in (0: off)
    existence_hold_steps: int = 200  # class words only
    existence_ramp_steps: int = 200  # then the other words rise linearly to full weight
    align_scenes: int = 2000
    align_steps: int = 300
    align_lr: float = 3e-3
    eval_scenes: int = 100  # held-out (validation split) image VQA after alignment
    seed: int = 0


def cell_words(scene: Scene) -> list[list[str]]:
    """The words of each cell, row-major (the order of the image tokens)."""
    out = []
    for r in range(len(ROWS)):
        for c in range(len(COLS)):
            words = [scene.scene_type, ROWS[r], COLS[c]]  # the background shows the scene type
            group = scene.group_at(r, c)
            if group is not None:
                words += [group.cls, group.color, NUMBER_WORDS[group.count - 1]]
            out.append(words)
    return out


def class_words(scene: Scene) -> list[list[str]]:
    """Each cell's class word (none when empty), row-major: `cell_words` is [scene type, row,
    column] + [class, color, count] when occupied."""
    return [words[3:4] for words in cell_words(scene)]


def other_words(scene: Scene) -> list[list[str]]:
    """Every cell word but the class: the bag of `cell_words` = the bag of class words + of these."""
    return [words[:3] + words[4:] for words in cell_words(scene)]


def existence_conversations(scenes: list[Scene], rng: random.Random) -> list[list[tuple[str, str]]]:
    """One existence question per scene: half about a group it holds (yes), half about an absent class (no)."""
    out = []
    for scene in scenes:
        if rng.random() < 0.5:
            item = vqa_for_group(rng.choice(scene.groups), "existence")
        else:
            item = absent_existence(rng.choice([c.name for c in OBJECT_CLASSES if c.name not in scene.classes]))
        out.append([(item.question, item.answer)])
    return out


def fade_weight(step: int, hold: int, ramp: int) -> float:
    """Weight of the non-class cell words at `step` (1-based): 0 through `hold`, then linear to 1."""
    if step <= hold:
        return 0.0
    return 1.0 if ramp <= 0 else min(1.0, (step - hold) / ramp)


def cell_token_ids(tokenizer, scenes: list[Scene], words_of=cell_words) -> torch.Tensor:
    """(scenes, cells, width) token ids of each cell's words (`words_of(scene)`, row-major), padded
    with -1."""
    rows = []
    for scene in scenes:
        cells = [[t for w in words for t in tokenizer(" " + w, add_special_tokens=False)["input_ids"]]
                 for words in words_of(scene)]
        rows.append(cells)
    width = max(len(c) for cells in rows for c in cells)
    out = torch.full((len(rows), len(rows[0]), width), -1, dtype=torch.long)
    for i, cells in enumerate(rows):
        for j, ids in enumerate(cells):
            out[i, j, : len(ids)] = torch.tensor(ids)
    return out


def bag_of_words(embedding: torch.nn.Embedding, cell_ids: torch.Tensor) -> torch.Tensor:
    """(batch, cells, hidden): the sum of the input embeddings of each cell's words."""
    mask = (cell_ids >= 0).unsqueeze(-1)
    return (embedding(cell_ids.clamp(min=0)) * mask).sum(dim=2)


def _embed_with_cells(model, input_ids: torch.Tensor, class_ids: torch.Tensor, other_ids: torch.Tensor,
                      other_weight: float = 1.0) -> torch.Tensor:
    """Input embeddings with the image tokens replaced by the cells: class words + weight * other words."""
    embedding = model.get_input_embeddings()
    embeds = embedding(input_ids)
    image_positions = (input_ids == model.config.image_token_index).unsqueeze(-1)
    cells = bag_of_words(embedding, class_ids) + other_weight * bag_of_words(embedding, other_ids)
    # every row has exactly one image (cells-many tokens), in order: masked_scatter fills row-major
    return embeds.masked_scatter(image_positions, cells.to(embeds.dtype))


def _batch_loss(model, encoded: list, idx: list[int], class_ids: torch.Tensor, other_ids: torch.Tensor,
                pad_token_id: int, other_weight: float = 1.0) -> torch.Tensor:
    """Causal-LM loss of the conversations `encoded[idx]`, their image tokens replaced by the cells."""
    batch = pad_lm_batch([encoded[i][0] for i in idx], [encoded[i][1] for i in idx], pad_token_id)
    embeds = _embed_with_cells(model, batch["input_ids"], class_ids[idx], other_ids[idx], other_weight)
    return model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def _conversations(scenes: list[Scene], n: int, seed: int) -> list[list[tuple[str, str]]]:
    """`n` VQA questions about each scene and a clean description of it, half with the description
    first (captions are first turns in use), half with it last. Measured on the SFT base (400 SFT
    steps, benchmark of 300 scenes): description always first: recall 0.94, VQA 0.64 (questions
    answered by reading the description, not the image); always last: recall 0.69, VQA 0.73;
    half/half: recall 0.91, VQA 0.57. Descriptions and questions as separate sequences (measured on
    the decoder alone, teacher-forced single questions over exact cells, 750 steps): color 0.76,
    count 0.74, position 0.54, existence 0.53 (chance), so not adopted without a fix for existence."""
    rng = random.Random(seed)
    out = []
    for i, scene in enumerate(scenes):
        caption = [(DESCRIPTION_PROMPTS[i % len(DESCRIPTION_PROMPTS)], clean_caption(scene))]
        questions = [(item.question, item.answer) for item in sample_vqa(scene, rng, n)]
        out.append(caption + questions if i % 2 else questions + caption)
    return out


def pretrain_language_model(model, processor, params: WorldParams, config: LanguagePretrainConfig,
                            log=logger.info) -> dict:
    """Train the decoder on bag-of-words scenes, then the projector on vision features; in place."""
    torch.manual_seed(config.seed)
    tokenizer = processor.tokenizer
    scenes = [sample_scene(split_seed("sft", i), params) for i in range(config.scenes)]
    blank = Image.new("RGB", (params.image_size, params.image_size))  # only expands <image>
    encoded = encode_conversations(processor, [blank] * len(scenes),
                                   _conversations(scenes, config.questions_per_scene, config.seed))
    existence = encode_conversations(processor, [blank] * len(scenes),
                                     existence_conversations(scenes, random.Random(config.seed)))
    classes, others = cell_token_ids(tokenizer, scenes, class_words), cell_token_ids(tokenizer, scenes, other_words)

    started = time.perf_counter()
    model.train()
    # the decoder only (lm_head is tied to its input embeddings); the vision side is not in the graph
    decoder = list(model.model.language_model.parameters())
    optimizer = torch.optim.AdamW(decoder, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(1, config.steps + 1):
        lr = config.lr * min(1.0, step / config.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(scenes), (config.batch_size,), generator=generator).tolist()
        loss = _batch_loss(model, encoded, idx, classes, others, tokenizer.pad_token_id)
        if config.existence_batch_size > 0:
            idx = torch.randint(0, len(scenes), (config.existence_batch_size,), generator=generator).tolist()
            weight = fade_weight(step, config.existence_hold_steps, config.existence_ramp_steps)
            loss = loss + _batch_loss(model, existence, idx, classes, others, tokenizer.pad_token_id, weight)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder, 1.0)
        optimizer.step()
        if step % 50 == 0 or step == config.steps:
            log(f"language pretrain step {step}/{config.steps} loss {loss.item():.4f} "
                f"({time.perf_counter() - started:.0f} s)")
    metrics = {"language_final_loss": loss.item(), "language_seconds": time.perf_counter() - started}
    metrics.update(align_projector(model, processor, params, config, log=log))
    metrics.update(image_vqa_accuracy(model, processor, params, config.eval_scenes, config.seed))
    return metrics


def align_projector(model, processor, params: WorldParams, config: LanguagePretrainConfig, log=logger.info) -> dict:
    """LLaVA stage 1: the projector maps cell features onto the bag-of-words embeddings (MSE)."""
    started = time.perf_counter()
    scenes = [sample_scene(split_seed("sft", config.scenes + i), params) for i in range(config.align_scenes)]
    vision = model.model.vision_tower
    with torch.no_grad():
        pixels = pixel_values(processor, [render_scene(s, params.image_size) for s in scenes])
        hidden = vision(pixel_values=pixels, output_hidden_states=True).hidden_states
        features = hidden[model.config.vision_feature_layer][:, 1:]  # "default" strategy: drop CLS
        targets = bag_of_words(model.get_input_embeddings(), cell_token_ids(processor.tokenizer, scenes))
    projector = model.model.multi_modal_projector
    optimizer = torch.optim.AdamW(projector.parameters(), lr=config.align_lr)
    generator = torch.Generator().manual_seed(config.seed)
    for step in range(1, config.align_steps + 1):
        idx = torch.randint(0, len(scenes), (64,), generator=generator)
        loss = F.mse_loss(projector(features[idx]), targets[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        cosine = F.cosine_similarity(projector(features), targets, dim=-1).mean().item()
    log(f"projector alignment: mse {loss.item():.4f} cosine {cosine:.3f}")
    return {"align_mse": loss.item(), "align_cosine": cosine, "align_seconds": time.perf_counter() - started}


def image_vqa_accuracy(model, processor, params: WorldParams, n_scenes: int, seed: int) -> dict:
    """Single-question VQA with real images on validation scenes: the build's own health check."""
    if n_scenes <= 0:
        return {}
    model.eval()
    rng = random.Random(seed)
    scenes = [sample_scene(split_seed("validation", i), params) for i in range(n_scenes)]
    items = [(s, item) for s in scenes for item in sample_vqa(s, rng, 2)]
    generations = generate_batched(model, processor, [render_scene(s, params.image_size) for s, _ in items],
                                   [item.question for _, item in items])
    correct = sum(normalize_answer(g.text) == normalize_answer(item.answer) for g, (_, item) in zip(generations, items))
    return {"image_vqa_accuracy": correct / len(items)}
