"""Segment alignment (pure): which answer tokens lie in corrected segments, recovered by diffing.

The public RLHF-V data stores no spans: the reference code diffs the token ids of the rejected
(original) answer against the chosen (corrected) one with `difflib.SequenceMatcher`, keeps matching
blocks of at least `min_match` tokens (shorter matches inside an edit are coincidences, e.g. a
shared "the", and are absorbed into it), and takes the gaps between kept blocks. A gap non-empty on
both sides is a replacement: its tokens are corrected on both sides. A gap empty on one side is a
pure insertion or deletion, which the reference code gives no extra weight; `weight_insertions`
marks those tokens too.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Segment:
    """A corrected segment: rejected[r_start:r_end] was replaced by chosen[c_start:c_end]."""

    r_start: int
    r_end: int
    c_start: int
    c_end: int

    @property
    def kind(self) -> str:
        if self.r_end > self.r_start and self.c_end > self.c_start:
            return "replace"
        return "delete" if self.r_end > self.r_start else "insert"


@dataclass(frozen=True)
class Alignment:
    rejected_mask: list[int]  # 1 where the rejected token lies in a weighted corrected segment
    chosen_mask: list[int]
    segments: tuple[Segment, ...]  # every gap between kept matching blocks, weighted or not

    @property
    def n_replacements(self) -> int:
        return sum(s.kind == "replace" for s in self.segments)


def align_segments(rejected: Sequence[int], chosen: Sequence[int], min_match: int = 3,
                   weight_insertions: bool = False) -> Alignment:
    """Corrected-token masks of `rejected` and `chosen` (token id sequences)."""
    if min_match < 1:
        raise ValueError("min_match must be >= 1")
    matcher = difflib.SequenceMatcher(None, list(rejected), list(chosen), autojunk=False)
    # The last matching block is the (len_a, len_b, 0) sentinel; keep it so the tail gap is seen.
    blocks = [b for b in matcher.get_matching_blocks() if b.size >= min_match or b.size == 0]
    rejected_mask, chosen_mask = [0] * len(rejected), [0] * len(chosen)
    segments = []
    r_pos = c_pos = 0
    for block in blocks:
        if block.a < r_pos or block.b < c_pos:
            continue  # cannot happen with SequenceMatcher's ordered blocks; guards the invariant
        if block.a > r_pos or block.b > c_pos:
            segment = Segment(r_pos, block.a, c_pos, block.b)
            segments.append(segment)
            if segment.kind == "replace" or weight_insertions:
                rejected_mask[segment.r_start:segment.r_end] = [1] * (segment.r_end - segment.r_start)
                chosen_mask[segment.c_start:segment.c_end] = [1] * (segment.c_end - segment.c_start)
        r_pos, c_pos = block.a + block.size, block.b + block.size
    return Alignment(rejected_mask, chosen_mask, tuple(segments))
