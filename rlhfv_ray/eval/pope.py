"""POPE-style yes/no object probing on COCO-format annotations (pure).

Li et al. 2023, "Evaluating Object Hallucination in Large Vision-Language Models": per image, ask
"Is there a {name} in the image?" about present categories (answer yes) and as many absent ones
(answer no), the absent ones drawn three ways:

- random: uniformly among the absent categories;
- popular: the absent categories found in the most images of the whole annotation set;
- adversarial: the absent categories that co-occur most often with the image's present ones.

The present categories asked about are drawn once per image and shared by the settings, so the
settings differ only in their negatives. Frequencies count images, not boxes (a crowd of people is
one image with a person). Ties rank by frequency, then name, so every ranking is reproducible; the
random draws use one stream per image and purpose, so adding an image changes no other question.

`index_instances` validates and indexes a COCO instances dict; `pope_questions` samples;
`parse_yes_no` reads an answer; `pope_metrics` scores answered questions per setting.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from rlhfv_ray.eval.stats import wilson_interval

PopeSetting = Literal["random", "popular", "adversarial"]
SETTINGS: tuple[PopeSetting, ...] = ("random", "popular", "adversarial")


@dataclass(frozen=True)
class CocoIndex:
    categories: tuple[str, ...]  # names, in the order of the file's `categories`
    files: Mapping[int, str]  # image id -> file_name, every image
    present: Mapping[int, frozenset[str]]  # image id -> annotated categories, images with >= 1 annotation

    @property
    def annotated_ids(self) -> list[int]:
        return sorted(self.present)

    @property
    def images_without_objects(self) -> int:
        return len(self.files) - len(self.present)


def _field(item, key: str, kind: str, position: int):
    if not isinstance(item, dict) or key not in item:
        raise ValueError(f"{kind}[{position}] has no {key!r}")
    return item[key]


def index_instances(instances: dict) -> CocoIndex:
    """Index a COCO instances dict; ValueError naming the first inconsistent entry."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(instances.get(key) if isinstance(instances, dict) else None, list):
            raise ValueError(f"COCO instances need a list {key!r}")
    names: dict[int, str] = {}
    for i, category in enumerate(instances["categories"]):
        cid, name = _field(category, "id", "categories", i), _field(category, "name", "categories", i)
        if cid in names or name in names.values():
            raise ValueError(f"categories[{i}]: id {cid!r} or name {name!r} appears twice")
        names[cid] = str(name)
    files: dict[int, str] = {}
    for i, image in enumerate(instances["images"]):
        iid = _field(image, "id", "images", i)
        if iid in files:
            raise ValueError(f"images[{i}]: image id {iid!r} appears twice")
        files[iid] = str(_field(image, "file_name", "images", i))
    present: dict[int, set[str]] = defaultdict(set)
    for i, annotation in enumerate(instances["annotations"]):
        iid, cid = _field(annotation, "image_id", "annotations", i), _field(annotation, "category_id", "annotations", i)
        if iid not in files:
            raise ValueError(f"annotations[{i}]: image_id {iid!r} is not in 'images'")
        if cid not in names:
            raise ValueError(f"annotations[{i}]: category_id {cid!r} is not in 'categories'")
        present[iid].add(names[cid])
    return CocoIndex(tuple(names.values()), files, {k: frozenset(v) for k, v in present.items()})


def _statistics(index: CocoIndex) -> tuple[Counter, dict[str, Counter]]:
    """(images per category, images per pair of categories) over the whole annotation set."""
    frequency: Counter = Counter()
    together: dict[str, Counter] = defaultdict(Counter)
    for categories in index.present.values():
        frequency.update(categories)
        for a in categories:
            together[a].update(c for c in categories if c != a)
    return frequency, together


