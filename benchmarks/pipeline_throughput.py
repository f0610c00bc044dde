"""Shard pipeline throughput (pairs/s) with 1 and 2 reference actors side by side, the alignment step
alone, and the DDPO trainer's consumption rate for comparison.

    python benchmarks/pipeline_throughput.py [--model DIR] [--pairs 400] [--scale 4] [--repeats 3]
        [--ddpo-metrics RUN/metrics.jsonl] [--feedback FEEDBACK_DIR [--feedback-only]]
        [--ray-cpus 2] [--out pipeline_throughput.json  (under benchmarks/results/)]

One local Ray is started once (--ray-cpus, default 2 = this machine) and its start-up is not timed.
Two reference actors then hold every CPU: the pipeline materializes its input before the pool and
builds the shard table inside the actors, so it needs no other task meanwhile (this benchmark
found the hang that happened otherwise). One warm-up build, then the builds alternate over actor
counts and input sizes (A B A B ...) so a change in the machine's load hits all alike. A timed
build is a whole `build_shards` call: it includes starting the stage actors and loading the model
in them, which every real `rlhfv build-shards` pays once, whatever the input size.

Each actor count is timed on two input sizes (--pairs and --scale times as many). A build's time is
fixed start-up plus pairs / steady rate, so the two sizes give both: the steady rate (extra pairs /
extra seconds) is what the trainer is compared with, since a real build streams thousands of pairs
and pays the start-up once; the whole-call rates at each size are reported beside it. Figures are
medians over the repeats. Without --ddpo-metrics a short DDPO job (2 workers x 1 CPU) trains on the
shards just built.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

# serve_common puts the checkout on sys.path and sets DS_ACCELERATOR / RAY_USAGE_STATS_ENABLED;
# its environment() and write_json() keep every benchmark JSON alike
from serve_common import environment, write_json

OUT_NAME = "pipeline_throughput.json"
PAPER = {"words_per_answer": 64.4, "corrected_segments_per_answer": 2.65}


def bench_model(given: str | None, work: Path) -> Path:
    """`--model` if given, else the short-pretrained tiny LLaVA of the SFT benchmark (throughput
    does not depend on the weights)."""
    if given:
        return Path(given)
    from sft_throughput import tiny_model

    return tiny_model(work / "model")


def feedback_pairs(n: int) -> list[dict]:
    """`n` records shaped like `collect-feedback`'s, without running the model (minutes on CPU): the
    hallucinated answer is a noisy-corpus caption of a feedback-split scene (the errors the tiny
    model learns to make), corrected by the same oracle. Only hallucinated answers become pairs,
    as in collect-feedback. Realistic answer lengths and edits matter: they set tokenize, align
    and reference forward costs (tests' preference_record is one short sentence with one edit)."""
    DS_NAME = "scene-world"
    from rlhfv_ray.data.records import make_record
    from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS
    from rlhfv_ray.scene_world.noise import noisy_caption
    from rlhfv_ray.scene_world.oracle import annotate
    from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
    from rlhfv_ray.scene_world.scene import sample_scene
    from rlhfv_ray.scene_world.spec import NoiseRates, split_seed

    records, index = [], 0
    while len(records) < n:
        scene = sample_scene(split_seed("feedback", index))
        rejected = noisy_caption(scene, NoiseRates(), random.Random(index)).text
        annotation = annotate(scene, rejected)
        if annotation.has_hallucination:
            records.append(make_record(
                scene.seed, image_to_png_bytes(render_scene(scene)), DESCRIPTION_PROMPTS[index % len(DESCRIPTION_PROMPTS)],
                annotation.chosen, annotation.rejected, ds_name=DS_NAME, origin_dataset=DS_NAME,
                origin_split={"model": "noisy-corpus", "type": "detailed_description"},
                image_path=f"scene_{scene.seed}.png"))
        index += 1
    return records


def time_build(model: Path, pairs_file: Path, out: Path, actors: int, batch_size: int) -> dict:
    from rlhfv_ray.data.pipeline import ShardConfig, build_shards

    config = ShardConfig(input=[str(pairs_file)], model=str(model), out=str(out),
                         reference_actors=actors, reference_batch_size=batch_size)
    started = time.perf_counter()
    summary = build_shards(config)
    elapsed = time.perf_counter() - started
    if summary["rejected"]:  # a reject would make the 1- and 2-actor runs do different work
        raise RuntimeError(f"benchmark input was rejected: {summary['rejects_by_reason']}")
    return {"actors": actors, "seconds": round(elapsed, 3), "pairs_per_s": summary["sharded"] / elapsed}


def steady_state(small: tuple[int, float], large: tuple[int, float]) -> dict:
    """Fit seconds = fixed + pairs / rate through two (pairs, seconds) builds: the steady rate and
    the fixed start-up cost."""
    (n_small, t_small), (n_large, t_large) = small, large
    if t_large <= t_small:  # noise swamped the extra work: no rate can be read off these two
        return {"steady_pairs_per_s": None, "fixed_seconds": None}
    rate = (n_large - n_small) / (t_large - t_small)
    return {"steady_pairs_per_s": rate, "fixed_seconds": t_small - n_small / rate}


def measure_pipeline(model: Path, inputs: dict[int, Path], work: Path, repeats: int, batch_size: int) -> dict:
    """Whole-call times of 1- and 2-actor builds on each input size; steady rate and fixed cost."""
    sizes = sorted(inputs)
    time_build(model, inputs[sizes[0]], work / "warmup", 2, batch_size)  # imports, page cache, Ray worker pool
    runs = {(a, n): [] for a in (1, 2) for n in sizes}
    for repeat in range(repeats):
        for actors in (1, 2):
            for n in sizes:
                out = work / f"shards_{actors}_{n}_{repeat}"
                runs[(actors, n)].append(time_build(model, inputs[n], out, actors, batch_size))
    result = {}
    for actors in (1, 2):
        seconds = {n: statistics.median(r["seconds"] for r in runs[(actors, n)]) for n in sizes}
        entry = {f"{n}_pairs": {"pairs_per_s": n / seconds[n], "seconds": [r["seconds"] for r in runs[(actors, n)]]}
                 for n in sizes}
        entry.update(steady_state((sizes[0], seconds[sizes[0]]), (sizes[-1], seconds[sizes[-1]])))
        result[f"{actors}_actor{'s' if actors > 1 else ''}"] = entry
    one, two = result["1_actor"]["steady_pairs_per_s"], result["2_actors"]["steady_pairs_per_s"]
    result["steady_ratio_2_vs_1"] = two / one if one and two else None
    return result


def measure_alignment(model: Path, records: list[dict], repeats: int) -> dict:
    """align_segments alone on the answers' token ids (tokenized as the pipeline does, not timed)."""
    from rlhfv_ray.data.align import align_segments
    from rlhfv_ray.model.encoding import encode_answers
    from rlhfv_ray.model.io import load_processor

    processor = load_processor(model)
    texts = [json.loads(r["text"]) for r in records]
    pairs = [encode_answers(processor, [t["question"]] * 2, [t["chosen"], t["rejected"]]) for t in texts]
    rates, segments = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        segments = [align_segments(rejected, chosen).n_replacements for chosen, rejected in pairs]
        rates.append(len(pairs) / (time.perf_counter() - started))
    return {"pairs_per_s": statistics.median(rates), "repeats": repeats,
            "answer_tokens_mean": statistics.mean(len(c) + len(r) for c, r in pairs) / 2,
            "corrected_segments_per_pair": statistics.mean(segments)}


def median_examples_per_s(metrics_file: Path) -> dict:
    """Median examples_per_s over the logged windows, the first (warm-up: engine, first batches)
    dropped when there are others."""
    records = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    rates = [r["examples_per_s"] for r in records if "examples_per_s" in r]
    if not rates:
        raise SystemExit(f"{metrics_file}: no examples_per_s records")
    kept = rates[1:] or rates
    return {"pairs_per_s": statistics.median(kept), "windows": len(kept), "metrics": str(metrics_file)}


def measure_ddpo(model: Path, shards: Path, work: Path, steps: int) -> dict:
    from rlhfv_ray.training.train_ddpo import DDPOConfig, run_train

    config = DDPOConfig.model_validate({
        "model": str(model), "shards": str(shards), "out": str(work / "ddpo"), "run_name": "bench-ddpo",
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "optim": {"warmup_steps": 0, "max_steps": steps, "global_batch_size": 8, "micro_batch_size": 4},
        # no checkpoint inside the run: its time would land in the next step's window
        "checkpoint": {"storage_path": str(work / "ray_results"), "every_steps": 10_000},
        "log_every": 1})
    run_train(config)
    out = Path(config.out)
    result = median_examples_per_s(out / "metrics.jsonl")
    result.update(source="short DDPO run in this benchmark", workers=2, cpus_per_worker=1, steps=steps,
                  global_batch_size=8, micro_batch_size=4, metrics="(temporary)")
    return result


def feedback_report(directory: str) -> dict:
    """collect-feedback's stats.json (it computes them over the kept pairs), beside the paper's."""
    path = Path(directory) / "stats.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: --feedback takes the output dir of `rlhfv collect-feedback`")
    stats = json.loads(path.read_text())
    rows = {k: {"ours": stats[k], "paper": PAPER[k]} for k in PAPER}
    print(f"feedback ({stats['pairs']} pairs of {stats['responses']} responses) vs paper:")
    for key, row in rows.items():
        print(f"  {key:32s} {row['ours']:8.2f}   paper {row['paper']:.2f}")
    return {"dir": str(directory), "pairs": stats["pairs"], **rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="reference model dir; default: a tiny LLaVA built first")
    parser.add_argument("--pairs", type=int, default=400, help="the small input size")
    parser.add_argument("--scale", type=int, default=4, help="the large input is this many times --pairs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-batch-size", type=int, default=32)
    parser.add_argument("--ray-cpus", type=int, default=2)
    parser.add_argument("--ddpo-metrics", help="metrics.jsonl of a DDPO run, instead of a short run here")
    parser.add_argument("--ddpo-steps", type=int, default=10)
    parser.add_argument("--feedback", help="collect-feedback output dir: print its stats beside the paper's")
    parser.add_argument("--feedback-only", action="store_true", help="only print the --feedback stats")
    parser.add_argument("--out", default=OUT_NAME, help="file name under benchmarks/results/")
    args = parser.parse_args()
    feedback = feedback_report(args.feedback) if args.feedback else None
    if args.feedback_only:
        return

    import pandas as pd
    import ray
    import ray.data

    result = {"what": "pairs/s of build_shards (read -> prepare -> reference log-probs on an actor pool -> "
                      "parquet) with 1 and 2 reference actors, of align_segments alone, and of DDPO training; "
                      "medians over repeats",
              "environment": environment()}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        work = Path(tmp)
        model = bench_model(args.model, work)
        sizes = (args.pairs, args.pairs * args.scale)
        records = feedback_pairs(sizes[-1])
        inputs = {n: work / f"pairs_{n}.parquet" for n in sizes}
        for n, path in inputs.items():
            pd.DataFrame(records[:n]).to_parquet(path)
        result["settings"] = {
            "pairs": list(sizes), "repeats": args.repeats, "reference_batch_size": args.reference_batch_size,
            "ray_num_cpus": args.ray_cpus,
            "process_niceness": os.nice(0),  # on a shared machine run with `nice -n 19`; Ray's processes inherit it
            "model": args.model or "tiny LLaVA, pretraining cut short (sft_throughput.tiny_model)",
            "input": "collect-feedback-shaped records: noisy-corpus captions of feedback scenes, oracle-corrected",
            "timed_build": "whole build_shards call incl. stage actor start and model load; Ray start-up excluded",
            "steady_rate": "(large - small pairs) / (large - small seconds), of the median seconds"}
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            result["pipeline"] = measure_pipeline(model, inputs, work, args.repeats, args.reference_batch_size)
            result["alignment"] = measure_alignment(model, records, repeats=max(5, args.repeats))
            if args.ddpo_metrics:
                result["trainer"] = {**median_examples_per_s(Path(args.ddpo_metrics)), "source": "--ddpo-metrics"}
            else:
                result["trainer"] = measure_ddpo(model, work / f"shards_2_{sizes[0]}_0", work, args.ddpo_steps)
        finally:
            ray.shutdown()
    # > 1: the pipeline makes pairs faster than training eats them (shards can be built ahead)
    trainer = result["trainer"]["pairs_per_s"]
    comparison = {"trainer_pairs_per_s": trainer}
    for key in ("1_actor", "2_actors"):
        entry = result["pipeline"][key]
        steady = entry["steady_pairs_per_s"]
        comparison[key] = {"steady_ratio": steady / trainer if steady else None,
                           f"whole_call_ratio_{sizes[-1]}_pairs": entry[f"{sizes[-1]}_pairs"]["pairs_per_s"] / trainer}
    result["pipeline_vs_trainer"] = comparison
    if feedback:
        result["feedback"] = feedback
    path = write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("pipeline", "alignment", "trainer", "pipeline_vs_trainer")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
