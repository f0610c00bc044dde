"""Skip a pipeline stage whose output already exists for the same config (the demo reruns fast)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable, TypeVar

from pydantic import BaseModel

STAGE_MARKER = "stage_done.json"
T = TypeVar("T")


def config_digest(config: BaseModel) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def run_stage(name: str, config: BaseModel, out_dir: str | Path, action: Callable[[], T], reuse: bool,
              log=print) -> tuple[T | None, float]:
    """Run `action` unless `out_dir` holds a marker for the same config; returns (result, seconds).
    The marker is written only after `action` succeeds, so a crashed stage is never reused."""
    marker = Path(out_dir) / STAGE_MARKER
    digest = config_digest(config)
    if reuse and marker.exists() and json.loads(marker.read_text()).get("config_digest") == digest:
        log(f"[{name}] reusing {out_dir} (same config)")
        return None, 0.0
    marker.unlink(missing_ok=True)
    log(f"[{name}] running")
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"stage": name, "config_digest": digest, "seconds": seconds}))
    log(f"[{name}] done in {seconds:.1f}s")
    return result, seconds
