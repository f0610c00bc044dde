"""Annotation tasks from the scene world, and its oracle as an annotator that uses the page's edits.

Tasks are shaped as `collect-feedback --annotator export` writes them (RLHF-V records, `chosen`
empty, the answer's id and the prompt set's meta, with its scene, in `origin_split`). The answers
are the world's noisy captions, which hallucinate as the tiny model does, so no model has to run.
"""

from __future__ import annotations

import json
import random

from rlhfv_ray.annotation.edits import Edit, edits_between
from rlhfv_ray.data.records import make_record
from rlhfv_ray.scene_world.data import scene_from_json, scene_to_json
from rlhfv_ray.scene_world.grammar import DESCRIPTION_PROMPTS
from rlhfv_ray.scene_world.noise import noisy_caption
from rlhfv_ray.scene_world.oracle import annotate
from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.scene_world.spec import COLORS, COLS, NUMBER_WORDS, ROWS, NoiseRates, split_seed

DS_NAME = "scene-world"


def scene_tasks(n: int, first: int = 0) -> list[dict]:
    records = []
    for index in range(first, first + n):
        scene = sample_scene(split_seed("feedback", index))
        answer = noisy_caption(scene, NoiseRates(), random.Random(index)).text
        records.append(make_record(
            index, image_to_png_bytes(render_scene(scene)), DESCRIPTION_PROMPTS[index % len(DESCRIPTION_PROMPTS)],
            "", answer, ds_name=DS_NAME, origin_dataset=DS_NAME, image_path=f"scene-{index}.png",
            origin_split={"model": "noisy-corpus", "id": f"scene-{index}", "types": [],
                          "meta": json.dumps({"scene": scene_to_json(scene)})}))
    return records


def oracle_chosen(record: dict) -> str:
    """What the oracle makes of the task's answer, as `collect-feedback --annotator scene-oracle` would."""
    meta = json.loads(json.loads(record["origin_split"])["meta"])
    return annotate(scene_from_json(meta["scene"]), json.loads(record["text"])["rejected"]).chosen


def hallucination_type(removed: list[str], added: list[str]) -> str:
    """The type an annotator would tag: by the words the edit touches."""
    touched = {w.strip(".,").lower() for w in removed + added}
    if touched & set(NUMBER_WORDS):
        return "number"
    if touched & set(COLORS):
        return "attribute"
    if touched & {*ROWS, *COLS, "left", "right", "top", "bottom", "middle", "center"}:
        return "position"
    return "object"


def oracle_edits(record: dict) -> list[Edit]:
    """The oracle's correction as page edits: replacements and deletions of word spans (an
    insertion takes the word before it along, since the page edits selected words)."""
    answer = json.loads(record["text"])["rejected"]
    edits, words = [], answer.split()
    for edit in edits_between(answer, oracle_chosen(record), hallucination_type):
        if edit.start == edit.end:  # insertion before word `start`
            anchor = edit.start - 1 if edit.start > 0 else 0
            text = f"{words[anchor]} {edit.text}" if edit.start > 0 else f"{edit.text} {words[0]}"
            edit = Edit(start=anchor, end=anchor + 1, text=text, type=edit.type)
        edits.append(edit)
    return edits
