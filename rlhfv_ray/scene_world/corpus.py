"""Examples of the world: the noisy SFT corpus (captions + clean VQA) and the benchmark items."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS, sample_vqa
from rlhfv_ray.scene_world.noise import noisy_caption
from rlhfv_ray.scene_world.scene import Scene
from rlhfv_ray.scene_world.spec import HALLUCINATION_TYPES, WorldParams

CAPTION_TASK = "caption"
VQA_TASK = "vqa"


@dataclass(frozen=True)
class Example:
    """One (image, prompt, answer) item; `seed` identifies the scene. A training VQA example is a
    multi-turn conversation (`turns`), as LLaVA's instruction data is; `prompt`/`answer` are then
    its first turn."""

    seed: int
    task: str  # caption | vqa
    prompt: str
    answer: str
    kind: str  # for VQA: existence/count/color/position; for captions: the noise applied, or "clean"
    follow_ups: tuple[tuple[str, str], ...] = ()  # later (question, answer) turns of a conversation

    @property
    def turns(self) -> list[tuple[str, str]]:
        return [(self.prompt, self.answer), *self.follow_ups]


def _rng(seed: int, purpose: str) -> random.Random:
    # Independent streams per purpose, so adding VQA items never changes which captions are noisy.
    return random.Random(f"{seed}:{purpose}")


def sft_examples(scene: Scene, params: WorldParams, vqa_per_scene: int) -> list[Example]:
    """The noisy caption of one SFT scene, and one conversation of `vqa_per_scene` clean questions.

    Several questions per image matter: a small language model trained from scratch learns to look
    up the queried object among the image tokens several times faster from dense multi-question
    supervision than from one question per sequence (measured: 0.93 vs 0.60 accuracy after 900
    steps on the same text-only task)."""
    rng = _rng(scene.seed, "sft")
    caption = noisy_caption(scene, params.noise, _rng(scene.seed, "noise"))
    kind = "+".join(caption.noise_types) or "clean"
    examples = [Example(scene.seed, CAPTION_TASK, rng.choice(DESCRIPTION_PROMPTS), caption.text, kind)]
    items = sample_vqa(scene, rng, vqa_per_scene)
    if items:
        examples.append(Example(scene.seed, VQA_TASK, items[0].question, items[0].answer,
                                "+".join(i.kind for i in items),
                                tuple((i.question, i.answer) for i in items[1:])))
    return examples


def benchmark_examples(scene: Scene, index: int, vqa_per_scene: int) -> list[Example]:
    """One description prompt (phrasings rotate with the index) and clean VQA items per scene."""
    prompt = DESCRIPTION_PROMPTS[index % len(DESCRIPTION_PROMPTS)]
    examples = [Example(scene.seed, CAPTION_TASK, prompt, "", "description")]
    for item in sample_vqa(scene, _rng(scene.seed, "benchmark-vqa"), vqa_per_scene):
        examples.append(Example(scene.seed, VQA_TASK, item.question, item.answer, item.kind))
    return examples


def corpus_stats(rows: Iterable[dict]) -> dict:
    """Counts of the corpus: captions, noisy captions and the corruption types in them."""
    captions = noisy = vqa = questions = 0
    by_type: Counter[str] = Counter()
    for row in rows:
        if row["task"] == VQA_TASK:
            vqa += 1
            questions += len(row["kind"].split("+"))
            continue
        captions += 1
        if row["kind"] != "clean":
            noisy += 1
            by_type.update(row["kind"].split("+"))
    return {
        "captions": captions,
        "vqa_conversations": vqa,
        "vqa_questions": questions,
        "noisy_captions": noisy,
        "noisy_caption_share": noisy / captions if captions else 0.0,
        "corruptions_by_type": {t: by_type.get(t, 0) for t in HALLUCINATION_TYPES},
    }
