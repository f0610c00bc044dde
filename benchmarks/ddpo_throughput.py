"""DDPO training throughput (pairs/s): the project's trainer (Ray Train + DeepSpeed, reference
log-probs read from the shards) with 1 and 2 workers, beside TRL's DPOTrainer (reference model run
every step), on the same model, the same preference pairs and the same batch size.

    python benchmarks/ddpo_throughput.py [--model DIR | --family qwen2_vl] [--pairs 192] [--steps 30]
        [--batch-size 16] [--log-every 5] [--repeats 3] [--out ddpo_throughput.json  (under benchmarks/results/)]

The model: the tiny LLaVA (default), or `--family NAME`, a random checkpoint of that family from
`tests/vlm_families.py` widened to the tiny LLaVA's size (text 192 wide, 4 layers; vision 128 wide,
3 layers), so both frameworks do comparable work per token.

CPU, fp32, 2 CPU threads in all: the 1-worker DDPO run gets 2 CPUs (micro batch = batch), the
2-worker run 1 CPU per worker (micro batch = batch / 2, no gradient accumulation), TRL runs in this
process with torch.set_num_threads(2). The 1-worker DDPO and TRL runs are repeated with 1 thread:
on a 2-core machine that other work keeps busy, a 2-thread process waits at every parallel op for
its second thread to be scheduled, and that wait, not the model's arithmetic, can set its speed
(the 1-thread pair measures the work alone). The 2-thread pair is run once more with both grouping
their batches by length (DDPO's `group_by_length`, TRL's `train_sampling_strategy="group_by_length"`,
the same windows). Once more, DDPO's step alone (`ddpo_step_in_process`: its collate, forward and
loss with torch's AdamW, in this process like TRL): what the method does apart from the runtime
around it. DDPO is otherwise measured as users run it, `run_train(DDPOConfig)`,
from the `examples_per_s` its rank 0 logs every --log-every steps; TRL's steps are timed by a
callback over windows of the same length. The first window (engine / trainer warm-up) is dropped,
the rest give a median per run, and the runs alternate (DDPO 1w, DDPO 2w, TRL, ...) so a change in
the machine's load hits all alike; the figures are medians over --repeats. On a shared machine run
it with `nice -n 19` (Ray's processes inherit it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

# pipeline_throughput imports serve_common, which puts the checkout on sys.path and sets
# DS_ACCELERATOR / RAY_USAGE_STATS_ENABLED / RAY_worker_niceness; its helpers keep the JSONs alike.
from pipeline_throughput import bench_model, feedback_pairs, median_examples_per_s
from serve_common import environment, write_json

OUT_NAME = "ddpo_throughput.json"
BETA, LR = 0.5, 1e-5  # DDPOParams' beta and the DDPO optimizer's lr, given to TRL too


def family_model(family: str, work: Path) -> Path:
    """A random checkpoint of `family` (tests/vlm_families.py), widened to the tiny LLaVA's size."""
    import sys

    from transformers import AutoConfig, AutoModelForImageTextToText

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vlm_families import build_family

    path = build_family(family, work / family)
    config = AutoConfig.from_pretrained(path)
    text, vision = config.get_text_config(), config.vision_config
    text.update({"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 6,
                 "intermediate_size": 512, "head_dim": 32})
    if getattr(text, "layer_types", None):
        text.layer_types = text.layer_types[:1] * text.num_hidden_layers
    rope = dict(text.rope_parameters)
    if "mrope_section" in rope:  # the rotary sections of each axis cover head_dim / 2
        rope["mrope_section"] = [2 * s for s in rope["mrope_section"]]
        text.rope_parameters = rope
    vision.update({k: v for k, v in {"embed_dim": 128, "hidden_size": 192 if hasattr(vision, "embed_dim") else 128,
                                     "depth": 3, "num_hidden_layers": 3, "num_heads": 4, "num_attention_heads": 4,
                                     "intermediate_size": 512}.items() if hasattr(vision, k)})
    torch_model = AutoModelForImageTextToText.from_config(config)
    torch_model.generation_config = AutoModelForImageTextToText.from_pretrained(path).generation_config
    torch_model.save_pretrained(path)
    return path


