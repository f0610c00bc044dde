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
import math
from collections import Counter
from pathlib import Path

import pandas as pd
import torch
from pydantic import Field

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.align import align_segments
from rlhfv_ray.data.records import RowError, validate_row
from rlhfv_ray.data.shards import MANIFEST_NAME, REJECTS_NAME, SCHEMA_VERSION, SHARDS_SUBDIR
from rlhfv_ray.images import DEFAULT_MAX_PIXELS, decode_image
from rlhfv_ray.model.encoding import encode_answers, encode_prompts
from rlhfv_ray.model.io import fingerprint, load_model_and_processor, load_processor
from rlhfv_ray.training.config import RayConfig

OK = "ok"
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


class ShardConfig(ShardSection):
    input: list[str] = Field(min_length=1)  # parquet or .jsonl files, directories, globs or URIs
    model: str  # the frozen reference model (the policy's initial checkpoint)
    out: str
    ray: RayConfig = RayConfig()


def _is_jsonl(path: str) -> bool:
    return path.endswith((".jsonl", ".json", ".jsonl.gz"))


def read_records(paths: list[str]):
    """A Ray Dataset of raw records with columns image, text, idx, base_dir (for relative paths).

    JSON Lines are read as text and parsed per row, so one malformed line becomes one reject
    instead of failing the whole file."""
    import ray.data

    parquet = [p for p in paths if not _is_jsonl(p)]
    jsonl = [p for p in paths if _is_jsonl(p)]
    parts = []
    if parquet:
        parts.append(ray.data.read_parquet(parquet, columns=["image", "text", "idx"]).map_batches(
            lambda df: df.assign(raw_line=None, base_dir=None), batch_format="pandas"))
    if jsonl:
        lines = ray.data.read_text(jsonl, include_paths=True).filter(lambda r: bool(r["text"].strip()))
        parts.append(lines.map(lambda r: {"image": None, "text": None, "idx": None, "raw_line": r["text"],
                                          "base_dir": str(Path(r["path"]).parent)}))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _reject(idx, reason: str, message: str) -> dict:
    return {"status": reason, "message": message, "idx": -1 if idx is None else int(idx)}


class PrepareRows:
    """Ray Data stage: validate, tokenize and align each row (one output row per input row)."""

    def __init__(self, model_path: str, max_pixels: int, max_answer_tokens: int, min_match: int,
                 weight_insertions: bool):
        self.processor = load_processor(model_path)
        self.max_pixels, self.max_answer_tokens = max_pixels, max_answer_tokens
        self.min_match, self.weight_insertions = min_match, weight_insertions

    def prepare(self, raw: dict) -> dict:
        idx = raw.get("idx")
        try:
            if raw.get("raw_line") is not None:
                try:
                    raw = {**json.loads(raw["raw_line"]), "base_dir": raw.get("base_dir")}
                except json.JSONDecodeError as error:
                    raise RowError("malformed_json_line", f"line is not JSON: {error}") from None
                if not isinstance(raw, dict):
                    raise RowError("malformed_json_line", "line is not a JSON object")
                idx = raw.get("idx")
                if raw.get("text") is None and "question" in raw:
                    raw["text"] = json.dumps({k: raw.get(k) for k in ("question", "chosen", "rejected")})
            row = validate_row(raw, self.max_pixels, raw.get("base_dir"))
            tokenizer = self.processor.tokenizer
            chosen_ids, rejected_ids = encode_answers(tokenizer, [row.chosen, row.rejected])
            longest = max(len(chosen_ids), len(rejected_ids))
            if longest > self.max_answer_tokens:
                raise RowError("too_long", f"answer has {longest} tokens; max_answer_tokens is {self.max_answer_tokens}")
            [prompt_ids] = encode_prompts(self.processor, [decode_image(row.image_png, self.max_pixels)], [row.question])
        except RowError as error:
            return _reject(idx, error.reason, str(error))
        alignment = align_segments(rejected_ids, chosen_ids, self.min_match, self.weight_insertions)
        return {"status": OK, "message": "", "idx": row.idx, "image": row.image_png, "question": row.question,
                "chosen": row.chosen, "rejected": row.rejected, "prompt_ids": prompt_ids,
                "chosen_ids": chosen_ids, "rejected_ids": rejected_ids,
                "chosen_corrected": alignment.chosen_mask, "rejected_corrected": alignment.rejected_mask,
                "n_segments": alignment.n_replacements}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = [self.prepare(raw) for raw in batch.to_dict("records")]
        # rejects carry the shard columns empty: one schema for all (an empty batch included)
        return pd.DataFrame(out, columns=["status", "message", *SHARD_COLUMNS])


