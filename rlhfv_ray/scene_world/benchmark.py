"""The scene world's hallucination benchmark (plug-in `scene`): held-out scenes, detailed-description
prompts and VQA, greedy decoding, scored exactly by `metrics.py` against the scene's ground truth.
Scenes come from the "benchmark" seed split, never used for SFT or feedback; the "validation" split
serves model selection during training."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.model.generate import GenerationSettings, generate_batched
from rlhfv_ray.scene_world.corpus import CAPTION_TASK, benchmark_examples
from rlhfv_ray.scene_world.metrics import CaptionScore, VQAResult, score_caption, summarize
from rlhfv_ray.scene_world.render import render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import WorldParams, split_seed


class SceneBenchmark(StrictModel):
    # Object HalBench uses 300 images; here a scene costs nothing, and on 300 the 95% interval of a
    # rate near 0.3 is ±0.05, wider than the differences this project reports (eval/stats.py)
    scenes: int = Field(1000, gt=0)
    vqa_per_scene: int = Field(2, ge=0)
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(96, gt=0)
    split: Literal["benchmark", "validation"] = "benchmark"
    world: WorldParams = WorldParams()

    def scenes_list(self):
        return [sample_scene(split_seed(self.split, i), self.world) for i in range(self.scenes)]

    def run(self, model, processor) -> tuple[dict, list[dict]]:
        """(metrics, one record per response) for `model` on the benchmark scenes."""
        scenes = self.scenes_list()
        images = {s.seed: render_scene(s, self.world.image_size) for s in scenes}
        by_seed = {s.seed: s for s in scenes}
        examples = [e for i, s in enumerate(scenes) for e in benchmark_examples(s, i, self.vqa_per_scene)]
        started = time.perf_counter()
        generations = generate_batched(model, processor, [images[e.seed] for e in examples],
                                       [e.prompt for e in examples],
                                       GenerationSettings(max_new_tokens=self.max_new_tokens), self.batch_size)
        seconds = time.perf_counter() - started
        captions: list[CaptionScore] = []
        vqa: list[VQAResult] = []
        records = []
        for example, generation in zip(examples, generations):
            record = {"id": example.seed, "task": example.task, "prompt": example.prompt,
                      "response": generation.text, "finished": generation.finished}
            if example.task == CAPTION_TASK:
                score = score_caption(by_seed[example.seed], generation.text)
                captions.append(score)
                record.update(hallucinated=score.hallucinated, types=sorted(score.types), readable=score.readable)
            else:
                result = VQAResult(example.kind, example.answer, generation.text)
                vqa.append(result)
                record.update(id=f"{example.seed}:{example.prompt}", expected=example.answer, kind=example.kind,
                              correct=result.correct)
            records.append(record)
        metrics = summarize(captions, vqa)
        metrics["generation_seconds"] = seconds
        metrics["split"] = self.split
        return metrics, records
