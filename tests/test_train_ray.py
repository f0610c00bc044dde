"""DDPO through the real stack: shards -> Ray Train (2 workers, DeepSpeed ZeRO-2, gloo) -> save_pretrained."""

from pathlib import Path

import pytest
from factories import DDPO_STEPS, ddpo_config, metrics
from transformers import AutoModelForImageTextToText

from rlhfv_ray.config import RESOLVED_CONFIG_NAME

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_ddpo_trains_on_two_workers_and_exports(ddpo_two_workers):
    config, result, mlruns = ddpo_two_workers
    out = Path(config.out)
    records = metrics(out)
    assert [r["step"] for r in records] == list(range(1, DDPO_STEPS + 1))
    for key in ("loss", "reward_accuracy", "chosen_reward", "rejected_reward", "reward_margin",
                "corrected_token_share", "tokens_per_s"):
        assert key in records[-1]
    # the policy starts at the reference: rewards are 0 and the loss is log 2 at step 1
    assert records[0]["loss"] == pytest.approx(0.6931, abs=2e-3)
    assert records[-1]["reward_margin"] > 0 and records[-1]["loss"] < records[0]["loss"]
    assert 0 < records[-1]["corrected_token_share"] < 0.2
    AutoModelForImageTextToText.from_pretrained(out)
    assert (out / RESOLVED_CONFIG_NAME).exists()
    losses = [(r["step"], pytest.approx(r["loss"])) for r in records]
    # Ray Train's Result has the loss curve, every logged step (checkpoints only every 2), and the
    # metrics of the last report, the final checkpoint's
    frame = result.metrics_dataframe
    assert list(zip(frame["step"], frame["loss"])) == losses
    assert result.metrics["done"] and result.metrics["step"] == DDPO_STEPS
    assert result.metrics["loss"] == pytest.approx(records[-1]["loss"])
    assert_tracked(mlruns, out / "tensorboard", losses)


def assert_tracked(mlruns, tensorboard_dir, losses):
    """The MLflow run and the TensorBoard events, read back with the libraries' own readers."""
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlhfv_ray.training.tracking import mlflow_uri

    client = MlflowClient(mlflow_uri(str(mlruns)))
    [run] = client.search_runs([client.get_experiment_by_name("rlhfv").experiment_id])
    assert run.info.run_name == "ddpo-2w" and run.info.status == "FINISHED"
    assert run.data.params["ddpo.gamma"] == "5.0" and run.data.params["optim.max_steps"] == str(DDPO_STEPS)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == losses
    events = EventAccumulator(str(tensorboard_dir))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("ddpo/loss")] == [(s, pytest.approx(v.expected, rel=1e-6))
                                                                       for s, v in losses]


def test_max_pairs_keeps_the_first_pairs_in_shard_file_order(tiny_shards, tiny_model_dir, tmp_path):
    import pyarrow.parquet as pq

    from rlhfv_ray.data.shards import shard_files
    from rlhfv_ray.training.train_ddpo import load_shard_dataset

    in_file_order = [i for f in shard_files(tiny_shards) for i in pq.read_table(f, columns=["idx"])["idx"].to_pylist()]
    for _ in range(2):  # the same pairs on every call, not the first read task to finish
        subset = load_shard_dataset(str(tiny_shards), str(tiny_model_dir), max_pairs=11)
        assert [r["idx"] for r in subset.take_all()] == in_file_order[:11]
    assert load_shard_dataset(str(tiny_shards), str(tiny_model_dir), max_pairs=100).count() == 16
    with pytest.raises(ValueError):
        ddpo_config(tiny_model_dir, tiny_shards, tmp_path, "none", max_pairs=0)