def build_shards_once(model: Path, records: list[dict], work: Path) -> Path:
    """Shards with the reference log-probs of `model` (not timed: built once, ahead of training)."""
    import pandas as pd

    from rlhfv_ray.data.pipeline import ShardConfig, build_shards

    pd.DataFrame(records).to_parquet(work / "pairs.parquet")
    summary = build_shards(ShardConfig(input=[str(work / "pairs.parquet")], model=str(model), out=str(work / "shards")))
    if summary["rejected"]:  # TRL would train on pairs DDPO never sees
        raise RuntimeError(f"benchmark pairs were rejected: {summary['rejects_by_reason']}")
    return work / "shards"


def measure_ddpo(model: Path, shards: Path, work: Path, workers: int, cpus: int, args, repeat: int,
                 window: int | None = None) -> dict:
    """`cpus` per worker: the torch threads each worker sets (run_training); `window`: group_by_length's."""
    from rlhfv_ray.training.train_ddpo import DDPOConfig, run_train

    # a fresh run name: the same name would resume
    name = f"bench-ddpo-{workers}w{cpus}c{'-grouped' if window else ''}-{repeat}"
    config = DDPOConfig.model_validate({
        "model": str(model), "shards": str(shards), "out": str(work / name), "run_name": name,
        "scaling": {"num_workers": workers, "cpus_per_worker": cpus},
        "ddpo": {"beta": BETA},
        "optim": {"lr": LR, "warmup_steps": 0, "max_steps": args.steps, "global_batch_size": args.batch_size,
                  "micro_batch_size": args.batch_size // workers},
        # no checkpoint inside the run: its time would land in the next window
        "checkpoint": {"storage_path": str(work / "ray_results"), "every_steps": 10_000},
        "log_every": args.log_every, "group_by_length": {"window": window} if window else None})
    load = os.getloadavg()[0]
    run_train(config)
    result = median_examples_per_s(Path(config.out) / "metrics.jsonl")
    return {"pairs_per_s": result["pairs_per_s"], "windows": result["windows"], "load_1min": load}


def measure_ddpo_step_in_process(model: Path, shards: Path, threads: int, args, repeat: int) -> dict:
    """DDPO's step without its runtime: the same collate, shared-prompt forward and loss as a worker's,
    torch's AdamW (DeepSpeed's optimizer) with the same clipping, in this process and timed as TRL
    is. Not how users run DDPO: it splits DDPO's distance from TRL into the method's work and what
    Ray Train and DeepSpeed cost beside it on this machine's 2 cores."""
    import random

    import pyarrow.parquet as pq
    import torch

    from rlhfv_ray.data.shards import shard_files
    from rlhfv_ray.model.families import freeze_vision
    from rlhfv_ray.model.io import load_model_and_processor
    from rlhfv_ray.training.ddpo import DDPOParams
    from rlhfv_ray.training.train_ddpo import DDPO_OPTIM, make_ddpo_loss, make_pair_collate

    policy, processor = load_model_and_processor(str(model))
    freeze_vision(policy)
    policy.train()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, betas=DDPO_OPTIM.betas, eps=1e-8,
                                  weight_decay=DDPO_OPTIM.weight_decay)
    collate, loss_fn = make_pair_collate(processor), make_ddpo_loss(DDPOParams(beta=BETA))
    rows = pq.read_table(shard_files(str(shards))).to_pylist()
    rng, order = random.Random(repeat), []
    torch.set_num_threads(threads)
    stamps, load = [time.perf_counter()], os.getloadavg()[0]
    for _ in range(args.steps):
        if len(order) < args.batch_size:  # a new epoch, the last partial batch dropped
            order = rng.sample(range(len(rows)), len(rows))
        picked, order = [rows[i] for i in order[:args.batch_size]], order[args.batch_size:]
        loss, _ = loss_fn(policy, collate({key: [row[key] for row in picked] for key in picked[0]}))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, DDPO_OPTIM.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    rates = window_rates(stamps, args)
    return {"pairs_per_s": statistics.median(rates), "windows": len(rates), "load_1min": load}


