"""Fault tolerance of DDPO training: a Ray Train worker process is killed mid-run; Ray Train restarts
the worker group, which resumes from the last checkpoint (optimizer state and data position) and
finishes the configured steps; the model ends where an uninterrupted run of the same seed ends."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import threading
import time

import psutil
import pyarrow.parquet as pq
import pytest
import torch
from factories import DDPO_STEPS, ddpo_config, metrics

from rlhfv_ray.model.pair_forward import pair_batch, pair_token_logps
from rlhfv_ray.data.shards import shard_files
from rlhfv_ray.model.io import load_model_and_processor
from rlhfv_ray.training.train_ddpo import run_train

pytestmark = [pytest.mark.ray, pytest.mark.slow]

STEPS = DDPO_STEPS  # the steps of the uninterrupted run it is compared with
KILL_AFTER_STEP = 3  # past the step-2 checkpoint, before the step-4 one: steps 3.. are redone


def train_worker_processes() -> list[psutil.Process]:
    """Ray Train worker processes of this test session: descendants of this process (the session's
    Ray runs as its child), titled after the worker actor class by Ray."""
    return [p for p in psutil.Process(os.getpid()).children(recursive=True)
            if "RayTrainWorker" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def kill_a_worker_after(metrics_path, step: int, killed: list, timeout: float = 300) -> None:
    """SIGKILL one training worker once rank 0 has logged `step` (as a lost node or an OOM would)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        logged = metrics_path.read_text().splitlines() if metrics_path.exists() else []
        workers = train_worker_processes()
        if len(logged) >= step and workers:
            victim = workers[-1]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)
            return
        time.sleep(0.2)


def chosen_minus_rejected(model_dir, shards) -> torch.Tensor:
    """Per pair, the policy's summed log-prob of chosen minus rejected: what DDPO moves."""
    model, processor = load_model_and_processor(str(model_dir))
    model.eval()
    rows = pq.read_table(shard_files(shards)).to_pydict()
    with torch.no_grad():
        policy, chosen_mask, rejected_mask = pair_token_logps(model, pair_batch(rows, processor))
    return (policy.chosen * chosen_mask).sum(1) - (policy.rejected * rejected_mask).sum(1)


def test_killed_worker_resumes_from_checkpoint_and_matches_an_uninterrupted_run(tiny_shards, tiny_model_dir,
                                                                                ddpo_two_workers, tmp_path):
    interrupted_config = ddpo_config(tiny_model_dir, tiny_shards, tmp_path, "ddpo-killed", steps=STEPS)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_worker_after,
                              args=(tmp_path / "ddpo-killed" / "metrics.jsonl", KILL_AFTER_STEP, killed), daemon=True)
    killer.start()
    run_train(interrupted_config)
    interrupted = Path(interrupted_config.out)
    killer.join(timeout=5)
    assert killed, "no training worker was found to kill"

    # Rank 0 logged steps 1..k, then the restarted group resumed after a checkpoint c < k (one
    # every 2 steps) and logged c+1..STEPS: the steps between c and k were trained twice.
    steps = [r["step"] for r in metrics(interrupted)]
    restart = next((i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]), None)
    assert restart is not None, f"no restart in the logged steps {steps}"
    before, after = steps[:restart], steps[restart:]
    assert before == list(range(1, len(before) + 1)) and len(before) >= KILL_AFTER_STEP, steps
    assert (after[0] - 1) % interrupted_config.checkpoint.every_steps == 0, steps
    assert after == list(range(after[0], STEPS + 1)), steps

    uninterrupted = Path(ddpo_two_workers[0].out)  # the same config, trained without a kill
    start = chosen_minus_rejected(tiny_model_dir, tiny_shards)
    moved_whole = chosen_minus_rejected(uninterrupted, tiny_shards) - start
    moved_killed = chosen_minus_rejected(interrupted, tiny_shards) - start
    # Both runs moved the preference margins the same way and by about as much; not bit for bit:
    # after the restart Ray Data may split the rows across the new workers differently.
    assert moved_whole.mean() > 0 and moved_killed.mean() > 0
    assert (moved_killed - moved_whole).abs().mean() <= 0.25 * moved_whole.abs().mean()
