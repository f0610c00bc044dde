"""Rehearsal of SFT data during DDPO: which conversations a micro batch draws, and the loss it adds."""

import pyarrow.parquet as pq
import pytest
import torch
from pydantic import ValidationError

from rlhfv_ray.data.conversations import ConversationData, PrepareConversations
from rlhfv_ray.data.shards import shard_files
from rlhfv_ray.model.io import processor_hash
from rlhfv_ray.scene_world.data import conversation_row
from rlhfv_ray.scene_world.render import image_to_png_bytes, render_scene
from rlhfv_ray.scene_world.scene import sample_scene
from rlhfv_ray.training.ddpo import DDPOParams
from rlhfv_ray.training.rehearsal import PREFIX, RehearsalConfig, draw, rehearsal_batch, rehearsal_nll
from rlhfv_ray.training.train_ddpo import DDPOConfig, make_ddpo_loss, make_pair_collate


def test_the_draw_is_a_function_of_the_pair_ids_and_the_seed():
    first = draw([3, 1, 4], 0, 1000, 4)
    assert draw([3, 1, 4], 0, 1000, 4) == first  # a resumed run draws the same
    assert draw([3, 1, 5], 0, 1000, 4) != first
    assert draw([3, 1, 4], 1, 1000, 4) != first
    assert len(first) == 4 and all(0 <= i < 1000 for i in first)


def test_config_rejects_unknown_keys_and_rehearsal_without_data():
    with pytest.raises(ValidationError):
        DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o", "rehearsal": {"wieght": 1}})
    with pytest.raises(ValidationError, match="rehearsal.data"):
        DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o", "rehearsal": {"weight": 0.1}})
    config = DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o",
                                        "rehearsal": {"weight": 0.1, "data": "vqa.parquet"}})
    assert config.rehearsal.data == ["vqa.parquet"] and config.rehearsal.enabled
    assert not DDPOConfig.model_validate({"model": "m", "shards": "s", "out": "o"}).rehearsal.enabled


def _pool(tiny_model_dir, n: int) -> list[dict]:
    """Prepared rows (what the worker's pool holds) of `n` one-question conversations."""
    prepare = PrepareConversations(str(tiny_model_dir), processor_hash(tiny_model_dir),
                                   ConversationData(data=["unused"]))
    rows = []
    for i in range(n):
        png = image_to_png_bytes(render_scene(sample_scene(i)))
        rows.append(prepare.prepare(conversation_row(f"{i}:vqa", png, [("Is there a cup in the image?", "no")])))
    assert all(r["status"] == "ok" for r in rows)
    return rows


def test_the_loss_adds_weight_times_the_rehearsal_nll(tiny_shards, tiny_model_dir):
    from rlhfv_ray.model.io import load_model_and_processor

    model, processor = load_model_and_processor(str(tiny_model_dir))
    model.eval()
    table = pq.read_table(shard_files(tiny_shards)[0]).slice(0, 2).to_pydict()
    rows = {k: list(v) for k, v in table.items()}
    pool = _pool(tiny_model_dir, 3)
    batch = make_pair_collate(processor, pool, per_micro_batch=2, seed=0)(rows)
    assert batch[PREFIX + "input_ids"].shape[0] == 2
    drawn = [pool[i] for i in draw(rows["idx"], 0, len(pool), 2)]
    expected = rehearsal_batch(drawn, processor)
    assert torch.equal(batch[PREFIX + "input_ids"], expected[PREFIX + "input_ids"])
    plain = make_pair_collate(processor)(rows)
    assert not any(k.startswith(PREFIX) for k in plain)
    with torch.no_grad():
        base_loss, base_metrics = make_ddpo_loss(DDPOParams())(model, plain)
        loss, metrics = make_ddpo_loss(DDPOParams(), rehearsal_weight=0.5)(model, batch)
        nll = rehearsal_nll(model, batch)
    assert nll.item() > 0 and metrics["rehearsal_nll"] == pytest.approx(nll.item())
    assert loss.item() == pytest.approx(base_loss.item() + 0.5 * nll.item(), rel=1e-5)
    assert "rehearsal_nll" not in base_metrics


def test_rehearsal_config_is_the_sft_data_config():
    config = RehearsalConfig(weight=1.0, data="a/*.parquet", image_folder="imgs", max_tokens=64)
    assert config.conversation_data() == ConversationData(data=["a/*.parquet"], image_folder="imgs", max_tokens=64)
