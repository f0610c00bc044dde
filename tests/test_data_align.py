"""Segment alignment, table-style, with masks derived by hand from the diff rules."""

import pytest

from rlhfv_ray.data.align import align_segments

CASES = {
    # name: (rejected ids, chosen ids, rejected mask, chosen mask)
    "one word replaced": (
        [1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 9, 5, 6, 7],
        [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]),
    "two segments": (
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 2, 3, 40, 5, 6, 7, 80, 81, 9, 10, 11],
        [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0]),
    "segment at the start": (
        [9, 2, 3, 4], [8, 2, 3, 4],
        [1, 0, 0, 0], [1, 0, 0, 0]),
    "segment at the end, different lengths": (
        [1, 2, 3, 9], [1, 2, 3, 8, 8],
        [0, 0, 0, 1], [0, 0, 0, 1, 1]),
    "insertion only: no weight (reference code)": (
        [1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 4, 5, 6],
        [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0]),
    "deletion only: no weight": (
        [1, 2, 3, 7, 7, 4, 5, 6], [1, 2, 3, 4, 5, 6],
        [0] * 8, [0] * 6),
    "identical answers": (
        [1, 2, 3, 4], [1, 2, 3, 4],
        [0, 0, 0, 0], [0, 0, 0, 0]),
    "multi-token word replaced by one token": (
        [1, 2, 3, 50, 51, 4, 5, 6], [1, 2, 3, 60, 4, 5, 6],
        [0, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]),
    "short coincidental match absorbed into the edit": (
        [1, 2, 3, 20, 4, 21, 5, 6, 7], [1, 2, 3, 30, 4, 31, 5, 6, 7],
        [0, 0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 0, 0, 0]),
}


@pytest.mark.parametrize("name", CASES)
def test_alignment_cases(name):
    rejected, chosen, rejected_mask, chosen_mask = CASES[name]
    alignment = align_segments(rejected, chosen)
    assert alignment.rejected_mask == rejected_mask
    assert alignment.chosen_mask == chosen_mask


def test_weight_insertions_marks_pure_insertions_and_deletions():
    inserted = align_segments([1, 2, 3, 4, 5, 6], [1, 2, 3, 7, 4, 5, 6], weight_insertions=True)
    assert inserted.chosen_mask == [0, 0, 0, 1, 0, 0, 0] and inserted.rejected_mask == [0] * 6
    assert [s.kind for s in inserted.segments] == ["insert"]
    deleted = align_segments([1, 2, 3, 7, 7, 4, 5, 6], [1, 2, 3, 4, 5, 6], weight_insertions=True)
    assert deleted.rejected_mask == [0, 0, 0, 1, 1, 0, 0, 0] and deleted.chosen_mask == [0] * 6


def test_segment_counts():
    rejected, chosen, _, _ = CASES["two segments"]
    assert align_segments(rejected, chosen).n_replacements == 2
    assert align_segments([1, 2, 3], [1, 2, 3]).segments == ()


def test_min_match_one_keeps_every_match():
    rejected, chosen, _, _ = CASES["short coincidental match absorbed into the edit"]
    alignment = align_segments(rejected, chosen, min_match=1)
    assert alignment.rejected_mask == [0, 0, 0, 1, 0, 1, 0, 0, 0]
