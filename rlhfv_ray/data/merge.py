"""`rlhfv merge-corrections`: human corrections of exported answers back into RLHF-V pairs.

`collect-feedback --annotator export` writes the answers awaiting a correction (`awaiting.parquet`,
each with its `id` in `origin_split`). Corrections come as parquet / JSON / JSON Lines rows with the
answer's `id` (or `idx`) and the corrected answer as `chosen` (or RLHF-V rows with `text.chosen`).
Nothing is lost: every answer ends as a pair, as correct (the correction equals the answer), or
still awaiting (written back out); a correction that matches no answer is counted and listed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.feedback import FEEDBACK_FILE, write_rlhfv_parquet
from rlhfv_ray.data.sources import Paths, expand_paths

STILL_AWAITING, UNMATCHED = "still_awaiting.parquet", "unmatched_corrections.jsonl"


class MergeConfig(StrictModel):
    answers: Paths = Field(min_length=1)  # awaiting.parquet of collect-feedback
    corrections: Paths = Field(min_length=1)
    out: str  # directory: feedback.parquet, still_awaiting.parquet, merge_stats.json


def _read(paths: list[str]) -> pd.DataFrame:
    frames = []
    for path in expand_paths(paths):
        if path.endswith(".parquet"):
            frames.append(pd.read_parquet(path))
        elif path.endswith(".json") and Path(path).read_text().lstrip().startswith("["):
            frames.append(pd.DataFrame(json.loads(Path(path).read_text())))
        else:
            frames.append(pd.read_json(path, lines=True, dtype=False))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


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
    answers = _read(config.answers).to_dict("records")
    corrections = dict(_correction(r) for r in _read(config.corrections).to_dict("records"))
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
    (out / UNMATCHED).write_text("".join(json.dumps({"id": k, "chosen": v}) + "\n" for k, v in corrections.items()))
    stats = {"answers": len(answers), "pairs": len(pairs), "correct": correct, "still_awaiting": len(still),
             "unmatched_corrections": len(corrections)}
    (out / "merge_stats.json").write_text(json.dumps(stats, indent=2))
    print(f"merge-corrections: {stats}")
    return stats
