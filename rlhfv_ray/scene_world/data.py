"""The scene world as a data source: it writes its data in the formats users' data comes in, and
the pipeline reads them through the same public paths (`rlhfv sft --data`, `collect-feedback
--prompts`, `evaluate --benchmark coco`).

- `sft/corpus.parquet`: the noisy SFT corpus (a caption and a VQA conversation per scene) as parquet
  with the image inline and LLaVA `conversations`; `sft/vqa.parquet`, its VQA part, is what DDPO
  rehearses;
- `prompts/feedback.parquet`: fresh scenes of the "feedback" split with a description prompt each
  (RLHF-V layout without answers), each row's scene in `meta` for the oracle annotator;
- `coco/`: the benchmark scenes as images + COCO instances JSON (`coco_export.py`).
"""

from __future__ import annotations

import logging
import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.conversations import IMAGE_MARKER
from rlhfv_ray.scene_world.corpus import VQA_TASK, corpus_stats, sft_examples
from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS
from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import ObjectGroup, Scene, sample_scene
from rlhfv_ray.scene_world.spec import WorldParams, split_seed

logger = logging.getLogger(__name__)

SFT_DIR, PROMPTS_FILE, COCO_DIR = "sft", "prompts/feedback.parquet", "coco"
CORPUS_FILE, VQA_FILE = "corpus.parquet", "vqa.parquet"


class SceneDataSection(StrictModel):
    sft_scenes: int = Field(4000, gt=0)  # seeds [0, sft_scenes) of the "sft" split
    vqa_per_scene: int = Field(6, ge=0)  # questions in each scene's VQA conversation
    feedback_scenes: int = Field(3300, gt=0)  # about 1.4k pairs (the paper's size) from the SFT base
    feedback_first_index: int = Field(0, ge=0)  # scenes [first, first + feedback_scenes) of "feedback"
    coco_scenes: int = Field(0, ge=0)  # benchmark scenes [0, n) exported to coco/ (0: none)


class SceneDataConfig(SceneDataSection):
    out: str
    world: WorldParams = WorldParams()


def scene_to_json(scene: Scene) -> str:
    return json.dumps(asdict(scene))


def scene_from_json(text: str) -> Scene:
    data = json.loads(text)
    return Scene(data["seed"], data["scene_type"], tuple(ObjectGroup(**g) for g in data["groups"]))


def conversation_row(row_id: str, png: bytes, turns, **extra) -> dict:
    """A row of the parquet SFT layout: image inline, LLaVA conversations with the image marker."""
    conversations = []
    for i, (question, answer) in enumerate(turns):
        user = f"{IMAGE_MARKER}\n{question}" if i == 0 else question
        conversations += [{"from": "human", "value": user}, {"from": "gpt", "value": answer}]
    return {"id": row_id, "image": {"bytes": png, "path": f"{row_id}.png"}, "conversations": conversations,
            **extra}


def _write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def write_sft_corpus(config: SceneDataConfig) -> dict:
    """`sft/corpus.parquet`: every scene's caption and VQA conversation, in scene order (the trainer
    shuffles locally only, so the two kinds must be interleaved in the file); `sft/vqa.parquet`: the
    VQA conversations alone, what DDPO rehearses."""
    rows: list[dict] = []
    for index in range(config.sft_scenes):
        scene = sample_scene(split_seed("sft", index), config.world)
        png = image_to_png_bytes(render_scene(scene, config.world.image_size))
        for example in sft_examples(scene, config.world, config.vqa_per_scene):
            rows.append(conversation_row(f"{scene.seed}:{example.task}", png, example.turns,
                                         task=example.task, kind=example.kind))
    out = Path(config.out) / SFT_DIR
    _write(rows, out / CORPUS_FILE)
    _write([r for r in rows if r["task"] == VQA_TASK], out / VQA_FILE)
    stats = corpus_stats(rows)
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def write_prompt_set(config: SceneDataConfig) -> int:
    rows = []
    for index in range(config.feedback_first_index, config.feedback_first_index + config.feedback_scenes):
        scene = sample_scene(split_seed("feedback", index), config.world)
        png = image_to_png_bytes(render_scene(scene, config.world.image_size))
        prompt = DESCRIPTION_PROMPTS[index % len(DESCRIPTION_PROMPTS)]
        rows.append({"idx": scene.seed, "image": {"bytes": png, "path": f"scene_{scene.seed}.png"},
                     "text": json.dumps({"question": prompt}), "meta": json.dumps({"scene": scene_to_json(scene)})})
    _write(rows, Path(config.out) / PROMPTS_FILE)
    return len(rows)


def write_scene_data(config: SceneDataConfig) -> dict:
    """`rlhfv scene-data`: the SFT corpus and the feedback prompt set of the world."""
    save_resolved_config(config, config.out)
    stats = {"sft": write_sft_corpus(config), "prompts": write_prompt_set(config)}
    if config.coco_scenes:
        from rlhfv_ray.scene_world.coco_export import export_coco

        scenes = [sample_scene(split_seed("benchmark", i), config.world) for i in range(config.coco_scenes)]
        export_coco(scenes, config.world.image_size, Path(config.out) / COCO_DIR)
        stats["coco_scenes"] = config.coco_scenes
    logger.info(f"scene-data: {stats['sft']['captions']} captions, {stats['sft']['vqa_conversations']} VQA "
                f"conversations, {stats['prompts']} feedback prompts in {config.out}")
    return stats
