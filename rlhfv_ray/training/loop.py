"""The per-worker training loop shared by SFT and DDPO: the thin Ray layer around a pure loss.

Each Ray Train worker: builds a DeepSpeed engine, restores the latest checkpoint if Ray Train hands
one over (a restarted worker group, or a rerun of the same run name), streams its split of the
"train" dataset in micro batches (`epoch_batches`: shuffled, or grouped by length), and every
`checkpoint.every_steps` optimizer steps saves its DeepSpeed shard and reports it through
`ray.train.report` (Ray merges the shards of all workers into one checkpoint directory). The last
report carries the `save_pretrained` model. Every `log_every` steps the metrics, averaged over
ranks, go to rank 0's sinks (`tracking.py`).

The data position survives restarts: the checkpoint records the epoch and the number of micro
batches consumed in it; a resumed worker skips that many batches of the (seeded) epoch order.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.training.memory import worker_memory
from rlhfv_ray.training.tracking import MetricsWriter
from rlhfv_ray.training.engine import export_pretrained, initialize_engine, load_engine_checkpoint, save_engine_checkpoint

MODEL_SUBDIR = "model"
TRAIN_STATE_FILE = "train_state.json"

# loss_fn(model, batch) -> (scalar loss, {metric name: float}); pure math lives in the loss modules.
LossFn = Callable[[torch.nn.Module, dict], tuple[torch.Tensor, dict[str, float]]]
CollateFn = Callable[[dict], dict]


@dataclass
class LoopParts:
    """What differs between jobs: the loss, how rows become a batch, and how to count work."""

    name: str
    loss_fn: LossFn
    collate_fn: CollateFn
    # each row's padded length in a batch, from a batch of rows (numpy columns): group_by_length's key
    row_lengths: Callable[[dict], np.ndarray]
    shuffle_buffer: int = 256
    # tokens the model processes in a batch (for tokens/s); None: not reported
    count_tokens: Callable[[dict], int] | None = None


def length_grouped(lengths: np.ndarray, micro_batch_size: int, seed: int) -> list[np.ndarray]:
    """Row indices of a window's micro batches, each of rows of about the same length: the rows
    sorted by length (longest first, ties in stream order), cut into micro batches (a last partial
    one dropped), taken in a random order of `seed`."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = [order[i:i + micro_batch_size] for i in range(0, len(order) - micro_batch_size + 1, micro_batch_size)]
    return [batches[i] for i in np.random.default_rng(seed).permutation(len(batches))]


def epoch_batches(shard, section: TrainSection, parts: LoopParts, epoch: int, prefetch: int = 1):
    """One epoch of collated micro batches from this worker's split, the same on every run of the
    same seed (resume skips into it): as the local shuffle draws them, or grouped by length.
    `prefetch`: batches Ray Data reads and collates ahead in a thread (0: in this one)."""
    micro, seed = section.optim.micro_batch_size, section.seed + epoch
    shuffle = {"local_shuffle_buffer_size": parts.shuffle_buffer, "local_shuffle_seed": seed,
               "prefetch_batches": prefetch}
    if section.group_by_length is None:
        yield from shard.iter_torch_batches(batch_size=micro, collate_fn=parts.collate_fn, drop_last=True, **shuffle)
        return
    # whole windows hold a multiple of micro batches, so the count per epoch is that of drop_last
    windows = shard.iter_batches(batch_size=micro * section.group_by_length.window, batch_format="numpy", **shuffle)
    for number, rows in enumerate(windows):
        for indices in length_grouped(parts.row_lengths(rows), micro, seed=seed * 100_003 + number):
            yield parts.collate_fn({key: column[indices] for key, column in rows.items()})


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro_in_epoch: int = 0  # micro batches of `epoch` already consumed


def _mean_across_ranks(values: dict[str, float], device) -> dict[str, float]:
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    tensor /= torch.distributed.get_world_size()
    return dict(zip(keys, tensor.tolist()))


def _restore(engine) -> TrainState:
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return TrainState()
    with checkpoint.as_directory() as directory:
        client = load_engine_checkpoint(engine, directory)
    return TrainState(**client["train_state"])


