"""`make demo` / `rlhfv demo`: the pipeline end to end on the embedded scene world.

Stages (each skipped when its output exists for the same config, unless `reuse=false`):
world + initial model -> SFT base on Ray Train -> hallucination benchmark. The report
(`report.json`, `report.md`, `report.png`) lands in `out_dir`.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.eval.benchmark import BenchmarkConfig, EvaluateConfig, evaluate_checkpoint
from rlhfv_ray.eval.report import markdown_table, plot_metrics
from rlhfv_ray.model.bootstrap import BuildModelConfig, BuildModelSection, build_initial_model
from rlhfv_ray.stages import run_stage
from rlhfv_ray.training.config import RayConfig
from rlhfv_ray.training.sft import SFTConfig, SFTSection, run_sft
from rlhfv_ray.world.spec import WorldParams


class DemoConfig(StrictModel):
    out_dir: str = "runs/demo"
    reuse: bool = True
    world: WorldParams = WorldParams()
    model: BuildModelSection = BuildModelSection()
    sft: SFTSection = SFTSection()
    benchmark: BenchmarkConfig = BenchmarkConfig()
    ray: RayConfig = RayConfig()


def _evaluate(config: DemoConfig, name: str, model_dir: str, seconds: dict) -> dict:
    eval_config = EvaluateConfig(model=model_dir, out=str(Path(config.out_dir) / "eval" / f"{name}.json"),
                                 world=config.world, benchmark=config.benchmark)
    _, seconds[f"evaluate_{name}"] = run_stage(
        f"evaluate {name}", eval_config, Path(eval_config.out).parent / name,
        lambda: evaluate_checkpoint(eval_config), config.reuse)
    return json.loads(Path(eval_config.out).read_text())


def run_demo(config: DemoConfig) -> dict:
    out = Path(config.out_dir)
    save_resolved_config(config, out)
    seconds: dict[str, float] = {}

    build = BuildModelConfig.model_validate(
        {**config.model.model_dump(), "out": str(out / "init_model"), "world": config.world})
    _, seconds["build_model"] = run_stage("build-model", build, build.out, lambda: build_initial_model(build),
                                          config.reuse)

    sft = SFTConfig.model_validate({**config.sft.model_dump(), "model": build.out, "out": str(out / "base_model"),
                                    "world": config.world, "ray": config.ray})
    _, seconds["sft"] = run_stage("sft", sft, sft.out, lambda: run_sft(sft), config.reuse)

    results = {"base": _evaluate(config, "base", sft.out, seconds)}
    report = {**results, "stage_seconds": seconds}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(results)
    (out / "report.md").write_text(table)
    plot_metrics(results, out / "report.png")
    print("\n" + table)
    print(f"report: {out / 'report.json'}")
    return report
