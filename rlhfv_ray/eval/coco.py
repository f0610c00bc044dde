"""Judge-free hallucination benchmark on COCO-format annotations (plug-in `coco`).

Users bring images and their object annotations in the COCO *instances* format; the benchmark asks
for one detailed description per image, scored CHAIR-style (`chair.py`), and POPE-style yes/no
questions about present and absent categories (`pope.py`). Decoding is greedy, so a checkpoint's
figures are reproducible given the annotations, the synonyms file and `seed`.

Images without annotations are skipped (nothing could be checked in them) and counted as
`images_without_objects`. A synonyms file naming categories the annotations lack is allowed with a
warning (their words are not scored); with the packaged COCO file this is expected for a subset of
COCO's categories and passes silently.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from statistics import mean
from typing import Iterator

from PIL import Image
from pydantic import Field, field_validator

from rlhfv_ray.config import StrictModel
from rlhfv_ray.eval.chair import DEFAULT_SYNONYMS, chair_metrics, load_synonyms, restrict_synonyms, score_description
from rlhfv_ray.eval.pope import (SETTINGS, CocoIndex, PopeSetting, index_instances, parse_yes_no, pope_metrics,
                                 pope_questions)
from rlhfv_ray.images import ImageDecodeError, decode_image
from rlhfv_ray.model.generate import GenerationSettings, generate_batched


def load_instances(path: str | Path) -> CocoIndex:
    """The indexed annotations of a COCO instances JSON file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations file not found: {path}")
    try:
        return index_instances(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not usable COCO instances: {error}") from None


def load_image(path: Path) -> Image.Image:
    """RGB image at `path`; an error naming the file where it is missing or does not decode."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    try:
        return decode_image(data)
    except ImageDecodeError as error:
        raise ImageDecodeError(error.reason, f"image {path}: {error}") from None


class CocoBenchmark(StrictModel):
    annotations: str  # COCO instances JSON
    images: str  # folder the file_names are relative to
    synonyms: str | None = None  # None: the packaged coco_synonyms.txt
    max_images: int | None = Field(None, gt=0)  # first N images (sorted by id) with >= 1 annotation
    pope_objects: int = Field(3, ge=0)  # present (and as many absent) categories per image and setting
    pope_settings: tuple[PopeSetting, ...] = SETTINGS
    description_prompt: str = "Describe this image in detail."
    pope_template: str = "Is there a {name} in the image?"
    batch_size: int = Field(64, gt=0)
    max_new_tokens: int = Field(96, gt=0)
    seed: int = 0

    @field_validator("pope_settings")
    @classmethod
    def _distinct(cls, settings: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(settings)) != len(settings):
            raise ValueError(f"settings repeat: {settings}")
        return settings

    @field_validator("pope_template")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            filled = template.format(name="\0")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"must be a format string whose only field is {{name}} ({error!r})") from None
        if "\0" not in filled:
            raise ValueError("must contain {name}")
        return template

    def _synonyms(self, index: CocoIndex) -> dict[str, str]:
        table, unknown = restrict_synonyms(load_synonyms(self.synonyms), index.categories)
        if unknown and self.synonyms is not None:
            warnings.warn(f"synonyms file {self.synonyms} names {len(unknown)} categories that are not in "
                          f"{self.annotations}; their words are not scored: {', '.join(unknown)}", stacklevel=3)
        return table

    def _jobs(self, index: CocoIndex, image_ids: list[int]) -> dict[int, list[dict]]:
        """Image id -> its prompts: the description, then its POPE questions."""
        jobs = {i: [{"image_id": i, "task": "description", "prompt": self.description_prompt}] for i in image_ids}
        for q in pope_questions(index, self.seed, self.pope_objects, self.pope_settings, image_ids):
            jobs[q["image_id"]].append({**q, "task": "pope", "prompt": self.pope_template.format(name=q["category"])})
        return jobs

    def _generate(self, model, processor, paths: dict[int, Path],
                  jobs: dict[int, list[dict]]) -> Iterator[tuple[dict, object]]:
        """(job, generation) pairs; images are decoded `batch_size` at a time to bound memory."""
        settings = GenerationSettings(max_new_tokens=self.max_new_tokens)
        ids = list(paths)
        for start in range(0, len(ids), self.batch_size):
            images = {i: load_image(paths[i]) for i in ids[start:start + self.batch_size]}
            chunk = [job for i in images for job in jobs[i]]
            generations = generate_batched(model, processor, [images[j["image_id"]] for j in chunk],
                                           [j["prompt"] for j in chunk], settings, self.batch_size)
            yield from zip(chunk, generations)

    def run(self, model, processor) -> tuple[dict, list[dict]]:
        """(metrics, one record per response) for `model`; see the module docstring."""
        index = load_instances(self.annotations)
        table = self._synonyms(index)
        image_ids = index.annotated_ids[:self.max_images]
        paths = {i: Path(self.images) / index.files[i] for i in image_ids}
        missing = [str(p) for p in paths.values() if not p.is_file()]
        if missing:  # before any generation: a typo in `images` should not cost a run
            raise FileNotFoundError(f"{len(missing)} image file(s) not found, e.g. {missing[:3]}")
        started = time.perf_counter()
        records = []
        for job, generation in self._generate(model, processor, paths, self._jobs(index, image_ids)):
            records.append(self._record(job, generation.text, generation.finished, index, table))
        seconds = time.perf_counter() - started
        return self._metrics(records, len(image_ids), index, seconds), records

    def _record(self, job: dict, text: str, finished: bool, index: CocoIndex, table: dict[str, str]) -> dict:
        image_id = job["image_id"]
        base = {"task": job["task"], "prompt": job["prompt"], "response": text, "finished": finished}
        if job["task"] == "description":
            return {"id": image_id, **base, **score_description(text, index.present[image_id], table)}
        answer = parse_yes_no(text)
        predicted = None if answer is None else ("yes" if answer else "no")
        return {"id": f"{image_id}:{job['setting']}:{job['category']}", **base, "setting": job["setting"],
                "expected": job["expected"], "predicted": predicted, "correct": predicted == job["expected"]}

    def _metrics(self, records: list[dict], images: int, index: CocoIndex, seconds: float) -> dict:
        metrics = chair_metrics([r for r in records if r["task"] == "description"])
        pope = pope_metrics([r for r in records if r["task"] == "pope"], self.pope_settings)
        accuracies = [m["accuracy"] for m in pope.values() if m["n"]]
        metrics.update(pope=pope, pope_accuracy=mean(accuracies) if accuracies else None, n_images=images,
                       images_without_objects=index.images_without_objects,
                       synonyms=str(self.synonyms or DEFAULT_SYNONYMS), generation_seconds=seconds)
        return metrics
