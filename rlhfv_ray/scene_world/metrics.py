"""Hallucination metrics (pure): CHAIR-style response/mention rates, per-type rates, recall, VQA.

Definitions (paper §4.1, Object HalBench and MHumanEval, adapted to the scene world):
- response_hallucination_rate: responses with >= 1 hallucination of any type / responses. A
  response with a sentence the parser cannot read counts as hallucinating: it could not be
  verified, and a model must not look trustworthy by becoming unreadable.
- mention_hallucination_rate (CHAIR_i): object mentions of absent classes / all object mentions.
- hallucination_by_type: response-level rate per type (object, attribute, number, position).
- object_recall: present classes mentioned / present classes (informativeness; guards against
  winning by saying less).
- overgeneralization_delta (paper Table 2): for each scene type, the rate at which responses
  hallucinate that type's frequent classes in scenes of the type, minus the same rate over all
  responses.
- ci95: 95% Wilson intervals of the response-level rates and of VQA accuracy (one response per
  scene, one answer per question: binomial counts); see `stats.py` for why they are reported.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Sequence

from rlhfv_ray.eval.stats import wilson_interval
from rlhfv_ray.scene_world.grammar import normalize_answer
from rlhfv_ray.scene_world.judge import judge_response
from rlhfv_ray.scene_world.scene import Scene
from rlhfv_ray.scene_world.spec import HALLUCINATION_TYPES, SCENE_TYPE_BY_NAME


@dataclass(frozen=True)
class CaptionScore:
    seed: int
    scene_type: str
    readable: bool
    mentions: int
    hallucinated_mentions: int
    types: frozenset[str]  # hallucination types found (may include "scene")
    hallucinated_classes: frozenset[str]
    recalled: int
    groups: int
    words: int

    @property
    def hallucinated(self) -> bool:
        return bool(self.types) or not self.readable


def score_caption(scene: Scene, text: str) -> CaptionScore:
    verdict = judge_response(scene, text)
    claims = [v for v in verdict.sentences if v.sentence.claim is not None]
    hallucinated_classes = frozenset(v.sentence.claim.cls for v in claims if "object" in v.errors)
    mentioned_present = {v.sentence.claim.cls for v in claims} & scene.classes
    return CaptionScore(
        seed=scene.seed,
        scene_type=scene.scene_type,
        readable=verdict.parsed.readable,
        mentions=len(claims),
        hallucinated_mentions=sum("object" in v.errors for v in claims),
        types=frozenset(verdict.error_types),
        hallucinated_classes=hallucinated_classes,
        recalled=len(mentioned_present),
        groups=len(scene.groups),
        words=len(text.split()),
    )


@dataclass(frozen=True)
class VQAResult:
    kind: str
    expected: str
    predicted: str

    @property
    def correct(self) -> bool:
        return normalize_answer(self.predicted) == normalize_answer(self.expected)


def _rate(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def overgeneralization_delta(scores: Sequence[CaptionScore]) -> dict[str, float]:
    """Per scene type: P(hallucinate a frequent class of T | scene of type T) - P(same | any scene)."""
    out = {}
    for scene_type, spec in SCENE_TYPE_BY_NAME.items():
        frequent = set(spec.frequent)
        hits = [bool(s.hallucinated_classes & frequent) for s in scores]
        inside = [h for h, s in zip(hits, scores) if s.scene_type == scene_type]
        if inside:
            out[scene_type] = mean(inside) - mean(hits)
    return out


def summarize(captions: Sequence[CaptionScore], vqa: Sequence[VQAResult]) -> dict:
    """The benchmark's figures; see the module docstring for each definition."""
    n = len(captions)
    type_counts = {t: sum(t in s.types for s in captions) for t in HALLUCINATION_TYPES}
    by_type = {t: _rate(count, n) for t, count in type_counts.items()}
    delta = overgeneralization_delta(captions)
    vqa_by_kind: dict[str, list[bool]] = defaultdict(list)
    for r in vqa:
        vqa_by_kind[r.kind].append(r.correct)
    hallucinated = sum(s.hallucinated for s in captions)
    correct = sum(r.correct for r in vqa)
    ci95 = {
        "response_hallucination_rate": wilson_interval(hallucinated, n),
        "hallucination_by_type": {t: wilson_interval(count, n) for t, count in type_counts.items()},
        "vqa_accuracy": wilson_interval(correct, len(vqa)),
    }
    return {
        "n_responses": n,
        "response_hallucination_rate": _rate(hallucinated, n),
        "mention_hallucination_rate": _rate(sum(s.hallucinated_mentions for s in captions),
                                            sum(s.mentions for s in captions)),
        "hallucination_by_type": by_type,
        "scene_type_errors": sum("scene" in s.types for s in captions),
        "object_recall": _rate(sum(s.recalled for s in captions), sum(s.groups for s in captions)),
        "mean_response_words": mean(s.words for s in captions) if captions else 0.0,
        "unparsed_responses": sum(not s.readable for s in captions),
        "vqa_accuracy": _rate(correct, len(vqa)),
        "vqa_accuracy_by_kind": {k: mean(v) for k, v in sorted(vqa_by_kind.items())},
        "n_vqa": len(vqa),
        "overgeneralization_delta": delta,
        "overgeneralization_delta_mean": mean(delta.values()) if delta else 0.0,
        "ci95": ci95,
    }
