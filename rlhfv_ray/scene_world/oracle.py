"""The oracle annotator: corrects the hallucinated segments of a response against the scene graph.

It stands in for RLHF-V's human annotators, who rewrite only what is wrong (paper §3.1). For each
sentence the judge finds wrong, it writes the minimal correction:

- a wrong color / count / position: the claim with only those fields set right (re-rendered by the
  grammar, so only those words, and the noun/verb agreement a count change forces, differ);
- an absent class: if the cell holds an object not described elsewhere, the claim describes that
  object instead (a replacement, as annotators write "a kite" over "a bus"); otherwise the sentence
  is removed (a pure deletion);
- a second, wrong sentence about a class another sentence already describes: fixing its fields
  would repeat that sentence, so it is treated like an absent class (what is in its cell, or
  removed). 21% of the chosen answers repeated a sentence before this rule;
- a wrong scene type: the right one.

Unreadable sentences are left as they are and flagged: nothing unreadable is ever "corrected".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rlhfv_ray.scene_world.grammar import Claim, render_claim, render_scene_sentence
from rlhfv_ray.scene_world.judge import judge_response
from rlhfv_ray.scene_world.scene import Scene


@dataclass(frozen=True)
class Correction:
    kinds: tuple[str, ...]  # hallucination types fixed in this sentence
    original: str
    corrected: str  # "" when the sentence is removed


@dataclass(frozen=True)
class Annotation:
    rejected: str
    chosen: str
    corrections: tuple[Correction, ...]
    unreadable_sentences: int

    @property
    def has_hallucination(self) -> bool:
        return bool(self.corrections)


def _corrected_claim(scene: Scene, claim: Claim, described: set[str]) -> Claim | None:
    """The fixed claim; None: remove the sentence. `described`: classes other sentences describe."""
    group = scene.group_of(claim.cls)
    if group is not None and claim.cls not in described:
        return replace(claim, color=group.color, count=group.count, row=group.row, col=group.col)
    actual = scene.group_at(claim.row, claim.col)
    if actual is not None and actual.cls not in described:
        return Claim.of(actual)
    return None


def annotate(scene: Scene, response: str) -> Annotation:
    verdict = judge_response(scene, response)
    # Present classes that correct sentences describe; each fix adds its class. A correction must
    # never repeat what another sentence says.
    described = {v.sentence.claim.cls for v in verdict.sentences
                 if not v.errors and v.sentence.kind not in ("scene", "unparsed")}
    wrong = [v for v in verdict.sentences if v.errors and v.errors != ("unparsed",)]
    # Fixes in place first (a wrong field of a present class), so an absent class is replaced by
    # what is in its cell only when no sentence about that object exists: the most minimal edit.
    in_place_first = sorted(wrong, key=lambda v: v.sentence.kind == "scene" or "object" in v.errors)
    corrected_text: dict[int, str] = {}
    for v in in_place_first:
        if v.sentence.kind == "scene":
            corrected_text[v.sentence.start] = render_scene_sentence(scene.scene_type)
            continue
        fixed = _corrected_claim(scene, v.sentence.claim, described)
        corrected_text[v.sentence.start] = "" if fixed is None else render_claim(fixed)
        if fixed is not None:
            described.add(fixed.cls)
    corrections = tuple(Correction(v.errors, v.sentence.text, corrected_text[v.sentence.start]) for v in wrong)
    edits = [(v.sentence.start, v.sentence.end, corrected_text[v.sentence.start]) for v in wrong]
    chosen = response
    for start, end, corrected in reversed(edits):
        if corrected:
            chosen = chosen[:start] + corrected + chosen[end:]
        else:  # remove the sentence and the space that separated it from its neighbour
            before, after = chosen[:start], chosen[end:]
            chosen = before.rstrip() + (" " if before.strip() and after.strip() else "") + after.lstrip()
    return Annotation(response, chosen.strip(), corrections, len(verdict.parsed.unparsed))