class ReferenceLogps:
    """Ray Data stage on an actor pool: per-answer-token log-probs of the frozen reference model."""

    def __init__(self, model_path: str):
        from rlhfv_ray.data.batching import answer_values, pair_batch, pair_token_logps

        self._pair_batch, self._pair_token_logps, self._answer_values = pair_batch, pair_token_logps, answer_values
        self.model, self.processor = load_model_and_processor(model_path)
        self.model.eval()

    @torch.inference_mode()
    def __call__(self, batch: dict):
        tensors = self._pair_batch(batch, self.processor)
        logps, chosen_mask, rejected_mask = self._pair_token_logps(self.model, tensors)
        batch["ref_chosen_logps"] = self._answer_values(logps.chosen, chosen_mask)
        batch["ref_rejected_logps"] = self._answer_values(logps.rejected, rejected_mask)
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

    from rlhfv_ray.training.trainer import init_ray

    init_ray(config.ray)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out)
    prepared = read_records(config.input).map_batches(
        PrepareRows, fn_constructor_kwargs=dict(model_path=config.model, max_pixels=config.max_pixels,
                                                max_answer_tokens=config.max_answer_tokens,
                                                min_match=config.min_match,
                                                weight_insertions=config.weight_insertions),
        batch_size=64, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1)).materialize()
    # an input with no rows yields no batches, hence no columns: count it as read 0, not an error
    empty = prepared.count() == 0
    statuses = pd.Series([], dtype=object) if empty else prepared.select_columns(["status"]).to_pandas()["status"]
    read = len(statuses)
    rejects_by_reason = dict(Counter(s for s in statuses if s != OK))
    if empty:
        rejects_frame = pd.DataFrame({"idx": pd.Series([], dtype="int64"), "reason": pd.Series([], dtype=object),
                                      "message": pd.Series([], dtype=object)})
    else:
        rejects = prepared.filter(lambda r: r["status"] != OK).select_columns(["idx", "status", "message"])
        rejects_frame = rejects.to_pandas().rename(columns={"status": "reason"})
    rejects_frame.to_parquet(out / REJECTS_NAME, index=False)

    good = prepared.filter(lambda r: r["status"] == OK).select_columns(SHARD_COLUMNS)
    sharded = read - len(rejects_frame)
    if sharded:
        # A block per reference batch, so every actor of the pool has input (a block feeds one
        # actor). Materialized before the pool starts, for the same reason as in ReferenceLogps.
        blocks = max(config.reference_actors, math.ceil(sharded / config.reference_batch_size))
        good = good.repartition(blocks).materialize()
        with_reference = good.map_batches(
            ReferenceLogps, fn_constructor_kwargs={"model_path": config.model},
            batch_size=config.reference_batch_size, compute=ray.data.ActorPoolStrategy(size=config.reference_actors),
            batch_format="numpy")
        shards_dir = out / SHARDS_SUBDIR
        with_reference.repartition(max(1, math.ceil(sharded / config.rows_per_shard))).write_parquet(str(shards_dir))
    summary = {
        "schema_version": SCHEMA_VERSION,
        "read": read,
        "sharded": sharded,
        "rejected": len(rejects_frame),
        "rejects_by_reason": rejects_by_reason,
        "rows_per_shard": config.rows_per_shard,
        "fingerprint": fingerprint(config.model),
        "min_match": config.min_match,
        "weight_insertions": config.weight_insertions,
        "input": config.input,
    }
    if summary["read"] != summary["sharded"] + summary["rejected"]:
        raise RuntimeError(f"row accounting broke: {summary}")
    (out / MANIFEST_NAME).write_text(json.dumps(summary, indent=2))
    print(f"build-shards: read {read}, sharded {sharded}, rejected {len(rejects_frame)} {rejects_by_reason}")
    return summary
