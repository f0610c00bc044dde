"""Where a training run's metrics go: rank 0 writes every logged record to `metrics.jsonl`, a log
line with progress, and, when the config turns them on, MLflow and TensorBoard; every rank passes
the record to `ray.train.report`, and the driver keeps what was reported for `Result.metrics_dataframe`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rlhfv_ray.config import StrictModel
from rlhfv_ray.stages import minutes

logger = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"
SHOWN = ("loss", "reward_accuracy", "examples_per_s")  # the metrics of the progress line


class TrackingSettings(StrictModel):
    """Experiment trackers rank 0 logs to, beside metrics.jsonl (each off by default)."""

    mlflow: bool = False
    # a local directory (an SQLite store, mlflow.db, is made inside it) or any MLflow tracking URI
    mlflow_tracking_uri: str = "mlruns"
    mlflow_experiment: str = "rlhfv"
    tensorboard: bool = False
    tensorboard_dir: str | None = None  # default: OUT/tensorboard


def mlflow_uri(value: str) -> str:
    """A tracking URI as is; a local directory as the SQLite store inside it (MLflow 3 no longer
    writes its file store)."""
    if "://" in value or value.startswith("databricks"):
        return value
    directory = Path(value).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'mlflow.db'}"


def flat_params(values: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"optim.lr": "5e-05", ...}, as MLflow params (strings, 6000 chars at most)."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value)[:6000]
    return out


class MetricsWriter:
    """Rank 0's sinks for the logged records (the other ranks get a writer that does nothing)."""

    def __init__(self, out: str | None, tracking: TrackingSettings, run_name: str, params: dict,
                 desc: str, total_steps: int, initial_step: int, enabled: bool):
        self.enabled, self.desc, self.total_steps = enabled, desc, total_steps
        self.started, self.initial_step = time.perf_counter(), initial_step
        self.path = Path(out) / METRICS_FILE if out and enabled else None
        self.mlflow = self.tensorboard = None
        if not enabled:
            return
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if tracking.mlflow:
            import mlflow

            mlflow.set_tracking_uri(mlflow_uri(tracking.mlflow_tracking_uri))
            mlflow.set_experiment(tracking.mlflow_experiment)
            self.mlflow = mlflow.start_run(run_name=run_name)
            mlflow.log_params(flat_params(params))
        if tracking.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(tracking.tensorboard_dir or str(Path(out or ".") / "tensorboard"))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        step = int(record["step"])
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        scalars = {k: float(v) for k, v in record.items() if k != "step" and isinstance(v, (int, float))}
        if self.mlflow is not None:
            import mlflow

            mlflow.log_metrics(scalars, step=step)
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(f"{self.desc}/{key}", value, step)
        logger.info(self.progress_line(record))

    def progress_line(self, record: dict) -> str:
        step = int(record["step"])
        elapsed = time.perf_counter() - self.started
        done = step - self.initial_step
        left = elapsed / done * (self.total_steps - step) if done > 0 else 0.0
        shown = " ".join(f"{k}={record[k]:.4g}" for k in SHOWN if k in record)
        return (f"{self.desc} step {step}/{self.total_steps} {shown}; elapsed {minutes(elapsed)}, "
                f"about {minutes(left)} left")

    def close(self) -> None:
        if self.mlflow is not None:
            import mlflow

            mlflow.end_run()
        if self.tensorboard is not None:
            self.tensorboard.close()


def reported_metrics_callback():
    """A Ray Train callback that keeps rank 0's metrics of every `ray.train.report`: Ray Train's
    `Result.metrics_dataframe` holds only those attached to the checkpoints it kept. The callback
    runs in the Train controller, so the rows go to a small actor the driver reads after `fit`."""
    import ray
    from ray.train import UserCallback

    @ray.remote(num_cpus=0)
    class History:
        def __init__(self):
            self.rows: list[dict] = []

        def add(self, row: dict) -> None:
            self.rows.append(row)

        def get(self) -> list[dict]:
            return self.rows

    class ReportedMetrics(UserCallback):
        def __init__(self):
            self.history = History.remote()

        def after_report(self, run_context, metrics, checkpoint):
            if metrics and metrics[0]:
                self.history.add.remote(dict(metrics[0]))

        def dataframe(self):
            import pandas as pd

            rows = ray.get(self.history.get.remote())
            ray.kill(self.history)
            return pd.DataFrame(rows)

    return ReportedMetrics()