def _negatives(setting: str, absent: list[str], present: frozenset[str], count: int, stream: str,
               frequency: Counter, together: dict[str, Counter]) -> list[str]:
    if setting == "random":
        return random.Random(stream).sample(absent, count)
    if setting == "popular":
        return sorted(absent, key=lambda c: (-frequency[c], c))[:count]
    if setting == "adversarial":
        return sorted(absent, key=lambda c: (-sum(together[p][c] for p in present), -frequency[c], c))[:count]
    raise ValueError(f"unknown POPE setting {setting!r}; use one of {SETTINGS}")


def pope_questions(instances: dict | CocoIndex, seed: int, per_image: int,
                   settings: Sequence[str] = SETTINGS, image_ids: Sequence[int] | None = None) -> list[dict]:
    """Questions `{"image_id", "setting", "category", "expected": "yes" | "no"}`, image by image.

    Per image and setting, n = min(per_image, present, absent) present categories and n absent
    ones; `image_ids` defaults to every image with an annotation. Statistics always come from the
    whole annotation set.
    """
    index = instances if isinstance(instances, CocoIndex) else index_instances(instances)
    frequency, together = _statistics(index)
    questions = []
    for image_id in index.annotated_ids if image_ids is None else image_ids:
        present = index.present.get(image_id, frozenset())
        absent = sorted(set(index.categories) - present)
        count = min(per_image, len(present), len(absent))
        positives = random.Random(f"{seed}:{image_id}:present").sample(sorted(present), count)
        for setting in settings:
            negatives = _negatives(setting, absent, present, count, f"{seed}:{image_id}:{setting}", frequency, together)
            questions += [{"image_id": image_id, "setting": setting, "category": c, "expected": "yes"}
                          for c in positives]
            questions += [{"image_id": image_id, "setting": setting, "category": c, "expected": "no"}
                          for c in negatives]
    return questions


_ANSWER_WORD = re.compile(r"[a-z']+")


def parse_yes_no(text: str) -> bool | None:
    """True (yes), False (no) or None (unreadable), read from the first sentence as POPE does.

    A leading "yes"/"no" decides; otherwise "no", "not" or an "n't" contraction means no (POPE
    splits on spaces and would read "there isn't" as yes), then "yes" anywhere means yes.
    """
    first = text.lower().replace("\u2019", "'").strip().split(".")[0]
    words = _ANSWER_WORD.findall(first)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    if any(w in ("no", "not") or w.endswith("n't") for w in words):
        return False
    return True if "yes" in words else None


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _setting_metrics(records: Sequence[dict]) -> dict:
    """Yes is the positive class; an unparsed answer is wrong and is neither a yes nor a no."""
    n = len(records)
    tp = sum(r["expected"] == "yes" and r["predicted"] == "yes" for r in records)
    fp = sum(r["expected"] == "no" and r["predicted"] == "yes" for r in records)
    tn = sum(r["expected"] == "no" and r["predicted"] == "no" for r in records)
    positives = sum(r["expected"] == "yes" for r in records)
    precision, recall = _rate(tp, tp + fp), _rate(tp, positives)
    return {
        "accuracy": _rate(tp + tn, n), "precision": precision, "recall": recall,
        "f1": _rate(2 * precision * recall, precision + recall), "yes_ratio": _rate(tp + fp, n), "n": n,
        "unparsed": sum(r["predicted"] is None for r in records),
        # questions about one image are not independent: read the interval as a lower bound on the error
        "ci95": {"accuracy": list(wilson_interval(tp + tn, n))},
    }


def pope_metrics(records: Sequence[dict], settings: Sequence[str] | None = None) -> dict[str, dict]:
    """Per setting (`settings`, default those of the records in order): accuracy, precision, recall,
    F1, yes-ratio, n, unparsed and the accuracy's Wilson interval. Records carry `setting`,
    `expected` ("yes"/"no") and `predicted` ("yes"/"no"/None)."""
    groups: dict[str, list[dict]] = {s: [] for s in settings or ()}
    for record in records:
        groups.setdefault(record["setting"], []).append(record)
    return {setting: _setting_metrics(group) for setting, group in groups.items()}
