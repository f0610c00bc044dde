"""The world's language: detailed-description captions, prompts, and VQA questions with answers.

A caption is a scene sentence followed by one sentence per object group, in reading order:

    "A street scene. Two red cars are at the top left. One yellow bus is at the bottom center."

`Claim` is what one group sentence asserts; `render_claim` and `parser.parse_response` are exact
inverses on this grammar, which is what lets the oracle rewrite only the words that are wrong.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlhfv_ray.scene_world.scene import ObjectGroup, Scene
from rlhfv_ray.scene_world.spec import CLASS_BY_NAME, COLS, NUMBER_WORDS, OBJECT_CLASSES, ROWS

DESCRIPTION_PROMPTS: tuple[str, ...] = (
    "Describe the image in detail.",
    "What is in this picture? Describe every object.",
    "Give a detailed description of this scene.",
    "Describe everything you see, with counts, colors and positions.",
)


@dataclass(frozen=True)
class Claim:
    """What one group sentence says: `count` `color` objects of `cls` at (row, col)."""

    cls: str
    color: str
    count: int
    row: int
    col: int

    @classmethod
    def of(cls, group: ObjectGroup) -> "Claim":
        return cls(group.cls, group.color, group.count, group.row, group.col)


def noun(cls: str, count: int) -> str:
    spec = CLASS_BY_NAME[cls]
    return spec.name if count == 1 else spec.plural


def position_phrase(row: int, col: int) -> str:
    return f"{ROWS[row]} {COLS[col]}"


def render_claim(claim: Claim) -> str:
    verb = "is" if claim.count == 1 else "are"
    number = NUMBER_WORDS[claim.count - 1].capitalize()
    return (
        f"{number} {claim.color} {noun(claim.cls, claim.count)} {verb} "
        f"at the {position_phrase(claim.row, claim.col)}."
    )


def render_scene_sentence(scene_type: str) -> str:
    return f"A {scene_type} scene."


def render_caption(scene_type: str, claims: list[Claim]) -> str:
    return " ".join([render_scene_sentence(scene_type), *(render_claim(c) for c in claims)])


def clean_caption(scene: Scene) -> str:
    """The truthful detailed description of `scene`."""
    return render_caption(scene.scene_type, [Claim.of(g) for g in scene.groups])


@dataclass(frozen=True)
class VQAItem:
    question: str
    answer: str
    kind: str  # existence | count | color | position


def _the(group: ObjectGroup) -> tuple[str, str]:
    """("the cars", "are") / ("the car", "is") for questions about a present group."""
    return f"the {noun(group.cls, group.count)}", ("is" if group.count == 1 else "are")


def vqa_for_group(group: ObjectGroup, kind: str) -> VQAItem:
    subject, verb = _the(group)
    if kind == "count":
        return VQAItem(f"How many {CLASS_BY_NAME[group.cls].plural} are there?", NUMBER_WORDS[group.count - 1], kind)
    if kind == "color":
        return VQAItem(f"What color {verb} {subject}?", group.color, kind)
    if kind == "position":
        return VQAItem(f"Where {verb} {subject}?", position_phrase(group.row, group.col), kind)
    if kind == "existence":
        return VQAItem(f"Is there a {group.cls} in the image?", "yes", kind)
    raise ValueError(f"unknown VQA kind {kind!r}")


def absent_existence(cls: str) -> VQAItem:
    return VQAItem(f"Is there a {cls} in the image?", "no", "existence")


def sample_vqa(scene: Scene, rng: random.Random, n: int) -> list[VQAItem]:
    """`n` distinct short-answer questions about `scene`; existence questions are half about absent
    classes, and those favour the scene type's frequent classes (the adversarial, POPE-style case)."""
    items: list[VQAItem] = []
    seen: set[str] = set()
    absent_frequent = scene.missing_frequent()
    absent_other = [c.name for c in OBJECT_CLASSES if c.name not in scene.classes and c.name not in absent_frequent]
    for _ in range(n * 4):  # bounded retries; duplicates are skipped
        if len(items) == n:
            break
        kind = rng.choice(("existence", "count", "color", "position"))
        if kind == "existence" and rng.random() < 0.5:
            pool = absent_frequent if absent_frequent and rng.random() < 0.6 else absent_other
            item = absent_existence(rng.choice(pool))
        else:
            item = vqa_for_group(rng.choice(scene.groups), kind)
        if item.question not in seen:
            seen.add(item.question)
            items.append(item)
    # Existence questions first: asked after "what color are the cars?", "is there a car?" could be
    # answered from the conversation (mentioned = present) instead of from the image.
    items.sort(key=lambda item: item.kind != "existence")
    return items


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and surrounding space: how short answers are compared."""
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


def world_texts() -> list[str]:
    """Every sentence form of the world's language: what the tokenizer is trained on."""
    from rlhfv_ray.scene_world.spec import COLORS, SCENE_TYPES

    texts = ["USER: <image>\nASSISTANT:", "yes", "no", "Yes.", "No."]
    texts += list(DESCRIPTION_PROMPTS) + [render_scene_sentence(s.name) for s in SCENE_TYPES]
    for spec in OBJECT_CLASSES:
        for count in range(1, len(NUMBER_WORDS) + 1):
            group = ObjectGroup(spec.name, "red", count, 0, 0)
            texts += [vqa_for_group(group, kind).question for kind in ("count", "color", "position", "existence")]
            for color in COLORS:
                for row in range(len(ROWS)):
                    for col in range(len(COLS)):
                        texts.append(render_claim(Claim(spec.name, color, count, row, col)))
    texts += list(NUMBER_WORDS) + [position_phrase(r, c) for r in range(len(ROWS)) for c in range(len(COLS))]
    return texts
