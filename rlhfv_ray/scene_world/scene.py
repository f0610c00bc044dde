"""Scene graphs sampled from a seed: the ground truth every answer is checked against."""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlhfv_ray.scene_world.spec import (
    CLASS_BY_NAME,
    COLORS,
    COLS,
    MAX_COUNT,
    OBJECT_CLASSES,
    ROWS,
    SCENE_TYPE_BY_NAME,
    SCENE_TYPES,
    WorldParams,
)


@dataclass(frozen=True)
class ObjectGroup:
    """`count` objects of one class and one color filling the grid cell (row, col)."""

    cls: str
    color: str
    count: int
    row: int  # index into ROWS
    col: int  # index into COLS

    @property
    def cell(self) -> tuple[int, int]:
        return (self.row, self.col)


@dataclass(frozen=True)
class Scene:
    seed: int
    scene_type: str
    groups: tuple[ObjectGroup, ...]  # in reading order (row, then column); one class at most once

    def group_of(self, cls: str) -> ObjectGroup | None:
        for group in self.groups:
            if group.cls == cls:
                return group
        return None

    def group_at(self, row: int, col: int) -> ObjectGroup | None:
        for group in self.groups:
            if group.cell == (row, col):
                return group
        return None

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(g.cls for g in self.groups)

    def missing_frequent(self) -> list[str]:
        """The scene type's frequent classes that are absent, in the type's order."""
        present = self.classes
        return [c for c in SCENE_TYPE_BY_NAME[self.scene_type].frequent if c not in present]

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "scene_type": self.scene_type,
            "groups": [
                {"cls": g.cls, "color": g.color, "count": g.count, "row": g.row, "col": g.col}
                for g in self.groups
            ],
        }


def _sample_class(rng: random.Random, frequent: tuple[str, ...], used: set[str], p_frequent: float) -> str:
    frequent_left = [c for c in frequent if c not in used]
    others = [c.name for c in OBJECT_CLASSES if c.name not in used and c.name not in frequent]
    if frequent_left and (not others or rng.random() < p_frequent):
        return rng.choice(frequent_left)
    return rng.choice(others)


def _with_prior(rng: random.Random, values: list, typical, strength: float):
    """Sample from `values`, returning `typical` with probability `strength` when it is set."""
    if typical is not None and rng.random() < strength:
        return typical
    choices = [v for v in values if v != typical] if typical is not None else values
    return rng.choice(choices)


def sample_scene(seed: int, params: WorldParams = WorldParams()) -> Scene:
    """The scene of `seed`: same seed and params, same scene, on every machine."""
    rng = random.Random(seed)
    scene_type = rng.choice(SCENE_TYPES)
    n_groups = rng.randint(params.min_groups, params.max_groups)
    used: set[str] = set()
    free_cells = [(r, c) for r in range(len(ROWS)) for c in range(len(COLS))]
    groups = []
    for _ in range(n_groups):
        cls = _sample_class(rng, scene_type.frequent, used, params.frequent_class_prob)
        used.add(cls)
        spec = CLASS_BY_NAME[cls]
        color = _with_prior(rng, list(COLORS), spec.typical_color, params.prior_strength)
        count = _with_prior(rng, list(range(1, MAX_COUNT + 1)), spec.typical_count, params.prior_strength)
        typical_row = ROWS.index(spec.typical_row) if spec.typical_row else None
        rows_free = sorted({r for r, _ in free_cells})
        if typical_row is not None and typical_row not in rows_free:
            typical_row = None
        row = _with_prior(rng, rows_free, typical_row, params.prior_strength)
        col = rng.choice([c for r, c in free_cells if r == row])
        free_cells.remove((row, col))
        groups.append(ObjectGroup(cls, color, count, row, col))
    groups.sort(key=lambda g: g.cell)
    return Scene(seed=seed, scene_type=scene_type.name, groups=tuple(groups))