def _report(engine, state: TrainState, metrics: dict, processor=None) -> None:
    """Collective: every rank saves its shard (and rank 0 the HF model when `processor` is given)
    and reports it to Ray Train with `metrics`. Only checkpoints are reported (`tracking.py`)."""
    import ray.train

    with tempfile.TemporaryDirectory() as tmp:
        save_engine_checkpoint(engine, tmp, {"train_state": state.__dict__})
        if processor is not None:
            export_pretrained(engine, processor, Path(tmp) / MODEL_SUBDIR)
        if engine.global_rank == 0:
            (Path(tmp) / TRAIN_STATE_FILE).write_text(json.dumps(state.__dict__))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def run_training(section: TrainSection, model: torch.nn.Module, processor, parts: LoopParts,
                 out: str | None) -> None:
    """Train `model` for `section.optim.max_steps` optimizer steps inside a Ray Train worker."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    # On CPU the collate (image decoding, the processor) would run beside the model on the same
    # cores, and a parallel op waits for whichever of its threads the collate thread preempts: it
    # runs between steps instead. A GPU worker collates ahead while the GPU computes.
    prefetch = 1
    if device.type == "cpu":
        torch.set_num_threads(section.scaling.cpus_per_worker)
        prefetch = 0
    torch.manual_seed(section.seed + rank)
    engine = initialize_engine(model.to(device), section)
    state = _restore(engine)
    shard = ray.train.get_dataset_shard("train")
    writer = MetricsWriter(out, section.tracking, context.get_experiment_name(), section.model_dump(mode="json"),
                           parts.name, section.optim.max_steps, state.step, enabled=rank == 0)
    window: dict[str, list[float]] = {}
    window_started, window_examples, window_tokens = time.perf_counter(), 0, 0
    record: dict | None = None
    engine.train()
    while state.step < section.optim.max_steps:
        batches_in_epoch = 0
        for index, batch in enumerate(epoch_batches(shard, section, parts, state.epoch, prefetch)):
            batches_in_epoch += 1
            if index < state.micro_in_epoch:
                continue  # resumed: these batches were trained on before the restart
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            loss, metrics = parts.loss_fn(engine, batch)
            engine.backward(loss)
            boundary = engine.is_gradient_accumulation_boundary()
            engine.step()
            state.micro_in_epoch += 1
            window_examples += section.optim.micro_batch_size
            if parts.count_tokens is not None:
                window_tokens += parts.count_tokens(batch)
            for key, value in {"loss": loss.item(), **metrics}.items():
                window.setdefault(key, []).append(float(value))
            if not boundary:
                continue
            state.step += 1
            logged = state.step % section.log_every == 0 or state.step == section.optim.max_steps
            if logged:
                elapsed = time.perf_counter() - window_started
                means = {k: sum(v) / len(v) for k, v in window.items()}
                record = _mean_across_ranks({**means, **worker_memory(engine)}, device)
                record.update(step=state.step, lr=engine.get_lr()[0],
                              examples_per_s=window_examples * context.get_world_size() / max(elapsed, 1e-9))
                if parts.count_tokens is not None:  # this rank's tokens, scaled like examples
                    record["tokens_per_s"] = window_tokens * context.get_world_size() / max(elapsed, 1e-9)
                writer.write(record)
                window, window_started, window_examples, window_tokens = {}, time.perf_counter(), 0, 0
            if state.step >= section.optim.max_steps:
                break  # the last report, below, carries the last record
            if state.step % section.checkpoint.every_steps == 0:
                _report(engine, state, record if logged else {"step": state.step})
        else:
            state.epoch += 1
            state.micro_in_epoch = 0
            if batches_in_epoch == 0:
                raise RuntimeError("the training dataset yielded no full micro batch: it is smaller than "
                                   f"micro_batch_size x workers ({section.optim.micro_batch_size})")
    writer.close()
    _report(engine, state, {**(record or {}), "step": state.step, "done": True}, processor=processor)
