"""DDPO against vanilla DPO over several data-order seeds (RLHF-V paper, Table 3), and against SFT on
the corrected answers alone (`--variants ddpo,dpo,sft`: does the preference term earn its place?),
scored on the same benchmark scenes and compared scene by scene.

    python benchmarks/ddpo_vs_dpo.py --base rlhfv_ray/scene_world/base_model --shards runs/demo/shards \
        [--seeds 0,1,2] [--gamma 5] [--config configs/train_tiny.yaml] [--set optim.lr=1e-5 ...] \
        [--eval-scenes 1000] [--variants ddpo,dpo] [--out benchmarks/results/ddpo_vs_dpo]

For each seed and variant, otherwise the same config, pairs and budget, into OUT/models/NAME_seedS,
each evaluated into OUT/eval/...: `ddpo` (`ddpo.gamma` = --gamma), `dpo` (gamma 1), `sft` (the
config's SFT term on the chosen answers alone: `ddpo.preference_weight` 0). One demo run
differs from the next by Ray Data's split of the pairs across workers (about ±0.005), and the
benchmark's own sampling error is larger still (±0.03 at 95% on 1000 scenes), so the comparison is
the paired difference per seed (same scenes) and its mean over seeds. Stages are reused on a rerun.
The result lands in OUT.json (benchmarks/results/ddpo_vs_dpo.json by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from statistics import mean, stdev

from ddpo_common import (add_common_arguments, benchmark_config, evaluate, load_base_config, report_path,
                         train_variant)
from machine import machine
from rlhfv_ray.data.shards import check_shards_match_model
from rlhfv_ray.eval.benchmark import compare_responses

METRICS = ("response_hallucination_rate", "mention_hallucination_rate", "object_recall", "vqa_accuracy")
NAME = "ddpo_vs_dpo"


def spread(values: list[float]) -> dict:
    return {"mean": mean(values), "sd": stdev(values) if len(values) > 1 else 0.0, "values": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, NAME)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--gamma", type=float, default=5.0, help="DDPO's gamma (DPO is gamma 1)")
    parser.add_argument("--variants", default="ddpo,dpo", help="of ddpo, dpo, sft")
    args = parser.parse_args()

    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base_config = load_base_config(args)
    check_shards_match_model(args.shards, args.base)  # stale shards fail now, not after the training
    benchmark = benchmark_config(args)

    base_dir = out / "eval" / "base"
    base_metrics = evaluate(args.base, base_dir, benchmark, "base")
    changes = {"ddpo": {"gamma": args.gamma}, "dpo": {"gamma": 1.0},
               "sft": {"gamma": args.gamma, "preference_weight": 0.0}}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not names or set(names) - set(changes):
        parser.error(f"--variants: a list of {', '.join(changes)}")
    runs: dict[str, dict[int, dict]] = {name: {} for name in names}
    paired: dict[str, list[dict]] = {f"{b} - {a}": [] for i, b in enumerate(names) for a in names[i + 1:]}
    paired.update({f"{name} - base": [] for name in names})
    for seed in seeds:
        evals = {}
        for name in names:
            label = f"{name}_seed{seed}"
            ddpo_section = {**dataclasses.asdict(base_config.ddpo), **changes[name]}
            config, seconds = train_variant(base_config, {"seed": seed, "ddpo": ddpo_section}, label,
                                            out / "models" / label)
            evals[name] = out / "eval" / label
            metrics = evaluate(config.out, evals[name], benchmark, label)
            runs[name][seed] = {**{k: metrics[k] for k in METRICS},
                                "hallucination_by_type": metrics["hallucination_by_type"], "train_seconds": seconds}
            print(f"[{NAME}] {label}: " + ", ".join(f"{k}={metrics[k]:.3f}" for k in METRICS))
        reports = {name: path / "benchmark.json" for name, path in {**evals, "base": base_dir}.items()}
        for key in paired:
            b, a = key.split(" - ")
            paired[key].append({"seed": seed, **compare_responses(reports[a], reports[b])})

    summary = {name: {k: spread([r[k] for r in by_seed.values()]) for k in METRICS}
               for name, by_seed in runs.items()}
    differences = {key: spread([c["response_hallucination_rate"]["difference"] for c in comparisons])
                   for key, comparisons in paired.items()}
    result = {
        "benchmark": NAME,
        "settings": {"base": args.base, "shards": args.shards, "seeds": seeds, "gamma": args.gamma, "variants": names,
                     "config": args.config, "overrides": args.set,
                     "ddpo": base_config.model_dump(mode="json", exclude={"model", "shards", "out", "run_name"}),
                     "benchmark": benchmark.model_dump(mode="json"),
                     "machine": machine()},
        "base": {k: base_metrics[k] for k in METRICS},
        "runs": runs,
        "summary": summary,
        "response_rate_difference_over_seeds": differences,
        "paired": paired,
    }
    report = report_path(args)
    report.write_text(json.dumps(result, indent=2))
    print(json.dumps({"summary": summary, "differences": differences}, indent=2))
    print(f"report: {report}")


if __name__ == "__main__":
    main()
