"""Load any image-text-to-text checkpoint the way a user loads LLaVA-1.5, and fingerprint it."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

log = logging.getLogger(__name__)

# Files whose bytes define what a model computes; shards record their hash so a stale shard (built
# with another reference model or tokenizer) is refused rather than trained on.
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
# tokenizer_config.json is left out on purpose: transformers rewrites its metadata on every save,
# while tokenizer.json (vocab, merges, special tokens) is what decides the token ids.
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "chat_template.jinja", "processor_config.json",
                    "preprocessor_config.json")


def load_processor(path: str | Path):
    """The checkpoint's processor. Where it includes a video processor (Qwen-VL, LLaVA-OneVision,
    SmolVLM) and torchvision, which transformers' video processors need, is not installed (the
    CPU build of torch has no matching torchvision on PyPI), the same processor is built without
    its video part: images and text are processed exactly as before; videos are refused."""
    try:
        return AutoProcessor.from_pretrained(str(path))
    except (ImportError, AttributeError, TypeError, OSError):
        if importlib.util.find_spec("torchvision") is not None:
            raise
        processor_class = _processor_class(path)
        if processor_class is None or "video_processor" not in inspect.signature(processor_class.__init__).parameters:
            raise
    log.warning("torchvision is not installed: loading %s without its video processor", processor_class.__name__)
    return image_only_processor_class(processor_class).from_pretrained(str(path))


@functools.lru_cache(maxsize=4)
def cached_processor(path: str, files_hash: str):
    """`load_processor(path)`, loaded once per process for the same processor files
    (`processor_hash(path)`, taken by the caller, is part of the key, so changed files
    at the same path load anew). Ray Data's map tasks run in worker processes that Ray reuses, so
    their batches after the first skip the load."""
    return load_processor(path)


def _processor_class(path: str | Path):
    import transformers

    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = Path(path) / name
        if file.exists() and (found := json.loads(file.read_text()).get("processor_class")):
            return getattr(transformers, found, None)
    return None


def image_only_processor_class(processor_class):
    """`processor_class` without its video processor: not one of its parts, None where its
    constructor takes it."""
    from transformers import ProcessorMixin

    parts = processor_class.get_attributes()

    class ImageOnly(processor_class):
        @classmethod
        def get_attributes(cls):
            return [part for part in parts if part != "video_processor"]

        @classmethod
        def from_dict(cls, processor_dict, **kwargs):  # transformers >= 5.25: parts by keyword
            return super().from_dict(processor_dict, **{"video_processor": None, **kwargs})

        @classmethod
        def from_args_and_dict(cls, args, processor_dict, **kwargs):  # transformers < 5.25: parts in order
            args = list(args)
            args.insert(parts.index("video_processor"), None)
            return super().from_args_and_dict(args, processor_dict, **kwargs)

        # the family's own chat template method samples video frames with the video processor
        apply_chat_template = ProcessorMixin.apply_chat_template

    ImageOnly.__name__ = ImageOnly.__qualname__ = processor_class.__name__  # saved as the real class
    return ImageOnly


ADAPTER_CONFIG = "adapter_config.json"


def adapter_base(path: str | Path) -> str | None:
    """The base model of a PEFT adapter directory, or None if `path` is a full model."""
    config = Path(path) / ADAPTER_CONFIG
    return json.loads(config.read_text())["base_model_name_or_path"] if config.exists() else None


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", **kwargs):
    """A full checkpoint, or a LoRA adapter directory loaded on its base and merged into it (the
    same computation, without the adapter's extra matmuls at inference)."""
    base = adapter_base(path)
    model = AutoModelForImageTextToText.from_pretrained(str(base or path), dtype=dtype, **kwargs)
    if base is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return model if "quantization_config" in kwargs else model.to(device)


def load_model_and_processor(path: str | Path, dtype: torch.dtype = torch.float32,
                             device: str | torch.device = "cpu"):
    return load_model(path, dtype, device), load_processor(path)


# Hashing every byte of a 15 GB checkpoint on every run takes minutes. A safetensors file larger
# than this is hashed by its header (every tensor's name, dtype, shape and offsets) and the first
# bytes of every tensor: training changes the values of every tensor it trains, so their first
# bytes change too, while a copy or a move keeps the fingerprint.
_FULL_HASH_BYTES = 64 << 20
_TENSOR_SAMPLE_BYTES = 4096


def _hash_safetensors_sample(handle, digest) -> None:
    header_length = int.from_bytes(handle.read(8), "little")
    header = handle.read(header_length)
    digest.update(header)
    for name, entry in sorted(json.loads(header).items()):
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        handle.seek(8 + header_length + begin)
        digest.update(handle.read(min(end - begin, _TENSOR_SAMPLE_BYTES)))


def _hash_files(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            if file.suffix == ".safetensors" and file.stat().st_size > _FULL_HASH_BYTES:
                _hash_safetensors_sample(handle, digest)
                continue
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def local_checkpoint(name: str | Path) -> Path:
    """A checkpoint directory: `name` itself, or a hub id's snapshot (downloaded once into the
    Hugging Face cache; offline, the cached copy)."""
    root = Path(name)
    if root.is_dir():
        return root
    if root.is_absolute() or str(name).startswith(".") or str(name).count("/") != 1 or root.parent.is_dir():
        raise FileNotFoundError(f"model directory {root} does not exist (nor is it a hub id like org/name)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(name)))


def fingerprint(path: str | Path) -> dict[str, str]:
    """Hashes of a checkpoint's weights and of its tokenizer/processor files; an adapter's weights
    hash includes its base's, so a changed base is caught too."""
    root = local_checkpoint(path)
    base = adapter_base(root)
    if base is None:
        return _fingerprint_files(root)
    own, of_base = _fingerprint_files(root, [root / ADAPTER_CONFIG]), fingerprint(base)
    combined = hashlib.sha256((own["model"] + of_base["model"]).encode()).hexdigest()[:16]
    return {**own, "model": combined, "architecture": of_base["architecture"]}


def processor_hash(path: str | Path) -> str:
    """The hash of a checkpoint's tokenizer and processor files (`fingerprint`'s "tokenizer"),
    without reading its weights."""
    return _processor_files_hash(local_checkpoint(path))


def _processor_files_hash(root: Path) -> str:
    return _hash_files([root / name for name in _TOKENIZER_FILES if (root / name).exists()])


def _fingerprint_files(root: Path, extra_weights: Sequence[Path] = ()) -> dict[str, str]:
    weights = [f for f in root.iterdir() if f.suffix in _WEIGHT_SUFFIXES] + list(extra_weights)
    if not weights:
        raise FileNotFoundError(f"no weight files (*.safetensors, *.bin) in {root}")
    config = json.loads((root / "config.json").read_text()) if (root / "config.json").exists() else {}
    return {
        "model": _hash_files(weights),
        "tokenizer": _processor_files_hash(root),
        "architecture": ",".join(config.get("architectures", [])),
    }
