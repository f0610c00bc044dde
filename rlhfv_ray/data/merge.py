"""`rlhfv merge-corrections`: human corrections of exported answers back into RLHF-V pairs.

`collect-feedback --annotator export` writes the answers awaiting a correction (`awaiting.parquet`,
each with its `id` in `origin_split`). Corrections come as parquet / JSON / JSON Lines rows with the
answer's `id` (or `idx`) and the corrected answer as `chosen` (or RLHF-V rows with `text.chosen`).
Nothing is lost: every answer ends as a pair, as correct (the correction equals the answer), or
still awaiting (written back out); a correction that matches no answer, or a line that is not
JSON, is counted and listed with its reason.
"""

from __future__ import annotations

import logging
import json
from pathlib import Path

import pandas as pd
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.feedback import FEEDBACK_FILE, write_rlhfv_parquet
from rlhfv_ray.data.sources import Paths, read_local_rows

logger = logging.getLogger(__name__)

STILL_AWAITING, UNMATCHED = "still_awaiting.parquet", "unmatched_corrections.jsonl"


class MergeConfig(StrictModel):
    answers: Paths = Field(min_length=1)  # awaiting.parquet of collect-feedback
    corrections: Paths = Field(min_length=1)
    out: str  # directory: feedback.parquet, still_awaiting.parquet, merge_stats.json


def _answer_id(record: dict) -> str:
    split = json.loads(record["origin_split"]) if record.get("origin_split") else {}
    return str(split.get("id", record.get("idx")))


def _correction(row: dict) -> tuple[str, str | None]:
    key = row.get("id") if row.get("id") is not None else row.get("idx")
    chosen = row.get("chosen")
    if chosen is None and row.get("text") is not None:
        chosen = json.loads(row["text"]).get("chosen")
    return str(key), chosen if isinstance(chosen, str) and chosen.strip() else None


def merge_corrections(config: MergeConfig) -> dict:
    answers, answer_errors = read_local_rows(config.answers)
    if answer_errors:
        raise ValueError(f"{config.answers} is not collect-feedback output: {answer_errors[0]}")
    correction_rows, malformed = read_local_rows(config.corrections)
    corrections = dict(_correction(r) for r in correction_rows)
    pairs, still, correct = [], [], 0
    for record in answers:
        text = json.loads(record["text"])
        chosen = corrections.pop(_answer_id(record), None)
        if chosen is None:
            still.append(record)
        elif chosen.strip() == text["rejected"].strip():
            correct += 1
        else:
            pairs.append({**record, "text": json.dumps({**text, "chosen": chosen.strip()})})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    columns = list(answers[0]) if answers else []
    write_rlhfv_parquet(pd.DataFrame(pairs, columns=columns), out / FEEDBACK_FILE)
    write_rlhfv_parquet(pd.DataFrame(still, columns=columns), out / STILL_AWAITING)
    unmatched = [{"id": k, "chosen": v, "reason": "no_such_answer"} for k, v in corrections.items()]
    unmatched += [{"id": None, "chosen": None, "reason": e.reason, "message": str(e)} for e in malformed]
    (out / UNMATCHED).write_text("".join(json.dumps(u) + "\n" for u in unmatched))
    stats = {"answers": len(answers), "pairs": len(pairs), "correct": correct, "still_awaiting": len(still),
             "unmatched_corrections": len(corrections), "malformed_corrections": len(malformed)}
    (out / "merge_stats.json").write_text(json.dumps(stats, indent=2))
    logger.info(f"merge-corrections: {stats}")
    return stats
