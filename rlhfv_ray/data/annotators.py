"""Who corrects a model's answers. An annotator is a plug-in (`rlhfv_ray.plugins.ANNOTATORS`): a
typed config with `annotate(rows) -> list[Annotation]`, one per row, where a row holds `id`, `image`
(bytes), `question`, `answer` and the prompt set's `meta` (JSON text, may be empty).

`export` (here) corrects nothing: every answer is written out awaiting a human's correction, and
`rlhfv merge-corrections` brings the corrections back. The scene world's `scene-oracle` corrects
against the scene's ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from rlhfv_ray.config import StrictModel


@dataclass(frozen=True)
class Annotation:
    chosen: str | None  # the corrected answer; == the answer when it was right; None: awaiting a human
    types: tuple[str, ...] = ()  # hallucination types corrected (object, attribute, ...), where known
    segments: int = 0  # corrected segments
    info: dict = field(default_factory=dict)  # anything else the annotator reports, kept in the stats


class Annotator(Protocol):
    def annotate(self, rows: Sequence[dict]) -> list[Annotation]: ...


class ExportForCorrection(StrictModel):
    """Every answer awaits a human correction (RLHF-V parquet with `chosen` empty)."""

    def annotate(self, rows: Sequence[dict]) -> list[Annotation]:
        return [Annotation(chosen=None) for _ in rows]
