"""`rlhfv export-corrections`: the annotation database's submitted corrections as RLHF-V pairs,
the parquet `build-shards` reads. Who corrected, when, and the tagged types go in `origin_split`."""

from __future__ import annotations

import datetime
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd

from rlhfv_ray.annotation.store import Store
from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.feedback import FEEDBACK_FILE, write_rlhfv_parquet
from rlhfv_ray.data.records import RLHFV_COLUMNS, make_record

logger = logging.getLogger(__name__)
STATS_FILE = "export_stats.json"


class ExportConfig(StrictModel):
    db: str  # the annotation database (`rlhfv annotate` config's `db`)
    out: str  # directory: feedback.parquet and export_stats.json


def pair_record(submission: dict) -> dict:
    result = submission["result"]
    submitted = datetime.datetime.fromtimestamp(submission["submitted_at"], datetime.timezone.utc)
    split = {**json.loads(submission["origin_split"]), "annotator": submission["annotator"],
             "submitted_at": submitted.isoformat(),
             "task_set": submission["task_set"], "types": sorted({e["type"] for e in result["edits"]}),
             "edits": result["edits"]}
    return make_record(submission["idx"], submission["image"], submission["question"], result["chosen"],
                       submission["answer"], ds_name=submission["ds_name"], origin_dataset=submission["ds_name"],
                       origin_split=split, image_path=f"{submission['id']}.png")


def agreement(submissions: list[dict]) -> dict:
    """Tasks corrected by more than one annotator, and the share where all made the same answer."""
    by_task: dict[str, set[str]] = defaultdict(set)
    counts = Counter(s["id"] for s in submissions)
    for s in submissions:
        by_task[s["id"]].add(s["result"]["chosen"])
    shared = [task for task, n in counts.items() if n > 1]
    same = sum(len(by_task[task]) == 1 for task in shared)
    return {"tasks_with_overlap": len(shared), "identical_answers": same / len(shared) if shared else None}


def export_corrections(config: ExportConfig) -> dict:
    store = Store(config.db)
    submissions = store.submissions()
    pairs = [pair_record(s) for s in submissions if s["result"]["verdict"] == "corrected"]
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rlhfv_parquet(pd.DataFrame(pairs, columns=list(RLHFV_COLUMNS)), out / FEEDBACK_FILE)
    types = Counter(e["type"] for s in submissions for e in s["result"]["edits"])
    stats = {"submissions": len(submissions), "pairs": len(pairs), "correct": len(submissions) - len(pairs),
             "edit_types": dict(types.most_common()), "agreement": agreement(submissions),
             "progress": store.progress()}
    (out / STATS_FILE).write_text(json.dumps(stats, indent=2))
    logger.info("export-corrections: %d submissions, %d pairs, %d marked correct -> %s",
                len(submissions), len(pairs), stats["correct"], out / FEEDBACK_FILE)
    return stats
