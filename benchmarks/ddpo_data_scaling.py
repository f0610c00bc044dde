"""DDPO data scaling (RLHF-V paper, Figure 2): hallucination of the aligned model against the number
of preference pairs it was trained on, every size with the same optimizer steps (the same budget, as in
the paper's curve; small sizes simply see their pairs for more epochs).

    python benchmarks/ddpo_data_scaling.py --base rlhfv_ray/scene_world/base_model --shards runs/demo/shards \
        [--sizes 100,200,400,800,1400] [--config configs/train_tiny.yaml] [--set optim.lr=1e-5 ...] \
        [--seed 0] [--eval-scenes 1000] [--out benchmarks/results/ddpo_data_scaling]

For each size N: DDPO from the base with `max_pairs=N` (the first N pairs of the shards) into
OUT/models/pairs_N, then the hallucination benchmark into OUT/eval/pairs_N/; the base itself is the
N = 0 point. Each stage is skipped when its output exists for the same config (the demo's stage
markers), so a rerun resumes where an earlier one stopped. The curve lands in OUT.json
and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from ddpo_common import (add_common_arguments, benchmark_config, evaluate, load_base_config, report_path,
                         train_variant)
from rlhfv_ray.data.shards import check_shards_match_model
from rlhfv_ray.training.train_ddpo import DDPOConfig

METRICS = ("response_hallucination_rate", "mention_hallucination_rate", "object_recall", "vqa_accuracy")
NAME = "ddpo_data_scaling"


def train(base: DDPOConfig, pairs: int, out: Path) -> tuple[DDPOConfig, float]:
    return train_variant(base, {"max_pairs": pairs}, f"pairs{pairs}", out / "models" / f"pairs_{pairs}")


def plot(points: list[dict], base: dict, path: Path) -> None:
    """Rates against used pairs on a log axis; the base (0 pairs, off a log axis) as dashed lines."""
    import matplotlib  # what rlhfv_ray/eval/report.py plots with

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [p["pairs_used"] for p in points]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = ((axes[0], METRICS[:2], "hallucination rate (lower is better)"),
              # recall and VQA guard against buying less hallucination with shorter, emptier answers
              (axes[1], METRICS[2:], "informativeness / helpfulness (higher is better)"))
    for ax, keys, title in panels:
        for key in keys:
            line, = ax.plot(x, [p[key] for p in points], marker="o", label=key.replace("_", " "))
            ax.axhline(base[key], color=line.get_color(), linestyle="--", linewidth=1, label="  base (0 pairs)")
        ax.set_xscale("log")
        ax.set_xticks(x, [str(n) for n in x])  # the sizes themselves, not powers of ten
        ax.minorticks_off()
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("preference pairs (log scale; same optimizer steps for every size)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle("DDPO data scaling on the scene world (RLHF-V Fig. 2)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, NAME)
    parser.add_argument("--sizes", default="100,200,400,800,1400")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = Path(args.out)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    base_config = load_base_config(args, seed=args.seed)
    # Fail before hours of training, not after: stale shards, or a size below one micro batch per worker
    # (the Ray Train split is equal-sized, so each worker needs micro_batch_size pairs).
    available = check_shards_match_model(args.shards, args.base)["sharded"]
    smallest = base_config.optim.micro_batch_size * base_config.scaling.num_workers
    if not sizes or sizes[0] < smallest:
        parser.error(f"--sizes must all be >= micro_batch_size x num_workers = {smallest}")
    benchmark = benchmark_config(args)

    base_metrics = evaluate(args.base, out / "eval" / "base", benchmark, "base")
    points = [{"pairs": 0, "pairs_used": 0, "train_seconds": 0.0, **{k: base_metrics[k] for k in METRICS}}]
    for size in sizes:
        config, seconds = train(base_config, size, out)
        metrics = evaluate(config.out, out / "eval" / f"pairs_{size}", benchmark, f"pairs_{size}")
        used = min(size, available)
        seen = config.optim.max_steps * config.optim.global_batch_size
        points.append({"pairs": size, "pairs_used": used, "epochs": seen / used, "train_seconds": seconds,
                       "run_name": config.run_name, **{k: metrics[k] for k in METRICS}})
        print(f"[scaling] {size} pairs: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in METRICS))

    result = {
        "benchmark": NAME,
        "settings": {"base": args.base, "shards": args.shards, "pairs_available": available, "sizes": sizes,
                     "config": args.config, "overrides": args.set, "seed": args.seed,
                     "ddpo": base_config.model_dump(mode="json",
                                                    exclude={"model", "shards", "out", "run_name", "max_pairs"}),
                     "benchmark": benchmark.model_dump(mode="json"), "out": str(out),
                     "machine": {"cpus": os.cpu_count(),
                                 "processor": platform.processor() or platform.machine()}},
        "points": points,
    }
    report = report_path(args)
    report.write_text(json.dumps(result, indent=2))
    plot(points[1:], points[0], report.with_suffix(".png"))
    print(json.dumps(points, indent=2))
    print(f"report: {report} and {report.with_suffix('.png')}")


if __name__ == "__main__":
    main()
