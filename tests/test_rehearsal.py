"""Rehearsal of SFT-corpus VQA during DDPO: which scenes a micro batch draws, and the loss it adds."""

import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError

from rlhfv_ray.data.shards import shard_files
from rlhfv_ray.training.ddpo import DDPOParams
from rlhfv_ray.training.rehearsal import PREFIX, RehearsalConfig, rehearsal_conversations, rehearsal_nll
from rlhfv_ray.training.train_ddpo import DDPOConfig, make_ddpo_loss, make_pair_collate
from rlhfv_ray.world.grammar import normalize_answer


def test_the_draw_is_a_function_of_the_pair_ids_and_the_seed():
    config = RehearsalConfig(weight=1.0)
    first = rehearsal_conversations([3, 1, 4], 0, config)[1]
    assert rehearsal_conversations([3, 1, 4], 0, config)[1] == first  # a resumed run draws the same
    assert rehearsal_conversations([3, 1, 5], 0, config)[1] != first
    assert rehearsal_conversations([3, 1, 4], 1, config)[1] != first
    assert len(first) == config.scenes_per_micro_batch


def test_only_the_configured_kinds_are_rehearsed_and_every_micro_batch_has_its_scenes():
    config = RehearsalConfig(weight=1.0, kinds=("existence",), scenes_per_micro_batch=8)
    for ids in ([0], [1], [2, 7]):
        images, conversations = rehearsal_conversations(ids, 0, config)
        assert len(images) == len(conversations) == 8  # scenes without an existence question are skipped
        for turns in conversations:
            assert turns and all(q.startswith("Is there a ") and a in ("yes", "no") for q, a in turns)


def test_rehearsed_answers_are_the_truth_about_the_scene():
    from rlhfv_ray.world.scene import sample_scene
    from rlhfv_ray.world.spec import split_seed

    config = RehearsalConfig(weight=1.0, kinds=("existence",), scenes=1, scenes_per_micro_batch=1)
    scene = sample_scene(split_seed("sft", 0), config.world)  # a pool of one scene: it is drawn
    _, [turns] = rehearsal_conversations([5], 0, config)
    for question, answer in turns:
        cls = question.removeprefix("Is there a ").removesuffix(" in the image?")
        assert normalize_answer(answer) == ("yes" if cls in scene.classes else "no")


def test_config_rejects_unknown_kinds_and_keys():
    with pytest.raises(ValidationError):
        RehearsalConfig(kinds=("shape",))
    with pytest.raises(ValidationError):
        DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o", "rehearsal": {"wieght": 1}})
    assert not DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o"}).rehearsal.enabled


def test_the_loss_adds_weight_times_the_rehearsal_nll(tiny_shards, tiny_model_dir):
    from rlhfv_ray.model.io import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir))
    model.eval()
    table = pq.read_table(shard_files(tiny_shards)[0]).slice(0, 2).to_pydict()
    rows = {k: list(v) for k, v in table.items()}
    config = RehearsalConfig(weight=0.5, scenes_per_micro_batch=2)
    batch = make_pair_collate(processor, config, seed=0)(rows)
    assert batch[PREFIX + "input_ids"].shape[0] == 2
    plain = make_pair_collate(processor)(rows)
    assert not any(k.startswith(PREFIX) for k in plain)
    with torch.no_grad():
        base_loss, base_metrics = make_ddpo_loss(DDPOParams())(model, plain)
        loss, metrics = make_ddpo_loss(DDPOParams(), rehearsal_weight=0.5)(model, batch)
        nll = rehearsal_nll(model, batch)
    assert nll.item() > 0 and metrics["rehearsal_nll"] == pytest.approx(nll.item())
    assert loss.item() == pytest.approx(base_loss.item() + 0.5 * nll.item(), rel=1e-5)
    assert "rehearsal_nll" not in base_metrics
