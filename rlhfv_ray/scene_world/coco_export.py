"""The scene world's benchmark scenes in the COCO instances format, so the generic `coco` benchmark
(POPE + CHAIR) runs on them exactly as on a user's labelled images.

Written to a folder: `images/<seed>.png`, `instances.json` (one annotation per object, its box the
group's grid cell) and `synonyms.txt` (each class with its plural: the world's only words for it).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import Scene
from rlhfv_ray.scene_world.spec import OBJECT_CLASSES

INSTANCES, SYNONYMS, IMAGES = "instances.json", "synonyms.txt", "images"


def instances(scenes: list[Scene], image_size: int) -> dict:
    category_id = {spec.name: i + 1 for i, spec in enumerate(OBJECT_CLASSES)}
    cell = image_size / 3
    images, annotations = [], []
    for scene in scenes:
        images.append({"id": scene.seed, "file_name": f"{scene.seed}.png", "width": image_size, "height": image_size})
        for group in scene.groups:
            for _ in range(group.count):
                annotations.append({"id": len(annotations) + 1, "image_id": scene.seed,
                                    "category_id": category_id[group.cls], "iscrowd": 0, "area": cell * cell,
                                    "bbox": [group.col * cell, group.row * cell, cell, cell]})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in category_id.items()]}


def synonyms_text() -> str:
    return "".join(f"{spec.name}, {spec.plural}\n" for spec in OBJECT_CLASSES)


def export_coco(scenes: list[Scene], image_size: int, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        (out / IMAGES / f"{scene.seed}.png").write_bytes(image_to_png_bytes(render_scene(scene, image_size)))
    (out / INSTANCES).write_text(json.dumps(instances(scenes, image_size)))
    (out / SYNONYMS).write_text(synonyms_text())
    return out
