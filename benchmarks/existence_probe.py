"""Why existence questions stay at chance: the language decoder alone, fed exact bag-of-words cells.

    python benchmarks/existence_probe.py [--variants existence-full existence-class-only existence-ramp]
        [--steps 600] [--batch 64] [--out benchmarks/results/existence_probe.json]

Each variant trains a fresh tiny decoder (the build's tokenizer and sizes) from scratch, as language
pretraining does, and scores teacher-forced single questions on validation scenes, with the full
cells every time (class-only scores on class-only cells: it has never seen the other words).

- `existence-full`: one existence question per sequence (half present, half absent), full cells
  (scene type, row, column, and class, color, count when occupied) — what pretraining sees;
- `existence-class-only`: the same questions, but each cell holds only its class word (empty: zero);
- `existence-ramp`: cells = class + w * (the other words), w = 0 for `--hold` steps, then rising
  linearly to 1 over `--ramp` steps: the class-only circuit, carried over to the full cells;
- `mixture`: the build's pretraining conversations (language_pretrain._conversations);
- `mixture+ramp`: the mixture, plus a batch of 32 ramped existence questions every step.

Measured here (docs/experiments.md): existence leaves ln 2 only where the cells hold little besides
the class; the ramp carries it to the full cells. At 1,000 steps the mixture+ramp is what the
build's language pretraining now does (language_pretrain.existence_batch_size and the fade).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import time
from pathlib import Path

import torch
from PIL import Image

from rlhfv_ray.scene_world import language_pretrain as lp
from rlhfv_ray.scene_world.build_model import world_tokenizer
from rlhfv_ray.scene_world.tiny_llava import TinyLlavaSpec, build_processor, build_tiny_llava
from rlhfv_ray.model.encoding import encode_conversations, pad_lm_batch
from rlhfv_ray.scene_world.language_pretrain import class_words, existence_conversations, fade_weight, other_words
from rlhfv_ray.scene_world.grammar import sample_vqa
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import WorldParams, split_seed

VARIANTS = ("existence-full", "existence-class-only", "existence-ramp", "mixture", "mixture+ramp")


def run_variant(variant: str, steps: int, batch: int, hold: int, ramp: int, every: int, seed: int) -> dict:
    torch.manual_seed(seed)
    spec, params = TinyLlavaSpec(), WorldParams()
    tokenizer = world_tokenizer(spec.tokenizer_vocab_size)
    processor = build_processor(tokenizer, spec)
    model = build_tiny_llava(tokenizer, spec)
    blank = Image.new("RGB", (params.image_size, params.image_size))
    scenes = [sample_scene(split_seed("sft", i), params) for i in range(6000)]
    classes, others = lp.cell_token_ids(tokenizer, scenes, class_words), lp.cell_token_ids(tokenizer, scenes, other_words)
    existence = encode_conversations(processor, [blank] * len(scenes), existence_conversations(scenes, random.Random(seed)))
    mixture = encode_conversations(processor, [blank] * len(scenes), lp._conversations(scenes, 6, seed))

    def weight(step: int) -> float:
        if variant == "existence-class-only":
            return 0.0
        if variant.endswith("ramp"):
            return fade_weight(step, hold, ramp)
        return 1.0

    def embed(encoded, idx, class_ids: torch.Tensor, other_ids: torch.Tensor, w: float) -> tuple[dict, torch.Tensor]:
        """Rows `idx` of `encoded`, right-padded, and their input embeddings with the image tokens
        replaced by the cells: class words + w * the other words."""
        rows = pad_lm_batch([encoded[i][0] for i in idx], [encoded[i][1] for i in idx], tokenizer.pad_token_id)
        return rows, lp._embed_with_cells(model, rows["input_ids"], class_ids, other_ids, w)

    validation = [sample_scene(split_seed("validation", i), params) for i in range(200)]
    items = [(j, item) for j, s in enumerate(validation) for item in sample_vqa(s, random.Random(1 + j), 4)]
    if variant.startswith("existence"):
        items = [(j, item) for j, item in items if item.kind == "existence"]
    val_encoded = encode_conversations(processor, [blank] * len(items), [[(i.question, i.answer)] for _, i in items])
    owners = [j for j, _ in items]
    val_classes = lp.cell_token_ids(tokenizer, validation, class_words)[owners]
    val_others = lp.cell_token_ids(tokenizer, validation, other_words)[owners]

    def evaluate() -> dict:
        model.eval()
        scores = collections.defaultdict(list)
        w = 0.0 if variant == "existence-class-only" else 1.0
        with torch.no_grad():
            for start in range(0, len(items), 200):
                chunk = range(start, min(start + 200, len(items)))
                rows, embeds = embed(val_encoded, chunk, val_classes[start:chunk.stop], val_others[start:chunk.stop], w)
                logits = model(inputs_embeds=embeds, attention_mask=rows["attention_mask"]).logits[:, :-1]
                labels = rows["labels"][:, 1:]
                right = ((logits.argmax(-1) == labels) | (labels == -100)).all(1)
                for k, i in enumerate(chunk):
                    scores[items[i][1].kind].append(bool(right[k]))
                    scores["all"].append(bool(right[k]))
        model.train()
        return {kind: round(sum(v) / len(v), 3) for kind, v in sorted(scores.items())}

    decoder = list(model.model.language_model.parameters())
    optimizer = torch.optim.AdamW(decoder, lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    main = existence if variant.startswith("existence") else mixture
    curve, started = [], time.perf_counter()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:  # the build's schedule: 50 warm-up steps, cosine decay
            group["lr"] = 1e-3 * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, len(main), (batch,), generator=generator).tolist()
        rows, embeds = embed(main, idx, classes[idx], others[idx], weight(step) if main is existence else 1.0)
        loss = model(inputs_embeds=embeds, attention_mask=rows["attention_mask"], labels=rows["labels"]).loss
        if variant == "mixture+ramp":
            idx = torch.randint(0, len(existence), (32,), generator=generator).tolist()
            rows, embeds = embed(existence, idx, classes[idx], others[idx], weight(step))
            loss = loss + model(inputs_embeds=embeds, attention_mask=rows["attention_mask"], labels=rows["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder, 1.0)
        optimizer.step()
        if step % every == 0 or step == steps:
            point = {"step": step, "loss": round(loss.item(), 4), "seconds": round(time.perf_counter() - started, 1),
                     "accuracy": evaluate()}
            print(variant, point, flush=True)
            curve.append(point)
    return {"variant": variant, "steps": steps, "batch": batch, "seed": seed, "curve": curve,
            "final_accuracy": curve[-1]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS,
                        default=["existence-full", "existence-class-only", "existence-ramp"])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hold", type=int, default=200)
    parser.add_argument("--ramp", type=int, default=200)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/existence_probe.json")
    args = parser.parse_args()
    results = [run_variant(v, args.steps, args.batch, args.hold, args.ramp, args.every, args.seed)
               for v in args.variants]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": vars(args), "results": results}, indent=2))
    print(json.dumps({r["variant"]: r["final_accuracy"] for r in results}, indent=2))


if __name__ == "__main__":
    main()
