"""The shared-prompt pair forward against the plain one: DDPO's forward and backward over a batch of
preference pairs, pairs/s, with gradient checkpointing off and on, side by side in one process.

    python benchmarks/pair_forward.py [--family qwen2_vl] [--image-size 336] [--batch-size 8]
        [--steps 6] [--repeats 5] [--out pair_forward.json  (under benchmarks/results/)]

The shared forward packs a pair's two answers after one prompt (`model/packing.py`): the vision
tower and the prompt run once per pair instead of twice, and no key/value cache is involved, so
gradient checkpointing (which the 7B configs turn on) keeps it. What it saves grows with the
prompt's share of a sequence: here a random checkpoint of `--family` at the tiny LLaVA's size
(`ddpo_throughput.family_model`), scene-world pairs (`pipeline_throughput.feedback_pairs`) with
their images resized to `--image-size`, which the processor is set to keep (Qwen2-VL: 144 image
tokens at 336 px, where the test checkpoint's processor gives 16; LLaVA-1.5 has 576).
CPU, fp32, 2 threads, vision encoder frozen; the four arms alternate within each repeat and the
figures are medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from ddpo_throughput import family_model
from pipeline_throughput import feedback_pairs
from serve_common import environment, write_json

OUT_NAME = "pair_forward.json"


def keep_image_size(processor, image_size: int) -> None:
    """Let a Qwen-VL processor keep images up to `image_size` square (the test checkpoints' cap them
    at 112 px: 16 image tokens)."""
    image_processor = processor.image_processor
    if "longest_edge" in image_processor.size:  # Qwen-VL: a pixel budget
        image_processor.size = {"shortest_edge": image_processor.size["shortest_edge"],
                                "longest_edge": image_size * image_size}


def pair_rows(processor, pairs: int, image_size: int) -> dict:
    """Shard-like rows (columns) of `pairs` scene-world preference pairs, images resized."""
    from rlhfv_ray.images import decode_image
    from rlhfv_ray.model.encoding import encode_answers, encode_prompts
    from rlhfv_ray.scene_world.render import image_to_png_bytes

    records = feedback_pairs(pairs)
    images = [decode_image(r["image"]["bytes"]).resize((image_size, image_size)) for r in records]
    texts = [json.loads(r["text"]) for r in records]
    questions = [t["question"] for t in texts]
    return {"prompt_ids": encode_prompts(processor, images, questions), "question": questions,
            "image": [image_to_png_bytes(image) for image in images],
            "chosen_ids": encode_answers(processor, questions, [t["chosen"] for t in texts]),
            "rejected_ids": encode_answers(processor, questions, [t["rejected"] for t in texts])}


def time_arm(model, forward, batches: list[dict]) -> float:
    """pairs/s of forward + backward over `batches` (gradients dropped after each)."""
    start = time.perf_counter()
    for batch in batches:
        logps, chosen_mask, rejected_mask = forward(model, batch)
        ((logps.chosen * chosen_mask).sum() - (logps.rejected * rejected_mask).sum()).backward()
        model.zero_grad(set_to_none=True)
    return sum(len(b["prompt_input_ids"]) for b in batches) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="qwen2_vl", help="a family of tests/vlm_families.py")
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="batches per arm and repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=OUT_NAME, help="file name under benchmarks/results/")
    args = parser.parse_args()

    import torch

    from rlhfv_ray.model.families import freeze_vision
    from rlhfv_ray.model.io import load_model_and_processor
    from rlhfv_ray.model.pair_forward import pair_batch, pair_token_logps_plain, pair_token_logps_shared

    torch.set_num_threads(2)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="pair-forward-bench-") as tmp:
        model, processor = load_model_and_processor(str(family_model(args.family, Path(tmp))))
    freeze_vision(model)
    model.train()
    keep_image_size(processor, args.image_size)
    rows = pair_rows(processor, args.batch_size * args.steps, args.image_size)
    batches = [pair_batch({k: v[i:i + args.batch_size] for k, v in rows.items()}, processor)
               for i in range(0, args.batch_size * args.steps, args.batch_size)]
    arms = {f"{name}{'_checkpointing' if ckpt else ''}": (forward, ckpt)
            for ckpt in (False, True) for name, forward in (("plain", pair_token_logps_plain),
                                                              ("shared", pair_token_logps_shared))}
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    for repeat in range(args.repeats + 1):  # repeat 0 warms up and is dropped
        for arm, (forward, ckpt) in arms.items():
            if ckpt:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_disable()
            rate = time_arm(model, forward, batches)
            if repeat:
                rates[arm].append(round(rate, 3))
        print(f"repeat {repeat}: " + ", ".join(f"{a} {r[-1]:.2f}" for a, r in rates.items() if repeat), flush=True)

    pairs_per_s = {arm: statistics.median(r) for arm, r in rates.items()}
    first = batches[0]
    result = {
        "what": "pairs/s of DDPO's forward + backward, shared-prompt (packed) against plain pair forward, "
                "gradient checkpointing off and on; medians over repeats",
        "environment": environment(),
        "settings": {"family": args.family, "model": "random, at the tiny LLaVA's size (family_model)",
                     "image_size": args.image_size, "batch_size": args.batch_size, "steps": args.steps,
                     "repeats": args.repeats, "precision": "fp32", "torch_threads": 2,
                     "prompt_tokens": int(first["prompt_attention_mask"].sum(-1).float().mean()),
                     "answer_tokens": int(first["answer_attention_mask"].sum(-1).float().mean())},
        "pairs_per_s": pairs_per_s,
        "per_repeat": rates,
        "shared_over_plain": {
            "no_checkpointing": pairs_per_s["shared"] / pairs_per_s["plain"],
            "checkpointing": pairs_per_s["shared_checkpointing"] / pairs_per_s["plain_checkpointing"]},
    }
    print(json.dumps(result["shared_over_plain"], indent=2))
    print(f"wrote {write_json(args.out, result)}")


if __name__ == "__main__":
    main()
