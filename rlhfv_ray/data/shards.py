"""Preference shards on disk: layout, manifest, and the stale-shard check a trainer runs first."""

from __future__ import annotations

import json
from pathlib import Path

from rlhfv_ray.model.io import fingerprint

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.parquet"
SHARDS_SUBDIR = "shards"


class StaleShardsError(RuntimeError):
    """The shards were built with another reference model or tokenizer than the one given."""


def read_manifest(shard_dir: str | Path) -> dict:
    path = Path(shard_dir) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {shard_dir} the output of build-shards?")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise StaleShardsError(f"shards in {shard_dir} have schema {manifest.get('schema_version')}, "
                               f"this code reads schema {SCHEMA_VERSION}: rebuild them")
    return manifest


def check_shards_match_model(shard_dir: str | Path, model_path: str | Path) -> dict:
    """The manifest, if the shards' reference fingerprint equals `model_path`'s; raise otherwise."""
    manifest = read_manifest(shard_dir)
    expected, actual = manifest["fingerprint"], fingerprint(model_path)
    for part in ("model", "tokenizer"):
        if expected.get(part) != actual.get(part):
            raise StaleShardsError(
                f"shards in {shard_dir} were built with a different {part} (fingerprint {expected.get(part)}) "
                f"than {model_path} ({actual.get(part)}): their reference log-probs would be wrong. "
                "Rebuild the shards with this model, or train from the model they were built with.")
    if manifest["sharded"] == 0:
        raise ValueError(f"{shard_dir} holds no usable pairs (all {manifest['read']} rows were rejected)")
    return manifest


def shard_files(shard_dir: str | Path) -> list[str]:
    files = sorted(str(p) for p in (Path(shard_dir) / SHARDS_SUBDIR).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet shards under {Path(shard_dir) / SHARDS_SUBDIR}")
    return files
