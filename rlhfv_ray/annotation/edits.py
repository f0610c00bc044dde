"""An annotator's corrections as edits of an answer's words, and what they make of it.

The page shows the answer split on whitespace; an edit replaces the words [start, end) with the
annotator's text (empty: deleted) and carries its hallucination type. The server, not the page,
applies the edits, so the corrected answer that is stored is the one the diff showed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

TYPES = ("object", "attribute", "number", "position", "action", "other")
HallucinationType = Literal["object", "attribute", "number", "position", "action", "other"]


class EditError(ValueError):
    """Edits that cannot apply to the answer (out of range, overlapping, nothing changed)."""


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0)  # first word replaced
    end: int = Field(ge=0)  # one past the last word replaced; == start inserts before word `start`
    text: str = Field("", max_length=2000)  # the correction; "" deletes the words
    type: HallucinationType


def words(answer: str) -> list[str]:
    return answer.split()


def check_edits(answer: str, edits: Sequence[Edit]) -> list[Edit]:
    """The edits sorted by position; EditError when one is out of range, overlaps another, or
    changes nothing."""
    n = len(words(answer))
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    for edit in ordered:
        if edit.end < edit.start or edit.end > n:
            raise EditError(f"edit [{edit.start}, {edit.end}) is outside the answer's {n} words")
        if edit.start == edit.end and not edit.text.strip():
            raise EditError(f"edit at word {edit.start} neither replaces nor inserts anything")
    for before, after in zip(ordered, ordered[1:]):
        if after.start < before.end or (after.start == before.end == after.end == before.start):
            raise EditError(f"edits [{before.start}, {before.end}) and [{after.start}, {after.end}) overlap")
    return ordered


def apply_edits(answer: str, edits: Sequence[Edit]) -> str:
    """The corrected answer: the answer's words with each edit's span replaced, single-spaced."""
    tokens, out, position = words(answer), [], 0
    for edit in check_edits(answer, edits):
        out += tokens[position:edit.start]
        out += words(edit.text)
        position = edit.end
    return " ".join(out + tokens[position:])


@dataclass(frozen=True)
class DiffPart:
    kind: Literal["same", "removed", "added"]
    text: str


def diff(answer: str, edits: Sequence[Edit]) -> list[DiffPart]:
    """What the edits change, in reading order: kept words, removed words, added words."""
    tokens, parts, position = words(answer), [], 0

    def add(kind: str, text: str) -> None:
        if text:
            parts.append(DiffPart(kind, text))

    for edit in check_edits(answer, edits):
        add("same", " ".join(tokens[position:edit.start]))
        add("removed", " ".join(tokens[edit.start:edit.end]))
        add("added", " ".join(words(edit.text)))
        position = edit.end
    add("same", " ".join(tokens[position:]))
    return parts


def edits_between(answer: str, corrected: str, type_of=lambda removed, added: "other") -> list[Edit]:
    """The word edits that turn `answer` into `corrected` (difflib's opcodes), each typed by
    `type_of(removed words, added words)`: how a program, such as a test's oracle, corrects with
    the page's own edits."""
    from difflib import SequenceMatcher

    before, after = words(answer), words(corrected)
    return [Edit(start=i1, end=i2, text=" ".join(after[j1:j2]), type=type_of(before[i1:i2], after[j1:j2]))
            for tag, i1, i2, j1, j2 in SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes()
            if tag != "equal"]
