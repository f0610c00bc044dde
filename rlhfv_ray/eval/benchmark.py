"""The hallucination benchmark: held-out scenes, detailed-description prompts and VQA, greedy
decoding, scored by `metrics.py`. Scenes come from the "benchmark" seed split, never used for SFT or
feedback; the "validation" split serves model selection during training."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.eval.metrics import CaptionScore, VQAResult, score_caption, summarize
from rlhfv_ray.eval.stats import paired_rate_difference
from rlhfv_ray.model.generate import GenerationSettings, generate_batched
from rlhfv_ray.world.corpus import CAPTION_TASK, benchmark_examples
from rlhfv_ray.world.render import render_scene
from rlhfv_ray.world.scene import sample_scene
from rlhfv_ray.world.spec import HALLUCINATION_TYPES, WorldParams, split_seed


class BenchmarkConfig(StrictModel):
    # Object HalBench uses 300 images; here a scene costs nothing, and on 300 the 95% interval of a
    # rate near 0.3 is ±0.05, wider than the differences this project reports (eval/stats.py)
    scenes: int = Field(1000, gt=0)
    vqa_per_scene: int = Field(2, ge=0)
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(96, gt=0)
    split: Literal["benchmark", "validation"] = "benchmark"


class EvaluateConfig(StrictModel):
    model: str
    out: str  # the JSON report; the Markdown table, PNG chart and responses go beside it
    world: WorldParams = WorldParams()
    benchmark: BenchmarkConfig = BenchmarkConfig()


def run_benchmark(model, processor, config: BenchmarkConfig, world: WorldParams) -> tuple[dict, list[dict]]:
    """(metrics, one record per response) for `model` on the benchmark scenes."""
    scenes = [sample_scene(split_seed(config.split, i), world) for i in range(config.scenes)]
    images = {s.seed: render_scene(s, world.image_size) for s in scenes}
    by_seed = {s.seed: s for s in scenes}
    examples = [e for i, s in enumerate(scenes) for e in benchmark_examples(s, i, config.vqa_per_scene)]
    started = time.perf_counter()
    generations = generate_batched(model, processor, [images[e.seed] for e in examples],
                                   [e.prompt for e in examples],
                                   GenerationSettings(max_new_tokens=config.max_new_tokens), config.batch_size)
    seconds = time.perf_counter() - started
    captions: list[CaptionScore] = []
    vqa: list[VQAResult] = []
    records = []
    for example, generation in zip(examples, generations):
        record = {"seed": example.seed, "task": example.task, "prompt": example.prompt,
                  "response": generation.text, "finished": generation.finished}
        if example.task == CAPTION_TASK:
            score = score_caption(by_seed[example.seed], generation.text)
            captions.append(score)
            record.update(hallucinated=score.hallucinated, types=sorted(score.types), readable=score.readable)
        else:
            result = VQAResult(example.kind, example.answer, generation.text)
            vqa.append(result)
            record.update(expected=example.answer, kind=example.kind, correct=result.correct)
        records.append(record)
    metrics = summarize(captions, vqa)
    metrics["generation_seconds"] = seconds
    metrics["split"] = config.split
    return metrics, records


def evaluate_checkpoint(config: EvaluateConfig) -> dict:
    """Load `config.model`, run the benchmark, write JSON + Markdown + PNG + responses."""
    from rlhfv_ray.eval.report import markdown_table, plot_metrics
    from rlhfv_ray.model.io import load_model_and_processor

    model, processor = load_model_and_processor(config.model)
    model.eval()
    metrics, records = run_benchmark(model, processor, config.benchmark, config.world)
    metrics["model"] = str(config.model)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2))
    with open(responses_path(out), "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    name = Path(config.model).name or "model"
    out.with_suffix(".md").write_text(markdown_table({name: metrics}))
    plot_metrics({name: metrics}, out.with_suffix(".png"))
    save_resolved_config(config, out.parent)
    return metrics


def responses_path(report_json: str | Path) -> Path:
    """Where `evaluate_checkpoint` writes the per-response records beside its JSON report."""
    return Path(report_json).with_suffix(".responses.jsonl")


def _caption_outcomes(path: Path) -> dict[int, dict]:
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["seed"]: r for r in records if r["task"] == CAPTION_TASK}


def compare_responses(report_a: str | Path, report_b: str | Path) -> dict:
    """Model b against model a on the same benchmark scenes, paired by scene: the response-level
    hallucination rate and each type's rate, b minus a, with 95% intervals and McNemar p-values."""
    a, b = _caption_outcomes(responses_path(report_a)), _caption_outcomes(responses_path(report_b))
    if set(a) != set(b):
        raise ValueError(f"{report_a} and {report_b} were not scored on the same scenes")
    seeds = sorted(a)
    out = {"response_hallucination_rate": paired_rate_difference(
        [a[s]["hallucinated"] for s in seeds], [b[s]["hallucinated"] for s in seeds]).to_dict()}
    for kind in HALLUCINATION_TYPES:
        out[kind] = paired_rate_difference([kind in a[s]["types"] for s in seeds],
                                           [kind in b[s]["types"] for s in seeds]).to_dict()
    return out
