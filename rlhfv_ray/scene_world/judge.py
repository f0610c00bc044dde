"""Judge what a response claims against the scene graph: the one place that decides what is a
hallucination, used by both the benchmark (to count) and the oracle annotator (to correct)."""

from __future__ import annotations

from dataclasses import dataclass

from rlhfv_ray.scene_world.grammar import Claim
from rlhfv_ray.scene_world.parser import ParsedResponse, Sentence, parse_response
from rlhfv_ray.scene_world.scene import Scene


def claim_errors(scene: Scene, claim: Claim) -> tuple[str, ...]:
    """The hallucination types in one claim. An absent class is an object hallucination and its
    other fields are not judged (there is no true group to compare them with)."""
    group = scene.group_of(claim.cls)
    if group is None:
        return ("object",)
    errors = []
    if claim.color != group.color:
        errors.append("attribute")
    if claim.count != group.count:
        errors.append("number")
    if (claim.row, claim.col) != group.cell:
        errors.append("position")
    return tuple(errors)


@dataclass(frozen=True)
class SentenceVerdict:
    sentence: Sentence
    errors: tuple[str, ...]  # empty: correct; ("unparsed",): unreadable


@dataclass(frozen=True)
class ResponseVerdict:
    parsed: ParsedResponse
    sentences: tuple[SentenceVerdict, ...]

    @property
    def error_types(self) -> set[str]:
        return {e for v in self.sentences for e in v.errors if e != "unparsed"}


def judge_response(scene: Scene, text: str) -> ResponseVerdict:
    parsed = parse_response(text)
    verdicts = []
    for sentence in parsed.sentences:
        if sentence.kind == "unparsed":
            errors: tuple[str, ...] = ("unparsed",)
        elif sentence.kind == "scene":
            errors = () if sentence.scene_type == scene.scene_type else ("scene",)
        else:
            errors = claim_errors(scene, sentence.claim)
        verdicts.append(SentenceVerdict(sentence, errors))
    return ResponseVerdict(parsed, tuple(verdicts))
