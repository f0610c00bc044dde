"""Where a training run's metrics go: rank 0 writes every logged record to `metrics.jsonl`, a log
line with progress, the driver's history (`Result.metrics_dataframe`) and, when the config turns
them on, MLflow and TensorBoard.

Logged records do not go through `ray.train.report`, only checkpoints do: a report waits until the
Train controller has taken the previous one, which it polls for every 2 s
(RAY_TRAIN_HEALTH_CHECK_INTERVAL_S), so reporting more often than that stalls every worker.
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
        self.mlflow = self.tensorboard = self.history = None
        if not enabled:
            return
        self.history = history_sink(run_name)
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
        if self.history is not None:
            self.history.add.remote(record)  # not waited for
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


def _history_name(run_name: str) -> str:
    """One history per driver (job) and run: workers of the same job find it by this name."""
    import ray

    return f"rlhfv-metrics-{ray.get_runtime_context().get_job_id()}-{run_name}"


class MetricsHistory:
    """The driver's copy of rank 0's logged records, for `Result.metrics_dataframe`: an actor that
    rank 0's writer appends to without waiting (`history_sink`), read by the driver after `fit`."""

    def __init__(self, run_name: str):
        import ray

        @ray.remote(num_cpus=0)
        class Rows:
            def __init__(self):
                self.rows: list[dict] = []

            def add(self, row: dict) -> None:
                self.rows.append(row)

            def get(self) -> list[dict]:
                return self.rows

        self.actor = Rows.options(name=_history_name(run_name)).remote()

    def dataframe(self):
        """The records as a DataFrame; the actor is gone after this."""
        import pandas as pd
        import ray

        rows = ray.get(self.actor.get.remote())
        ray.kill(self.actor)
        return pd.DataFrame(rows)


def history_sink(run_name: str):
    """Rank 0's handle on the driver's `MetricsHistory`; None outside a run started by one."""
    import ray

    try:
        return ray.get_actor(_history_name(run_name))
    except ValueError:
        logger.warning(f"no metrics history for run {run_name}: Result.metrics_dataframe will be empty")
        return None
