"""`rlhfv build-shards`: raw correction records -> segment-aligned preference shards, on Ray Data.

    read (parquet / JSON Lines, any filesystem pyarrow reads: local, s3://, ...)
      -> prepare: validate, tokenize, align segments   (every input row yields one output row:
                                                         a shard row, or a reject with a reason)
      -> reference log-probs per answer token          (actor pool running the frozen model)
      -> parquet shards + rejects.parquet + manifest.json

Nothing is dropped silently: `read = sharded + rejected` holds by construction and is checked.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd
import torch
from pydantic import Field

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.align import align_segments
from rlhfv_ray.data.records import validate_row
from rlhfv_ray.data.sources import OK, Paths, RowError, account, expand_paths, parse_raw, read_rows, reject
from rlhfv_ray.data.shards import MANIFEST_NAME, REJECTS_NAME, SCHEMA_VERSION, SHARDS_SUBDIR
from rlhfv_ray.images import DEFAULT_MAX_PIXELS
from rlhfv_ray.logs import configure_logging
from rlhfv_ray.model.encoding import TemplateError, encode_answers, encode_prompts
from rlhfv_ray.model.families import describe_pair_forward
from rlhfv_ray.model.compute import ComputeSettings, load_for_inference
from rlhfv_ray.model.io import cached_processor, fingerprint
from rlhfv_ray.model.pair_forward import answer_values, pair_batch, pair_token_logps
from rlhfv_ray.ray_runtime import RayConfig

log = logging.getLogger(__name__)

SHARD_COLUMNS = ["idx", "image", "question", "chosen", "rejected", "prompt_ids", "chosen_ids", "rejected_ids",
                 "chosen_corrected", "rejected_corrected", "n_segments"]


class ShardSection(StrictModel):
    rows_per_shard: int = Field(256, gt=0)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    max_answer_tokens: int = Field(192, gt=0)
    min_match: int = Field(3, ge=1)
    weight_insertions: bool = False  # also weight pure insertions/deletions (the reference code does not)
    reference_actors: int = Field(1, ge=1)
    reference_batch_size: int = Field(32, gt=0)
    compute: ComputeSettings = ComputeSettings()  # device, dtype and GPUs of each reference actor


class ShardConfig(ShardSection):
    input: Paths = Field(min_length=1)  # parquet / JSON / JSON Lines: a path, a glob, a list; local or URIs
    model: str  # the frozen reference model (the policy's initial checkpoint)
    out: str
    ray: RayConfig = RayConfig()


class PrepareRows:
    """Ray Data stage on tasks, which spread over the cluster's CPUs: validate, tokenize and align
    each row (one output row per input row). `processor_hash`: see `cached_processor`."""

    def __init__(self, model_path: str, processor_hash: str, max_pixels: int, max_answer_tokens: int,
                 min_match: int, weight_insertions: bool):
        self.model_path, self.processor_hash = model_path, processor_hash
        self.max_pixels, self.max_answer_tokens = max_pixels, max_answer_tokens
        self.min_match, self.weight_insertions = min_match, weight_insertions

    @property
    def processor(self):
        return cached_processor(self.model_path, self.processor_hash)

    def prepare(self, raw: dict) -> dict:
        idx = raw.get("idx")
        try:
            raw = parse_raw(raw)
            idx = raw.get("idx")
            if raw.get("text") is None and "question" in raw:
                raw["text"] = json.dumps({k: raw.get(k) for k in ("question", "chosen", "rejected")})
            row = validate_row(raw, self.max_pixels, raw.get("base_dir"))
            try:
                chosen_ids, rejected_ids = encode_answers(self.processor, [row.question] * 2,
                                                          [row.chosen, row.rejected])
            except TemplateError as error:
                raise RowError("template_mismatch", str(error)) from error
            longest = max(len(chosen_ids), len(rejected_ids))
            if longest > self.max_answer_tokens:
                raise RowError("too_long", f"answer has {longest} tokens; max_answer_tokens is {self.max_answer_tokens}")
            [prompt_ids] = encode_prompts(self.processor, [row.image], [row.question])
        except RowError as error:
            return {**reject(idx, error), "idx": -1 if idx is None else int(idx)}
        alignment = align_segments(rejected_ids, chosen_ids, self.min_match, self.weight_insertions)
        return {"status": OK, "message": "", "id": str(row.idx), "idx": row.idx, "image": row.image_png, "question": row.question,
                "chosen": row.chosen, "rejected": row.rejected, "prompt_ids": prompt_ids,
                "chosen_ids": chosen_ids, "rejected_ids": rejected_ids,
                "chosen_corrected": alignment.chosen_mask, "rejected_corrected": alignment.rejected_mask,
                "n_segments": alignment.n_replacements}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = [self.prepare(raw) for raw in batch.to_dict("records")]
        # rejects carry the shard columns empty: one schema for all (an empty batch included)
        return pd.DataFrame(out, columns=["status", "message", "id", *SHARD_COLUMNS])


class ReferenceLogps:
    """Ray Data stage on an actor pool: per-answer-token log-probs of the frozen reference model."""

    def __init__(self, model_path: str, compute: ComputeSettings):
        configure_logging()  # a Ray actor: its own process
        self.model, self.processor = load_for_inference(model_path, compute)
        log.info(describe_pair_forward(self.model))

    @torch.inference_mode()
    def __call__(self, batch: dict):
        tensors = {k: v.to(self.model.device) for k, v in pair_batch(batch, self.processor).items()}
        logps, chosen_mask, rejected_mask = pair_token_logps(self.model, tensors)
        batch["ref_chosen_logps"] = answer_values(logps.chosen, chosen_mask)
        batch["ref_rejected_logps"] = answer_values(logps.rejected, rejected_mask)
        # the shard table is built here, not in a task after the pool: actors holding every CPU
        # would leave no CPU for that task (reference_actors = cluster CPUs hung)
        return _plain_list_columns(batch)


# per-token columns: Ray stores equal-length rows as its own tensor extension type, which other
# parquet readers (pandas, pyarrow, Spark) cannot iterate; shards keep plain list columns
LIST_COLUMNS = {"prompt_ids": "int32", "chosen_ids": "int32", "rejected_ids": "int32",
                "chosen_corrected": "bool", "rejected_corrected": "bool",
                "ref_chosen_logps": "float32", "ref_rejected_logps": "float32"}


def _plain_list_columns(batch: dict):
    """A numpy batch (Ray has turned its tensor columns into arrays per row) as a pyarrow table with
    plain list columns."""
    import numpy as np
    import pyarrow as pa

    columns = {}
    for name, values in batch.items():
        if name in LIST_COLUMNS:
            dtype = LIST_COLUMNS[name]
            columns[name] = pa.array([np.asarray(row, dtype=dtype).tolist() for row in values],
                                     type=pa.list_(pa.from_numpy_dtype(np.dtype(dtype))))
        else:
            columns[name] = pa.array(list(values))
    return pa.table(columns)


def build_shards(config: ShardConfig) -> dict:
    """Run the pipeline; returns the summary that is also written into the manifest."""
    import ray.data

    from rlhfv_ray.ray_runtime import init_ray

    expand_paths(config.input)  # a missing input is said before Ray starts
    init_ray(config.ray)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out)
    model_fingerprint = fingerprint(config.model)
    prepare = PrepareRows(config.model, model_fingerprint["tokenizer"], config.max_pixels, config.max_answer_tokens,
                          config.min_match, config.weight_insertions)
    prepared = read_rows(config.input, ["image", "text", "idx"]).map_batches(
        prepare, batch_size=64, batch_format="pandas").materialize()
    counts = account(prepared, out, REJECTS_NAME)
    good = prepared.filter(lambda r: r["status"] == OK).select_columns(SHARD_COLUMNS)
    sharded = counts["used"]
    if sharded:
        # A block per reference batch, so every actor of the pool has input (a block feeds one
        # actor). Materialized before the pool starts, for the same reason as in ReferenceLogps.
        blocks = max(config.reference_actors, math.ceil(sharded / config.reference_batch_size))
        good = good.repartition(blocks).materialize()
        with_reference = good.map_batches(
            ReferenceLogps, fn_constructor_kwargs={"model_path": config.model, "compute": config.compute},
            batch_size=config.reference_batch_size, compute=ray.data.ActorPoolStrategy(size=config.reference_actors),
            num_gpus=config.compute.num_gpus,
            batch_format="numpy")
        shards_dir = out / SHARDS_SUBDIR
        with_reference.repartition(max(1, math.ceil(sharded / config.rows_per_shard))).write_parquet(str(shards_dir))
    summary = {
        "schema_version": SCHEMA_VERSION,
        "read": counts["read"],
        "sharded": sharded,
        "rejected": counts["rejected"],
        "rejects_by_reason": counts["rejects_by_reason"],
        "rows_per_shard": config.rows_per_shard,
        "fingerprint": model_fingerprint,
        "min_match": config.min_match,
        "weight_insertions": config.weight_insertions,
        "input": config.input,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(summary, indent=2))
    log.info(f"build-shards: read {counts['read']}, sharded {sharded}, rejected {counts['rejected']} "
          f"{counts['rejects_by_reason']}")
    return summary
