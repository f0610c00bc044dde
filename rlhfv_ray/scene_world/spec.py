"""The vocabulary of the scene world: object classes, colors, positions, scene types and priors.

Hallucination in the paper comes from priors the model learned from text (§3.2): "street" implies
"person", bananas are yellow. The world reproduces that with three kinds of prior:

- scene-type co-occurrence: each scene type has frequent classes (Table 2's over-generalization);
- per-class typical attributes: a typical color, count or row for some classes;
- a noisy caption corpus that states the prior instead of what is visible (see `noise.py`).

Everything here is plain data; `WorldParams` holds the knobs, validated strictly by the configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# RGB values are far apart so a linear patch embedding separates them; backgrounds are pale so
# objects always stand out. Detail strokes (wheels, windows) are drawn in DETAIL_RGB.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (30, 150, 50),
    "blue": (35, 75, 225),
    "yellow": (240, 200, 10),
    "purple": (135, 50, 175),
    "orange": (250, 125, 20),
}
DETAIL_RGB = (25, 25, 25)
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
NUMBER_WORDS = ("one", "two", "three", "four")
MAX_COUNT = len(NUMBER_WORDS)
# The paper's four response-level types (MHumanEval); a wrong scene type is tracked as "scene".
HALLUCINATION_TYPES = ("object", "attribute", "number", "position")


@dataclass(frozen=True)
class ObjectClass:
    name: str
    plural: str
    typical_color: str | None = None
    typical_count: int | None = None
    typical_row: str | None = None


@dataclass(frozen=True)
class SceneType:
    name: str
    background: tuple[int, int, int]
    # Ordered: the first frequent class that is absent is the one a hallucinating caption names.
    frequent: tuple[str, ...]


OBJECT_CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass("car", "cars", typical_count=2),
    ObjectClass("bus", "buses", typical_color="yellow"),
    ObjectClass("sign", "signs", typical_row="top"),
    ObjectClass("cup", "cups", typical_count=2),
    ObjectClass("plate", "plates", typical_color="blue"),
    ObjectClass("bottle", "bottles", typical_color="green"),
    ObjectClass("boat", "boats", typical_row="bottom"),
    ObjectClass("umbrella", "umbrellas", typical_color="red"),
    ObjectClass("ball", "balls", typical_count=1),
    ObjectClass("chair", "chairs", typical_row="bottom"),
    ObjectClass("lamp", "lamps", typical_row="top"),
    ObjectClass("book", "books", typical_count=3),
    ObjectClass("kite", "kites", typical_row="top"),
    ObjectClass("bench", "benches", typical_count=1),
    ObjectClass("tree", "trees", typical_color="green"),
)
CLASS_BY_NAME: dict[str, ObjectClass] = {c.name: c for c in OBJECT_CLASSES}
CLASS_BY_PLURAL: dict[str, ObjectClass] = {c.plural: c for c in OBJECT_CLASSES}

SCENE_TYPES: tuple[SceneType, ...] = (
    SceneType("street", (196, 196, 196), ("bus", "car", "sign")),
    SceneType("kitchen", (238, 222, 196), ("cup", "plate", "bottle")),
    SceneType("beach", (250, 238, 180), ("boat", "umbrella", "ball")),
    SceneType("office", (200, 216, 240), ("chair", "lamp", "book")),
    SceneType("park", (196, 232, 196), ("tree", "bench", "kite")),
)
SCENE_TYPE_BY_NAME: dict[str, SceneType] = {s.name: s for s in SCENE_TYPES}

# Seed ranges of the splits: a scene is identified by its seed, and no seed is ever in two splits.
SPLIT_SEED_BASE: dict[str, int] = {
    "sft": 0,
    "feedback": 10_000_000,
    "validation": 20_000_000,
    "benchmark": 90_000_000,
}
SPLIT_SEED_SPAN = 10_000_000


def split_seed(split: str, index: int) -> int:
    """The seed of scene `index` of `split`; raises if the index would leave the split's range."""
    if split not in SPLIT_SEED_BASE:
        raise ValueError(f"unknown split {split!r}; known: {sorted(SPLIT_SEED_BASE)}")
    if not 0 <= index < SPLIT_SEED_SPAN:
        raise ValueError(f"scene index {index} outside [0, {SPLIT_SEED_SPAN}) for split {split!r}")
    return SPLIT_SEED_BASE[split] + index


def split_of_seed(seed: int) -> str:
    for name, base in SPLIT_SEED_BASE.items():
        if base <= seed < base + SPLIT_SEED_SPAN:
            return name
    raise ValueError(f"seed {seed} belongs to no split")


# pydantic reads `__pydantic_config__` from stdlib dataclasses: the configs reject unknown keys
# here too, while this module stays free of pydantic.
_FORBID_EXTRA = {"extra": "forbid"}


@dataclass(frozen=True)
class NoiseRates:
    """Per-condition probabilities that a noisy SFT caption states the prior instead of the truth.

    object: an object of a class foreign to the scene type is named as the type's first absent
        frequent class (over-generalization; the corrected segment is the class name).
    attribute / number / position: a group whose class has a typical color / count / row that
        differs from the truth is described with the typical value.
    """

    __pydantic_config__ = _FORBID_EXTRA
    object: float = 0.65
    attribute: float = 0.65
    number: float = 0.65
    position: float = 0.65


@dataclass(frozen=True)
class WorldParams:
    """Knobs of scene sampling and caption noise. Defaults are the calibrated embedded world."""

    __pydantic_config__ = _FORBID_EXTRA
    image_size: int = 96
    min_groups: int = 1
    max_groups: int = 4
    # Probability that a group's class is one of the scene type's frequent classes.
    frequent_class_prob: float = 0.85
    # Probability that a class with a typical color/count/row is sampled with it.
    prior_strength: float = 0.7
    noise: NoiseRates = field(default_factory=NoiseRates)

    def __post_init__(self) -> None:
        if self.image_size % 3 or self.image_size < 48:
            raise ValueError("image_size must be a multiple of 3 and at least 48 (3x3 grid)")
        if not 1 <= self.min_groups <= self.max_groups <= len(ROWS) * len(COLS):
            raise ValueError("need 1 <= min_groups <= max_groups <= 9")
        for name in ("frequent_class_prob", "prior_strength"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability")
        for name in ("object", "attribute", "number", "position"):
            if not 0.0 <= getattr(self.noise, name) <= 1.0:
                raise ValueError(f"noise.{name} must be a probability")