def hf_window(pairs: int, batch_size: int) -> int:
    """The micro batches per sorted window of HF's LengthGroupedSampler (its mega_batch_mult), which
    TRL's group_by_length uses: given to DDPO's group_by_length too, so both group alike."""
    return max(1, min(pairs // (batch_size * 4), 50))


def work_ratio(shards: Path, batch_size: int, window: int, epochs: int = 30) -> dict:
    """How much more language-model work TRL does per step than DDPO, from the pairs' lengths: the
    ceiling of the speed-up where each token position costs the same. Per batch of `batch_size`
    pairs, a forward counted once and a backward twice:
    - DDPO (shared prompt, cached reference): 3 x the batch's real tokens, each pair's prompt,
      chosen and rejected answer once (its packed rows run unpadded, `unpadded.py`);
    - TRL: 3 x 2B x longest prompt + answer (policy) + 2B x the same (reference forward), padding
      included.
    Over `epochs` shuffled epochs, batches as drawn (`shuffled`) or grouped by length in windows of
    `window` batches (`trl_grouped`: TRL's padding then shrinks; DDPO's real tokens do not change).
    Attention still runs on DDPO's padded rows: `ddpo_row_padding` is the share of padding in them.
    The vision encoder, frozen in both, is left out: it runs once per pair in DDPO and four times in
    TRL, so it only raises the ratio."""
    import random

    import pyarrow.parquet as pq

    from rlhfv_ray.data.shards import shard_files
    from rlhfv_ray.model.pair_forward import pair_widths
    from rlhfv_ray.training.loop import length_grouped

    table = pq.read_table(shard_files(str(shards)), columns=["prompt_ids", "chosen_ids", "rejected_ids"]).to_pydict()
    prompts = [len(p) for p in table["prompt_ids"]]
    both_answers = [len(c) + len(r) for c, r in zip(table["chosen_ids"], table["rejected_ids"])]
    widths = pair_widths(table).tolist()  # as group_by_length sorts pairs (and TRL's "length" column)

    def ddpo(batch):
        return 3 * sum(prompts[i] + both_answers[i] for i in batch)

    def ddpo_rows(batch):  # the packed rows, padded: left of shorter prompts, right of shorter answers
        return 3 * len(batch) * (max(prompts[i] for i in batch) + max(both_answers[i] for i in batch))

    def trl(batch):
        return 4 * 2 * len(batch) * max(widths[i] for i in batch)

    rng, shuffled, grouped = random.Random(0), [], []
    for epoch in range(epochs):
        order = rng.sample(range(len(prompts)), len(prompts))
        shuffled += [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        for start in range(0, len(order), batch_size * window):
            chunk = order[start:start + batch_size * window]
            grouped += [[chunk[i] for i in b] for b in length_grouped([widths[i] for i in chunk], batch_size, epoch)]
    work = {name: sum(map(cost, batches)) for name, cost, batches in
            (("ddpo", ddpo, shuffled), ("ddpo_rows", ddpo_rows, shuffled), ("trl", trl, shuffled),
             ("trl_grouped", trl, grouped))}
    return {"shuffled": work["trl"] / work["ddpo"], "trl_grouped": work["trl_grouped"] / work["ddpo"],
            "ddpo_row_padding": 1 - work["ddpo"] / work["ddpo_rows"]}


def trl_dataset(records: list[dict], processor, shards: Path):
    """The same pairs in TRL's vision format: an "image" column and plain-text prompt / chosen /
    rejected. The prompt is the project's chat-template prompt (`user_prompt`, with the <image>
    placeholder the processor expands) and the answers are the template's assistant turns, so TRL's collator
    yields token for token the sequences of the shards (checked in `check_same_tokens`). A "length"
    column, each pair's width as DDPO's group_by_length sorts on it (`pair_widths`), is what TRL's
    group_by_length sorts on."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    from rlhfv_ray.data.shards import shard_files
    from rlhfv_ray.images import decode_image
    from rlhfv_ray.model.encoding import conversation_pieces, user_prompt
    from rlhfv_ray.model.pair_forward import pair_widths

    table = pq.read_table(shard_files(str(shards)), columns=["question", "chosen", "rejected", "prompt_ids",
                                                            "chosen_ids", "rejected_ids"]).to_pydict()
    width = dict(zip(zip(table["question"], table["chosen"], table["rejected"]), pair_widths(table).tolist()))
    texts = [json.loads(r["text"]) for r in records]

    def answer(t: dict, key: str) -> str:  # the template's assistant turn, end-of-turn token included
        return conversation_pieces(processor, [(t["question"], t[key])])[0][1]

    return Dataset.from_dict({
        "image": [decode_image(r["image"]["bytes"]) for r in records],
        "prompt": [user_prompt(processor, t["question"]) for t in texts],
        "chosen": [answer(t, "chosen") for t in texts],
        "rejected": [answer(t, "rejected") for t in texts],
        "length": [width[t["question"], t["chosen"], t["rejected"]] for t in texts]})


def check_same_tokens(trainer, shards: Path) -> int:
    """Answer tokens of one TRL batch == those of the shards' rows (same work per pair). Returns the
    longest TRL sequence of that batch."""
    import pyarrow.parquet as pq

    from rlhfv_ray.data.shards import shard_files

    rows = pq.read_table(shard_files(str(shards)), columns=["chosen_ids", "rejected_ids"]).to_pylist()
    pairs = {(tuple(r["chosen_ids"]), tuple(r["rejected_ids"])) for r in rows}
    examples = [trainer.train_dataset[i] for i in range(min(8, len(trainer.train_dataset)))]
    batch = trainer.data_collator(examples)
    answers = [tuple(ids[m.bool()].tolist()) for ids, m in zip(batch["input_ids"], batch["completion_mask"])]
    n = len(examples)
    for pair in zip(answers[:n], answers[n:]):
        if pair not in pairs:
            raise RuntimeError("TRL's collator tokenizes the pairs differently from the shards")
    return int(batch["attention_mask"].sum(-1).max())


def trl_args(out: Path, args, **extra):
    from trl import DPOConfig

    # TRL's defaults that would make it do other work than DDPO: bf16 (on by default, even on CPU),
    # gradient checkpointing (on by default: a second forward in backward), truncation at 1024.
    return DPOConfig(
        output_dir=str(out), use_cpu=True, bf16=False, gradient_checkpointing=False, max_length=None,
        per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1, max_steps=args.steps,
        learning_rate=LR, warmup_steps=0, beta=BETA, loss_type=["sigmoid"], seed=0,
        logging_steps=args.steps, save_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, **extra)


def make_trl_trainer(model_dir: Path, dataset, out: Path, args, callbacks=(), **extra):
    from trl import DPOTrainer

    from rlhfv_ray.model.families import freeze_vision
    from rlhfv_ray.model.io import load_model_and_processor

    model, processor = load_model_and_processor(str(model_dir))
    freeze_vision(model)  # as DDPO's default freeze_vision_tower: same trainable set
    # ref_model=None: TRL loads its own frozen copy of the policy and runs it on every step (normal mode)
    return DPOTrainer(model=model, args=trl_args(out, args, **extra), train_dataset=dataset,
                      processing_class=processor, callbacks=list(callbacks))


def measure_trl(model_dir: Path, dataset, work: Path, threads: int, args, repeat: int, grouped: bool = False) -> dict:
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        """perf_counter at train begin and at every optimizer step's end."""
        stamps: list[float] = []

        def on_train_begin(self, *_, **__):
            self.stamps = [time.perf_counter()]

        def on_step_end(self, *_, **__):
            self.stamps.append(time.perf_counter())

    clock, load = StepClock(), os.getloadavg()[0]
    # TRL keeps only its vision columns unless told otherwise; its collator ignores "length"
    grouping = ({"train_sampling_strategy": "group_by_length", "length_column_name": "length",
                 "remove_unused_columns": False} if grouped else {})
    trainer = make_trl_trainer(model_dir, dataset, work / f"trl-{threads}t{'-grouped' if grouped else ''}-{repeat}",
                               args, callbacks=[clock], **grouping)
    torch.set_num_threads(threads)  # TRL runs in this process
    trainer.train()
    rates = window_rates(clock.stamps, args)
    return {"pairs_per_s": statistics.median(rates), "windows": len(rates), "load_1min": load}


def window_rates(stamps: list[float], args) -> list[float]:
    """Pairs/s over windows of log_every steps (as DDPO's rank 0 logs them) from the clock at the
    start and at every step's end; the first window (warm-up) dropped."""
    w = args.log_every
    return [w * args.batch_size / (stamps[i + w] - stamps[i]) for i in range(0, len(stamps) - w, w)][1:]


def trl_precompute_mode(model_dir: Path, dataset, work: Path, args) -> str:
    """TRL's precompute_ref_log_probs (the mode closest to DDPO's cached reference): what it does
    on this vision dataset."""
    try:
        make_trl_trainer(model_dir, dataset, work / "trl-precompute", args, precompute_ref_log_probs=True)
    except ValueError as error:
        return f"refused by TRL: {str(error).split('. ')[0]}"
    return "accepted (not timed)"


def summarize(runs: list[dict]) -> dict:
    return {"pairs_per_s": statistics.median(r["pairs_per_s"] for r in runs),
            "per_repeat": [round(r["pairs_per_s"], 3) for r in runs], "windows_per_repeat": runs[0]["windows"],
            # the machine's 1-minute load average as each run started: other work shares these 2 cores
            "load_1min_at_start": [round(r["load_1min"], 2) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="tiny LLaVA dir; default: one built first (sft_throughput.tiny_model)")
    parser.add_argument("--family", help="a family of tests/vlm_families.py instead of the tiny LLaVA")
    parser.add_argument("--pairs", type=int, default=192)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=16, help="pairs per optimizer step, all workers")
    parser.add_argument("--log-every", type=int, default=5, help="steps per timing window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=OUT_NAME, help="file name under benchmarks/results/")
    args = parser.parse_args()
    if args.batch_size % 2 or args.steps < 2 * args.log_every:
        parser.error("--batch-size must be even (2 workers) and --steps >= 2 x --log-every (a window after warm-up)")
    if hf_window(args.pairs, args.batch_size) < 2:  # a window of one batch would not group anything
        parser.error("the grouped runs need --pairs >= 8 x --batch-size (HF's sampler then sorts windows of 2+ batches)")

    import ray
    import ray.data
    import trl

    result = {"what": "DDPO training pairs/s of the project's trainer (1 and 2 Ray Train workers, DeepSpeed "
                      "ZeRO-2, cached reference log-probs) and of TRL's DPOTrainer (reference model forward every "
                      "step), same tiny LLaVA, pairs and batch size; medians over repeats",
              "environment": {**environment(), "trl": trl.__version__, "deepspeed": __import__("deepspeed").__version__,
                              "process_niceness": os.nice(0)}}
    with tempfile.TemporaryDirectory(prefix="ddpo-bench-") as tmp:
        work = Path(tmp)
        model = family_model(args.family, work) if args.family else bench_model(args.model, work)
        records = feedback_pairs(args.pairs)
        # 2 logical CPUs = the machine; the shards are materialized before the workers take them all
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            shards = build_shards_once(model, records, work)
            from rlhfv_ray.model.io import load_processor
            dataset = trl_dataset(records, load_processor(str(model)), shards)
            longest = check_same_tokens(make_trl_trainer(model, dataset, work / "trl-check", args), shards)
            window = hf_window(args.pairs, args.batch_size)
            result["work_ratio_trl_vs_ddpo"] = work_ratio(shards, args.batch_size, window)
            measures = {  # name -> one timed run; all alternate within each repeat
                "ddpo_1_worker": lambda r: measure_ddpo(model, shards, work, 1, 2, args, r),
                "ddpo_2_workers": lambda r: measure_ddpo(model, shards, work, 2, 1, args, r),
                "trl_dpo": lambda r: measure_trl(model, dataset, work, 2, args, r),
                "ddpo_1_worker_1_thread": lambda r: measure_ddpo(model, shards, work, 1, 1, args, r),
                "trl_dpo_1_thread": lambda r: measure_trl(model, dataset, work, 1, args, r),
                "ddpo_1_worker_grouped": lambda r: measure_ddpo(model, shards, work, 1, 2, args, r, window),
                "trl_dpo_grouped": lambda r: measure_trl(model, dataset, work, 2, args, r, grouped=True),
                "ddpo_step_in_process": lambda r: measure_ddpo_step_in_process(model, shards, 2, args, r)}
            runs: dict[str, list[dict]] = {name: [] for name in measures}
            for repeat in range(args.repeats):
                for name, measure in measures.items():
                    runs[name].append(measure(repeat))
                print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]['pairs_per_s']:.2f}" for k, v in runs.items()))
            precompute = trl_precompute_mode(model, dataset, work, args)
        finally:
            ray.shutdown()
    result["settings"] = {
        "model": (f"random {args.family} at the tiny LLaVA's size (family_model)" if args.family else
                  args.model or "tiny LLaVA, pretraining cut short (sft_throughput.tiny_model)"),
        "pairs": args.pairs, "input": "collect-feedback-shaped records (pipeline_throughput.feedback_pairs)",
        "steps_per_run": args.steps, "global_batch_size": args.batch_size, "log_every": args.log_every,
        "repeats": args.repeats, "precision": "fp32", "ray_num_cpus": 2, "beta": BETA, "lr": LR,
        "ddpo_1_worker": {"cpus_per_worker": 2, "micro_batch_size": args.batch_size},
        "ddpo_2_workers": {"cpus_per_worker": 1, "micro_batch_size": args.batch_size // 2},
        "ddpo_1_worker_1_thread": {"cpus_per_worker": 1, "micro_batch_size": args.batch_size},
        "trl": {"process": "this one (1 process)", "torch_threads": "2 (trl_dpo), 1 (trl_dpo_1_thread)",
                "per_device_train_batch_size": args.batch_size,
                "reference": "ref_model=None: TRL's own frozen copy, a forward every step",
                "vision_tower": "frozen in both", "gradient_checkpointing": False, "max_length": None,
                "precompute_ref_log_probs": precompute},
        "ddpo_step_in_process": {"process": "this one (1 process), like TRL", "torch_threads": 2,
                                 "micro_batch_size": args.batch_size,
                                 "optimizer": "torch AdamW, DDPO's betas, clipping at its grad_clip; no Ray, no DeepSpeed"},
        "sequences": f"identical token ids in both (checked); longest sequence {longest} tokens, no truncation",
        "grouped": f"group_by_length in both, windows of {window} batches (HF's LengthGroupedSampler's "
                   "mega_batch_mult for these pairs and batch size; DDPO's group_by_length.window)"}
    result.update({name: summarize(rs) for name, rs in runs.items()})
    rate = {name: result[name]["pairs_per_s"] for name in runs}
    # 2 workers x 1 CPU against 1 worker with the same 2 CPUs, and against 1 worker with 1 CPU
    result["scaling_2_vs_1_workers"] = {"same_2_cpus": rate["ddpo_2_workers"] / rate["ddpo_1_worker"],
                                        "1_cpu_per_worker": rate["ddpo_2_workers"] / rate["ddpo_1_worker_1_thread"]}
    # target >= 1.8: no reference forward (cached log-probs), one prompt per pair, no padding but attention's.
    # Like for like = one process each with the same threads; per repeat = the runs of one repeat,
    # minutes apart, so a slow spell of the machine weighs less than in the ratio of medians.
    compared = {"1_process_2_threads": ("ddpo_1_worker", "trl_dpo"),
             "1_process_1_thread": ("ddpo_1_worker_1_thread", "trl_dpo_1_thread"),
             "ddpo_2_workers_vs_trl_2_threads": ("ddpo_2_workers", "trl_dpo"),
             "both_grouped_by_length": ("ddpo_1_worker_grouped", "trl_dpo_grouped"),
             "ddpo_grouped_vs_trl_default": ("ddpo_1_worker_grouped", "trl_dpo"),
             "ddpo_step_in_process_vs_trl": ("ddpo_step_in_process", "trl_dpo")}
    result["ratio_ddpo_vs_trl"] = {name: {
        "ratio_of_medians": rate[ddpo] / rate[base],
        "per_repeat": [round(d["pairs_per_s"] / b["pairs_per_s"], 3) for d, b in zip(runs[ddpo], runs[base])]}
        for name, (ddpo, base) in compared.items()}
    path = write_json(args.out, result)
    print(json.dumps({k: result[k] for k in (*runs, "scaling_2_vs_1_workers", "ratio_ddpo_vs_trl",
                                             "work_ratio_trl_vs_ddpo")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
