"""Scene sampling and rendering: seeded, within the spec's ranges, byte-identical images."""

from collections import Counter

import pytest

from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import (
    COLORS, OBJECT_CLASSES, SCENE_TYPE_BY_NAME, SCENE_TYPES, SPLIT_SEED_BASE, SPLIT_SEED_SPAN, WorldParams,
    split_of_seed, split_seed,
)


def test_world_has_the_required_variety():
    assert len(OBJECT_CLASSES) >= 12 and len(COLORS) >= 6 and len(SCENE_TYPES) >= 4


def test_same_seed_same_scene_and_bytes():
    a, b = sample_scene(123), sample_scene(123)
    assert a == b
    assert image_to_png_bytes(render_scene(a)) == image_to_png_bytes(render_scene(b))
    assert image_to_png_bytes(render_scene(a)) != image_to_png_bytes(render_scene(sample_scene(124)))


def test_scenes_respect_the_spec():
    params = WorldParams()
    for seed in range(500):
        scene = sample_scene(seed, params)
        assert params.min_groups <= len(scene.groups) <= params.max_groups
        assert len({g.cls for g in scene.groups}) == len(scene.groups)  # a class at most once
        assert len({g.cell for g in scene.groups}) == len(scene.groups)  # a cell at most once
        assert list(scene.groups) == sorted(scene.groups, key=lambda g: g.cell)  # reading order
        for g in scene.groups:
            assert 1 <= g.count <= 4 and 0 <= g.row < 3 and 0 <= g.col < 3 and g.color in COLORS


def test_frequent_classes_co_occur_with_their_scene_type():
    hits, total = Counter(), Counter()
    for seed in range(2000):
        scene = sample_scene(seed)
        total[scene.scene_type] += len(scene.groups)
        hits[scene.scene_type] += sum(g.cls in SCENE_TYPE_BY_NAME[scene.scene_type].frequent for g in scene.groups)
    for scene_type in total:
        assert hits[scene_type] / total[scene_type] > 0.7


def test_render_size_and_background():
    scene = sample_scene(5)
    image = render_scene(scene, 96)
    assert image.size == (96, 96) and image.mode == "RGB"
    # a corner pixel of an empty cell shows the scene type's background
    empty = [(r, c) for r in range(3) for c in range(3) if scene.group_at(r, c) is None]
    r, c = empty[0]
    assert image.getpixel((c * 32 + 1, r * 32 + 1)) == SCENE_TYPE_BY_NAME[scene.scene_type].background


def test_splits_are_disjoint_seed_ranges():
    bases = sorted(SPLIT_SEED_BASE.values())
    assert all(b - a >= SPLIT_SEED_SPAN for a, b in zip(bases, bases[1:]))
    assert split_of_seed(split_seed("benchmark", 7)) == "benchmark"
    with pytest.raises(ValueError):
        split_seed("sft", SPLIT_SEED_SPAN)
