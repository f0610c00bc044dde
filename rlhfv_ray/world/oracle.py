"""The oracle annotator: corrects the hallucinated segments of a response against the scene graph.

It stands in for RLHF-V's human annotators, who rewrite only what is wrong (paper §3.1). For each
sentence the judge finds wrong, it writes the minimal correction:

- a wrong color / count / position: the claim with only those fields set right (re-rendered by the
  grammar, so only those words, and the noun/verb agreement a count change forces, differ);
- an absent class: if the cell holds an object not described elsewhere, the claim describes that
  object instead (a replacement, as annotators write "a kite" over "a bus"); otherwise the sentence
  is removed (a pure deletion);
- a wrong scene type: the right one.

Unreadable sentences are left as they are and flagged: nothing unreadable is ever "corrected".
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rlhfv_ray.world.grammar import Claim, render_claim, render_scene_sentence
from rlhfv_ray.world.judge import judge_response
from rlhfv_ray.world.scene import Scene


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
    group = scene.group_of(claim.cls)
    if group is not None:
        return replace(claim, color=group.color, count=group.count, row=group.row, col=group.col)
    actual = scene.group_at(claim.row, claim.col)
    if actual is not None and actual.cls not in described:
        return Claim.of(actual)
    return None


def annotate(scene: Scene, response: str) -> Annotation:
    verdict = judge_response(scene, response)
    # Present classes the response describes (rightly or not; wrong fields get fixed in place): an
    # object correction must not turn one sentence into a duplicate of another.
    described = {c.cls for c in verdict.parsed.claims if scene.group_of(c.cls) is not None}
    corrections: list[Correction] = []
    edits: list[tuple[int, int, str]] = []
    for v in verdict.sentences:
        if not v.errors or v.errors == ("unparsed",):
            continue
        sentence = v.sentence
        if sentence.kind == "scene":
            corrected = render_scene_sentence(scene.scene_type)
        else:
            fixed = _corrected_claim(scene, sentence.claim, described)
            corrected = "" if fixed is None else render_claim(fixed)
            if fixed is not None:
                described.add(fixed.cls)
        corrections.append(Correction(v.errors, sentence.text, corrected))
        edits.append((sentence.start, sentence.end, corrected))
    chosen = response
    for start, end, corrected in reversed(edits):
        if corrected:
            chosen = chosen[:start] + corrected + chosen[end:]
        else:  # remove the sentence and the space that separated it from its neighbour
            before, after = chosen[:start], chosen[end:]
            chosen = before.rstrip() + (" " if before.strip() and after.strip() else "") + after.lstrip()
    return Annotation(response, chosen.strip(), tuple(corrections), len(verdict.parsed.unparsed))
