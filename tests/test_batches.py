"""How a training worker cuts its split into micro batches: shuffled, or grouped by length."""

import numpy as np
import pytest
from pydantic import ValidationError

from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.training.loop import LoopParts, epoch_batches, length_grouped
from rlhfv_ray.model.pair_forward import pair_widths


def test_length_grouped_sorts_a_window_and_drops_its_partial_batch():
    lengths = np.array([5, 1, 4, 2, 3, 6, 2])
    batches = length_grouped(lengths, micro_batch_size=2, seed=0)
    # sorted longest first, ties in stream order: 6(5) 5(0) 4(2) 3(4) 2(3) 2(6) | 1(1) dropped
    assert sorted(tuple(b) for b in batches) == [(2, 4), (3, 6), (5, 0)]
    # the order of the batches is the seed's, and the same for the same seed
    orders = {tuple(tuple(b) for b in length_grouped(lengths, 2, seed)) for seed in range(20)}
    assert len(orders) == 6  # every order of the 3 batches occurs
    assert [tuple(b) for b in length_grouped(lengths, 2, 7)] == [tuple(b) for b in length_grouped(lengths, 2, 7)]


def test_pair_widths_are_the_prompt_and_the_longer_answer():
    rows = {"prompt_ids": [[1, 2, 3], [1]], "chosen_ids": [[4], [5, 6, 7]], "rejected_ids": [[8, 9], [5]]}
    assert pair_widths(rows).tolist() == [5, 4]


def test_group_by_length_takes_a_window_of_at_least_two_batches():
    assert TrainSection.model_validate({"group_by_length": {}}).group_by_length.window == 16
    with pytest.raises(ValidationError):
        TrainSection.model_validate({"group_by_length": {"window": 1}})
    with pytest.raises(ValidationError):
        TrainSection.model_validate({"group_by_length": {"size": 4}})


def epoch_lengths(iterator, section: TrainSection, epoch: int) -> list[list[int]]:
    parts = LoopParts("test", loss_fn=None, collate_fn=lambda rows: rows["length"].tolist(),
                      row_lengths=lambda rows: rows["length"], shuffle_buffer=8)
    return list(epoch_batches(iterator, section, parts, epoch))


@pytest.mark.ray
def test_grouped_epochs_pad_less_and_keep_the_batch_count(ray_session):
    import ray.data

    rng = np.random.default_rng(0)
    rows = [{"idx": i, "length": int(n)} for i, n in enumerate(rng.integers(10, 200, size=203))]
    iterator = ray.data.from_items(rows, override_num_blocks=1).iterator()  # one block: one order
    plain = TrainSection.model_validate({"optim": {"micro_batch_size": 4, "global_batch_size": 4}})
    grouped = plain.model_copy(update={"group_by_length": TrainSection.model_validate(
        {"group_by_length": {"window": 8}}).group_by_length})

    shuffled, by_length = epoch_lengths(iterator, plain, 0), epoch_lengths(iterator, grouped, 0)
    assert len(shuffled) == len(by_length) == 203 // 4  # drop_last's count: ranks stay in step
    assert all(len(b) == 4 for b in by_length)
    padded = {name: sum(4 * max(b) for b in batches) for name, batches in
              (("shuffled", shuffled), ("by_length", by_length))}
    assert padded["by_length"] < 0.8 * padded["shuffled"]
    # the same seed and epoch give the same batches (a resumed worker skips into them); another
    # epoch gives others
    assert epoch_lengths(iterator, grouped, 0) == by_length
    assert epoch_lengths(iterator, grouped, 1) != by_length
