"""Map a response back to the claims it makes. Shared by the benchmark and the oracle annotator.

A sentence the grammar cannot read is kept as `unparsed`: the evaluator counts it and never scores
it as correct, and the oracle leaves it untouched (it cannot correct what it cannot read).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlhfv_ray.scene_world.grammar import Claim
from rlhfv_ray.scene_world.spec import CLASS_BY_NAME, CLASS_BY_PLURAL, COLORS, COLS, NUMBER_WORDS, ROWS, SCENE_TYPE_BY_NAME

_WORD = r"[A-Za-z]+"
_SCENE_RE = re.compile(rf"^A ({_WORD}) scene\.$", re.IGNORECASE)
_CLAIM_RE = re.compile(
    rf"^({_WORD}) ({_WORD}) ({_WORD}) (?:is|are) at the ({_WORD}) ({_WORD})\.$", re.IGNORECASE
)
# A sentence ends at a period followed by space or the end of the text.
_SENTENCE_RE = re.compile(r"\S.*?(?:\.(?=\s|$)|$)", re.DOTALL)


@dataclass(frozen=True)
class Sentence:
    text: str
    start: int  # character span in the response
    end: int
    kind: str  # "scene" | "claim" | "unparsed"
    scene_type: str | None = None
    claim: Claim | None = None


@dataclass(frozen=True)
class ParsedResponse:
    text: str
    sentences: tuple[Sentence, ...]

    @property
    def claims(self) -> list[Claim]:
        return [s.claim for s in self.sentences if s.claim is not None]

    @property
    def unparsed(self) -> list[str]:
        return [s.text for s in self.sentences if s.kind == "unparsed"]

    @property
    def scene_type(self) -> str | None:
        for s in self.sentences:
            if s.scene_type is not None:
                return s.scene_type
        return None

    @property
    def readable(self) -> bool:
        """True when every sentence parsed and there was at least one sentence."""
        return bool(self.sentences) and not self.unparsed


def parse_claim(sentence: str) -> Claim | None:
    match = _CLAIM_RE.match(sentence)
    if match is None:
        return None
    number, color, noun, row, col = (g.lower() for g in match.groups())
    spec = CLASS_BY_NAME.get(noun) or CLASS_BY_PLURAL.get(noun)
    if number not in NUMBER_WORDS or color not in COLORS or spec is None or row not in ROWS or col not in COLS:
        return None
    return Claim(spec.name, color, NUMBER_WORDS.index(number) + 1, ROWS.index(row), COLS.index(col))


def parse_sentence(text: str, start: int) -> Sentence:
    end = start + len(text)
    scene = _SCENE_RE.match(text)
    if scene and scene.group(1).lower() in SCENE_TYPE_BY_NAME:
        return Sentence(text, start, end, "scene", scene_type=scene.group(1).lower())
    claim = parse_claim(text)
    if claim is not None:
        return Sentence(text, start, end, "claim", claim=claim)
    return Sentence(text, start, end, "unparsed")


def parse_response(text: str) -> ParsedResponse:
    sentences = tuple(parse_sentence(m.group(0).rstrip(), m.start()) for m in _SENTENCE_RE.finditer(text))
    return ParsedResponse(text, sentences)
