"""Driver side of the training jobs: connect to Ray, run a TorchTrainer, export its model."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Callable

from rlhfv_ray.ray_runtime import init_ray
from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.training.loop import MODEL_SUBDIR
from rlhfv_ray.training.tracking import METRICS_FILE, MetricsHistory

logger = logging.getLogger(__name__)


def start_run(config, out: str) -> Path:
    """What every training driver does first: the output dir with the resolved config, last run's
    metrics removed (rank 0 appends to them), and Ray connected."""
    from rlhfv_ray.config import save_resolved_config

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / METRICS_FILE).unlink(missing_ok=True)
    save_resolved_config(config, out_dir)
    init_ray(config.ray)
    return out_dir


def default_run_name(prefix: str, config: TrainSection) -> str:
    """`prefix-<hash of the config>`: rerunning the same config resumes its run, a changed config
    starts a new one. Ray settings do not change what is trained, so they are left out."""
    payload = config.model_dump_json(exclude={"ray", "run_name"})
    return f"{prefix}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def storage_uri(path: str) -> str:
    """Ray Train wants an absolute path or a URI (s3://, gs://, ...)."""
    return path if "://" in path else str(Path(path).resolve())


def worker_config(config: TrainSection) -> dict:
    """The config as the workers get it: local paths made absolute, since Ray Train workers run in
    their own working directory (rank 0 writes metrics under `out` and the trackers' directories;
    hub ids and URIs stay as they are)."""
    values = config.model_dump(mode="json")
    for field in ("model", "shards", "out"):
        path = values.get(field)
        if path and "://" not in path and (field == "out" or Path(path).exists()):
            values[field] = str(Path(path).resolve())
    tracking = values["tracking"]
    for switch, field in (("mlflow", "mlflow_tracking_uri"), ("tensorboard", "tensorboard_dir")):
        path = tracking[field]
        if tracking[switch] and path and "://" not in path and not path.startswith("databricks"):
            tracking[field] = str(Path(path).resolve())
    return values


def forget_run(storage: str, run_name: str) -> None:
    """Remove a run's checkpoints and Ray Train state from its storage (local or a URI), so a run
    of the same name starts over instead of resuming."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(storage_uri(storage))
    path = f"{root.rstrip('/')}/{run_name}"
    if filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        logger.info(f"starting {run_name} over: removing its earlier checkpoints under {storage}")
        filesystem.delete_dir(path)


def fit_and_export(worker_fn: Callable[[dict], None], config: TrainSection, datasets: dict, out: Path,
                   default_name: str, fresh: bool = False):
    """Run `worker_fn` on `config.scaling.num_workers` Ray Train workers; copy the final
    `save_pretrained` model (a LoRA run's adapter, and its merged model if asked) out of the last
    checkpoint into `out`. Returns the Ray Train Result, its `metrics_dataframe` holding every
    logged record (one per `log_every` steps; `tracking.MetricsHistory`). A run of the same name
    resumes from its last checkpoint, unless `fresh`."""
    import dataclasses

    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling = config.scaling
    resources = {"CPU": scaling.cpus_per_worker}
    if scaling.use_gpu:
        resources["GPU"] = 1
    run_name = getattr(config, "run_name", None) or default_run_name(default_name, config)
    if fresh:
        forget_run(config.checkpoint.storage_path, run_name)
    history = MetricsHistory(run_name)
    trainer = TorchTrainer(
        worker_fn,
        train_loop_config=worker_config(config),
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_uri(config.checkpoint.storage_path),
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
        ),
        datasets=datasets,
        dataset_config=DataConfig(datasets_to_split=["train"]),  # others (rehearsal) reach every worker whole
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
    )
    try:
        result = trainer.fit()
    finally:
        frame = history.dataframe()  # read (and the actor removed) whether or not the run failed
    result = dataclasses.replace(result, metrics_dataframe=frame)
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        model_dir = Path(directory) / MODEL_SUBDIR
        if not model_dir.is_dir():
            raise RuntimeError(f"the last checkpoint of {run_name} has no exported model")
        out.mkdir(parents=True, exist_ok=True)
        for item in model_dir.iterdir():
            shutil.copy2(item, out / item.name)
    if config.lora is not None and config.lora.merge:
        from rlhfv_ray.training.lora import write_merged

        write_merged(out)
    return result
