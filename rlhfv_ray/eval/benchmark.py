"""`rlhfv evaluate`: run a benchmark on a checkpoint and write its report.

A benchmark is a typed config (a `StrictModel`) with `run(model, processor) -> (metrics, records)`:
`metrics` a dict of figures (the report shows the rates it finds: `response_hallucination_rate`,
`mention_hallucination_rate`, `hallucination_by_type`, `object_recall`, `vqa_accuracy`, `pope`, and
their `ci95`), `records` one dict per response. Records of description prompts carry `id` (the
image), `hallucinated` and `types`, which is what pairs two models' answers scene by scene
(`compare_responses`). Benchmarks are plug-ins (`rlhfv_ray.plugins.BENCHMARKS`): `coco` (POPE and
CHAIR on COCO-format annotations) ships with the core, `scene` with the scene world.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError, model_validator

from rlhfv_ray.config import StrictModel, describe_errors, save_resolved_config
from rlhfv_ray.eval.stats import paired_rate_difference
from rlhfv_ray.model.compute import ComputeSettings
from rlhfv_ray.plugins import BENCHMARKS, resolve
from rlhfv_ray.ray_runtime import RayConfig


class Benchmark(Protocol):
    def run(self, model, processor) -> tuple[dict, list[dict]]: ...


def make_benchmark(name: str, settings: dict) -> Benchmark:
    """The benchmark registered as `name`, configured by `settings` (its own keys, validated)."""
    cls = resolve(BENCHMARKS, name)
    try:
        return cls.model_validate(settings)
    except ValidationError as error:
        raise ValueError(f"settings of benchmark {name!r}: {describe_errors(error, prefix='settings')}") from None


class EvaluateConfig(StrictModel):
    model: str
    out: str  # the JSON report; the Markdown table, PNG chart and responses go beside it
    benchmark: str = "scene"  # a registered name or module:Class
    settings: dict[str, Any] = {}  # the benchmark's own config
    compute: ComputeSettings = ComputeSettings()  # num_gpus > 0: run in a Ray task holding that many GPUs
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _settings_valid(self) -> "EvaluateConfig":
        make_benchmark(self.benchmark, self.settings)
        return self

    def make_benchmark(self) -> Benchmark:
        return make_benchmark(self.benchmark, self.settings)


def evaluate_checkpoint(config: EvaluateConfig) -> dict:
    """Load `config.model`, run the benchmark, write JSON + Markdown + PNG + responses; on a GPU of
    the Ray cluster when `compute.num_gpus` asks for one (the driver of a `ray job submit` runs on
    the head node, which may have none)."""
    if config.compute.num_gpus == 0:
        return _evaluate_here(config)
    import ray

    from rlhfv_ray.ray_runtime import init_ray

    init_ray(config.ray)
    return ray.get(ray.remote(num_gpus=config.compute.num_gpus)(_evaluate_here).remote(config))


def _evaluate_here(config: EvaluateConfig) -> dict:
    from rlhfv_ray.eval.report import markdown_table, plot_metrics
    from rlhfv_ray.model.compute import load_for_inference

    benchmark = config.make_benchmark()
    model, processor = load_for_inference(config.model, config.compute)
    metrics, records = benchmark.run(model, processor)
    metrics.update(model=str(config.model), benchmark=config.benchmark)
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


def _judged(path: Path) -> dict:
    records = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {r["id"]: r for r in records if "hallucinated" in r}


def compare_responses(report_a: str | Path, report_b: str | Path) -> dict:
    """Model b against model a on the same benchmark images, paired by image: the response-level
    hallucination rate and each type's rate, b minus a, with 95% intervals and McNemar p-values."""
    a, b = _judged(responses_path(report_a)), _judged(responses_path(report_b))
    if set(a) != set(b):
        raise ValueError(f"{report_a} and {report_b} were not scored on the same images")
    ids = sorted(a, key=str)
    out = {"response_hallucination_rate": paired_rate_difference(
        [a[i]["hallucinated"] for i in ids], [b[i]["hallucinated"] for i in ids]).to_dict()}
    kinds = sorted({t for r in (*a.values(), *b.values()) for t in r.get("types", ())}, key=type_order)
    for kind in kinds:
        out[kind] = paired_rate_difference([kind in a[i].get("types", ()) for i in ids],
                                           [kind in b[i].get("types", ()) for i in ids]).to_dict()
    return out


# the paper's order of hallucination types; others (a plug-in's own) after them, alphabetically
TYPE_ORDER = ("object", "attribute", "number", "position")


def type_order(kind: str) -> tuple[int, str]:
    return (TYPE_ORDER.index(kind) if kind in TYPE_ORDER else len(TYPE_ORDER), kind)
