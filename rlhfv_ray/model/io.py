"""Load any image-text-to-text checkpoint the way a user loads LLaVA-1.5, and fingerprint it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

# Files whose bytes define what a model computes; shards record their hash so a stale shard (built
# with another reference model or tokenizer) is refused rather than trained on.
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# tokenizer_config.json is left out on purpose: transformers rewrites its metadata on every save,
# while tokenizer.json (vocab, merges, special tokens) is what decides the token ids.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "chat_template.jinja", "processor_config.json",
                    "preprocessor_config.json")


def load_processor(path: str | Path):
    return AutoProcessor.from_pretrained(str(path))


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    model = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype)
    return model.to(device)


def load_model_and_processor(path: str | Path, dtype: torch.dtype = torch.float32,
                             device: str | torch.device = "cpu"):
    return load_model(path, dtype, device), load_processor(path)


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint(path: str | Path) -> dict[str, str]:
    """Hashes of a checkpoint directory's weights and of its tokenizer/processor files."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"model directory {root} does not exist")
    weights = [f for f in root.iterdir() if f.suffix in _WEIGHT_SUFFIXES]
    if not weights:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {root}")
    tokenizer = [root / name for name in _TOKENIZER_FILES if (root / name).exists()]
    config = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
    return {
        "model": _hash_files(weights),
        "tokenizer": _hash_files(tokenizer),
        "architecture": ",".join(config.get("architectures", [])),
    }
