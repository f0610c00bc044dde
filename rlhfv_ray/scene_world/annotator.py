"""The scene world's oracle as an annotator plug-in (`scene-oracle`): each row's scene comes in its
`meta` (written by `scene-data`), and the oracle corrects the hallucinated segments against it."""

from __future__ import annotations

import json
from typing import Sequence

from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.annotators import Annotation
from rlhfv_ray.scene_world.data import scene_from_json
from rlhfv_ray.scene_world.oracle import annotate


class SceneOracle(StrictModel):
    def annotate(self, rows: Sequence[dict]) -> list[Annotation]:
        out = []
        for row in rows:
            meta = json.loads(row.get("meta") or "{}")
            if "scene" not in meta:
                raise ValueError(f"row {row.get('id')}: the scene oracle needs the scene in `meta` "
                                 "(prompt sets written by `rlhfv scene-data` have it)")
            annotation = annotate(scene_from_json(meta["scene"]), row["answer"])
            out.append(Annotation(chosen=annotation.chosen,
                                  types=tuple(k for c in annotation.corrections for k in c.kinds),
                                  segments=len(annotation.corrections),
                                  info={"unreadable_sentences": annotation.unreadable_sentences}))
        return out
