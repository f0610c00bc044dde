"""The public RLHF-V record format, and validation of raw rows with a reason for every reject.

A record (one parquet row of the public dataset, read as-is):
    ds_name: str, image: {bytes: binary, path: str}, text: JSON str {"question", "chosen", "rejected"},
    origin_dataset: str, origin_split: JSON str, idx: int, image_path: str
JSON Lines input carries the same keys, with `image` as base64 text, a {"bytes"/"path"} object, or
a path (relative paths resolve against the JSONL file's directory).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from rlhfv_ray.data.sources import RowError
from rlhfv_ray.images import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

RLHFV_COLUMNS = ("ds_name", "image", "text", "origin_dataset", "origin_split", "idx", "image_path")


def make_record(idx: int, image_png: bytes, question: str, chosen: str, rejected: str, *, ds_name: str,
                origin_dataset: str, origin_split: dict, image_path: str) -> dict:
    return {
        "ds_name": ds_name,
        "image": {"bytes": image_png, "path": image_path},
        "text": json.dumps({"question": question, "chosen": chosen, "rejected": rejected}),
        "origin_dataset": origin_dataset,
        "origin_split": json.dumps(origin_split),
        "idx": int(idx),
        "image_path": image_path,
    }


@dataclass(frozen=True)
class PreferenceRow:
    idx: int
    image_png: bytes  # the original bytes, re-used downstream (never re-encoded)
    question: str
    chosen: str
    rejected: str
    image: Image.Image | None = None  # decoded from image_png by validation, for the processor


def parse_text(text) -> tuple[str, str, str]:
    """(question, chosen, rejected) from the `text` column; RowError names what is wrong."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise RowError("missing_text", "the text column is empty")
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8", errors="replace")
    try:
        payload = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as error:
        raise RowError("malformed_text_json", f"text is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise RowError("malformed_text_json", f"text JSON is a {type(payload).__name__}, not an object")
    fields = []
    for key in ("question", "chosen", "rejected"):
        value = payload.get(key)
        if not isinstance(value, str) or not value.strip():
            raise RowError(f"missing_{key}", f"text.{key} is missing or empty")
        fields.append(value.strip())
    question, chosen, rejected = fields
    if chosen == rejected:
        raise RowError("identical_answers", "chosen and rejected are identical: no preference to learn")
    return question, chosen, rejected


def _read_uri(uri: str) -> bytes:
    """The bytes of a file on any filesystem pyarrow reads (s3://, gs://, hdfs://, file://)."""
    import pyarrow.fs

    try:
        filesystem, path = pyarrow.fs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as error:
        raise RowError("missing_image", f"cannot read image {uri}: {error}") from None


def image_bytes(value, base_dir: str | None = None) -> bytes:
    """Raw bytes of the `image` column: a {bytes, path} struct, base64 text, raw bytes or a path."""
    if value is None:
        raise RowError("missing_image", "the image column is empty")
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return image_bytes(value["path"], base_dir)
        raise RowError("missing_image", "the image struct has neither bytes nor path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and len(value) < 4096 and ("://" in value or "://" in (base_dir or "")):
        return _read_uri(value if "://" in value else f"{base_dir.rstrip('/')}/{value}")
    if isinstance(value, str):
        candidate = Path(value) if base_dir is None or Path(value).is_absolute() else Path(base_dir) / value
        if len(value) < 4096 and candidate.suffix and candidate.is_file():
            return candidate.read_bytes()
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise RowError("missing_image", f"image is neither base64 nor an existing file: {value[:60]!r}") from None
    raise RowError("missing_image", f"unsupported image value of type {type(value).__name__}")


def checked_image(value, base_dir: str | None, max_pixels: int) -> tuple[bytes, Image.Image]:
    """(bytes, decoded image) of an `image` value (see `image_bytes`), fully decoded here, so
    truncated or hostile bytes are rejected with their reason before they reach a batch."""
    data = image_bytes(value, base_dir)
    try:
        return data, decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as error:
        raise RowError(error.reason, str(error)) from None


def validate_row(row: dict, max_pixels: int = DEFAULT_MAX_PIXELS, base_dir: str | None = None) -> PreferenceRow:
    """A usable preference row, or RowError."""
    question, chosen, rejected = parse_text(row.get("text"))
    data, image = checked_image(row.get("image"), base_dir, max_pixels)
    idx = row.get("idx")
    return PreferenceRow(int(idx) if idx is not None else -1, data, question, chosen, rejected, image)
