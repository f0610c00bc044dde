"""Skip a pipeline stage whose output already exists for the same config and the same inputs (the
demo reruns fast, and a stage whose input was rebuilt runs again)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

from pydantic import BaseModel

STAGE_MARKER = "stage_done.json"
T = TypeVar("T")
logger = logging.getLogger(__name__)


def config_digest(config: BaseModel) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def _read_marker(out_dir: str | Path) -> dict | None:
    """The marker of the last successful run that wrote `out_dir`, or None when no stage wrote it."""
    marker = Path(out_dir) / STAGE_MARKER
    return json.loads(marker.read_text()) if marker.exists() else None


def recorded_seconds(out_dir: str | Path) -> float:
    """The seconds the stage that wrote `out_dir` took when it ran (also when a later run reused it,
    for which `run_stage` returns 0)."""
    marker = _read_marker(out_dir)
    if marker is None:
        raise FileNotFoundError(f"no {STAGE_MARKER} in {out_dir}: no stage has completed there")
    return marker["seconds"]


def _run_id(out_dir: str | Path) -> str:
    """The identity of the last successful run that wrote `out_dir` ("" when no stage wrote it)."""
    return (_read_marker(out_dir) or {}).get("run_id", "")


def run_stage(name: str, config: BaseModel, out_dir: str | Path, action: Callable[[], T], reuse: bool,
              log=logger.info, upstream: Sequence[str | Path] = ()) -> tuple[T | None, float]:
    """Run `action` unless `out_dir` holds a marker for the same config and the same runs of the
    `upstream` stages (the output dirs it reads); returns (result, seconds). A path in the config
    names an input, not its content: without `upstream`, an evaluation of a retrained model at the
    same path would be reused. The marker is written only after `action` succeeds, so a crashed
    stage is never reused."""
    marker = Path(out_dir) / STAGE_MARKER
    inputs = [config_digest(config)] + [_run_id(d) for d in upstream]
    # without inputs the digest is the config's alone, as markers written before `upstream` hold
    digest = hashlib.sha256("|".join(inputs).encode()).hexdigest()[:16] if upstream else inputs[0]
    if reuse and (_read_marker(out_dir) or {}).get("config_digest") == digest:
        log(f"[{name}] reusing {out_dir} (same config)")
        return None, 0.0
    marker.unlink(missing_ok=True)
    log(f"[{name}] running")
    started = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - started
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"stage": name, "config_digest": digest, "seconds": seconds,
                                  "run_id": uuid.uuid4().hex}))
    log(f"[{name}] done in {seconds:.1f}s")
    return result, seconds


def minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Progress:
    """Elapsed time and an estimate of the time left over a known list of stages. `typical` holds
    each stage's seconds on a reference machine; the estimate scales what is left by how fast this
    machine ran the stages done so far (reused stages take no time and do not count)."""

    def __init__(self, typical: Mapping[str, float]):
        self.typical = dict(typical)
        self.started = time.perf_counter()
        self.done: dict[str, float] = {}  # stage -> seconds it took here (0: reused)

    def remaining_seconds(self) -> float:
        ran = {k: s for k, s in self.done.items() if s > 0}
        speed = sum(ran.values()) / sum(self.typical[k] for k in ran) if ran else 1.0
        return speed * sum(t for k, t in self.typical.items() if k not in self.done)

    def elapsed_seconds(self) -> float:
        return time.perf_counter() - self.started

    def line(self, stage: str) -> str:
        """The line logged as `stage` starts: its place in the list, elapsed, the estimate left."""
        index = list(self.typical).index(stage) + 1
        return (f"[{index}/{len(self.typical)} {stage}] elapsed {minutes(self.elapsed_seconds())}, "
                f"about {minutes(self.remaining_seconds())} left")

    def finish(self, stage: str, seconds: float) -> None:
        self.done[stage] = seconds
