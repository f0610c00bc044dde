"""`rlhfv collect-feedback`: a model answers a prompt set, an annotator corrects the answers, and the
pairs are written in the public RLHF-V parquet format that `build-shards` reads.

    prompts (RLHF-V parquet / JSON Lines with `text.question`, answers ignored; or LLaVA
    conversations, first user turn) -> validate (rejects with reasons)
      -> generate (Ray Data actor pool, each actor loads the model once)
      -> annotate (a plug-in: `export` for humans, `scene-oracle` on the scene world, your own)

Outputs in `out`: `feedback.parquet` (pairs: the answer as `rejected`, the correction as `chosen`),
`awaiting.parquet` (answers awaiting a correction: `chosen` empty; `rlhfv merge-corrections` merges
the corrections in), `prompt_rejects.parquet`, `stats.json`. Every prompt is accounted for:
read = rejected + pairs + correct (the annotator found nothing wrong) + awaiting, counting answers.

With `samples` > 1 (and a `temperature`), each prompt gets up to that many distinct sampled
answers, as RLAIF-V samples several per prompt: a policy that already answers most prompts right
under greedy decoding still shows, when sampled, the errors it is close to making, and those are
what the next round should correct. Sampled answers get ids `<prompt id>/<k>`.
"""

from __future__ import annotations

import logging
import hashlib
import json
from collections import Counter
from pathlib import Path
from statistics import mean
from typing import Any

import pandas as pd
from pydantic import Field, model_validator

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.conversations import IMAGE_MARKER, first_question
from rlhfv_ray.data.records import RLHFV_COLUMNS, checked_image, make_record
from rlhfv_ray.data.sources import OK, Paths, RowError, account, expand_paths, parse_raw, read_rows, reject
from rlhfv_ray.images import DEFAULT_MAX_PIXELS, decode_image
from rlhfv_ray.model.compute import ComputeSettings
from rlhfv_ray.plugins import ANNOTATORS, resolve
from rlhfv_ray.ray_runtime import RayConfig

logger = logging.getLogger(__name__)

FEEDBACK_FILE, AWAITING_FILE, PROMPT_REJECTS = "feedback.parquet", "awaiting.parquet", "prompt_rejects.parquet"
PROMPT_COLUMNS = ["id", "idx", "image", "text", "conversations", "meta"]


class FeedbackSection(StrictModel):
    annotator: str = "export"  # a registered name or module:Class
    annotator_settings: dict[str, Any] = {}
    image_folder: str | None = None  # for relative image paths (default: the prompt file's folder)
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    batch_size: int = Field(64, gt=0)
    actors: int = Field(1, ge=1)
    max_new_tokens: int = Field(96, gt=0)
    samples: int = Field(1, ge=1)  # distinct answers per prompt; > 1 needs a temperature
    temperature: float = Field(0.0, ge=0.0)  # 0: greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0  # of the sampling, so a rerun collects the same answers
    compute: ComputeSettings = ComputeSettings()  # device, dtype and GPUs of each generation actor

    @model_validator(mode="after")
    def _annotator_valid(self) -> "FeedbackSection":
        make_annotator(self.annotator, self.annotator_settings)
        if self.samples > 1 and self.temperature == 0:
            raise ValueError(f"samples: {self.samples} needs a temperature > 0 (greedy decoding gives one answer)")
        return self

    def generation(self):
        from rlhfv_ray.model.generate import GenerationSettings

        return GenerationSettings(self.max_new_tokens, self.temperature, self.top_p)


class FeedbackConfig(FeedbackSection):
    model: str
    prompts: Paths = Field(min_length=1)
    out: str  # directory: feedback.parquet, awaiting.parquet, stats.json, resolved config
    ray: RayConfig = RayConfig()


def make_annotator(name: str, settings: dict):
    return resolve(ANNOTATORS, name).model_validate(settings)


def stable_idx(row_id) -> int:
    """An integer key for a row that has only a string id (pairs are drawn and limited by idx)."""
    return int(hashlib.sha1(str(row_id).encode()).hexdigest()[:12], 16)


def prompt_of(row: dict) -> str:
    """The question of a prompt-set row: `text.question` (RLHF-V), the first user turn (LLaVA) or
    `question`."""
    if row.get("text") is not None:
        text = row["text"]
        try:
            payload = json.loads(text) if isinstance(text, (str, bytes)) else text
        except json.JSONDecodeError as error:
            raise RowError("malformed_text_json", f"text is not valid JSON: {error}") from None
        question = payload.get("question") if isinstance(payload, dict) else None
    elif row.get("conversations") is not None:
        question = first_question(row["conversations"])
    else:
        question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise RowError("missing_question", "the row has no question (text.question or a first user turn)")
    return question.replace(IMAGE_MARKER, "").strip()


class PreparePrompts:
    """Ray Data stage on tasks: validate each prompt row (one output row per input row)."""

    def __init__(self, image_folder: str | None, max_pixels: int):
        self.image_folder, self.max_pixels = image_folder, max_pixels

    def prepare(self, raw: dict) -> dict:
        row_id = raw.get("id") if raw.get("id") is not None else raw.get("idx")
        try:
            raw = parse_raw(raw)
            row_id = raw.get("id") if raw.get("id") is not None else raw.get("idx")
            question = prompt_of(raw)
            data, _ = checked_image(raw.get("image"), self.image_folder or raw.get("base_dir"), self.max_pixels)
        except RowError as error:
            return reject(row_id, error)
        meta = raw.get("meta")
        return {"status": OK, "message": "", "id": "" if row_id is None else str(row_id),
                "idx": int(raw["idx"]) if raw.get("idx") is not None else stable_idx(row_id), "image": data,
                "question": question, "meta": meta if isinstance(meta, str) else json.dumps(meta or {})}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame([self.prepare(r) for r in batch.to_dict("records")],
                            columns=["status", "message", "id", "idx", "image", "question", "meta"])


class GenerateAndAnnotate:
    """Actor: answer the batch's prompts with the model, then hand the answers to the annotator."""

    def __init__(self, model_path: str, section: FeedbackSection):
        from rlhfv_ray.model.compute import load_for_inference

        self.model, self.processor = load_for_inference(model_path, section.compute)
        self.section = section
        self.settings = section.generation()
        self.annotator = make_annotator(section.annotator, section.annotator_settings)
        self.model_name = Path(model_path).name

    def answers(self, rows: list[dict]) -> list[dict]:
        """One row per distinct answer: the prompt's row, or with `samples` > 1 up to that many copies."""
        from rlhfv_ray.model.generate import generate

        images = [decode_image(r["image"]) for r in rows]
        questions = [r["question"] for r in rows]
        per_row: list[list[str]] = [[] for _ in rows]
        for k in range(self.section.samples):
            # seeded by the batch's first prompt, not by the actor's history: a rerun samples the same
            seed = stable_idx(f"{self.section.seed}/{k}/{rows[0]['idx']}") % 2**31
            for answers, generation in zip(per_row, generate(self.model, self.processor, images, questions,
                                                             self.settings, seed)):
                if generation.text not in answers:
                    answers.append(generation.text)
        if self.section.samples == 1:
            return [{**row, "answer": answers[0]} for row, answers in zip(rows, per_row)]
        return [{**row, "id": f"{row['id']}/{k}", "idx": stable_idx(f"{row['idx']}/{k}"), "answer": answer}
                for row, answers in zip(rows, per_row) for k, answer in enumerate(answers)]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = self.answers(batch.to_dict("records"))
        out = []
        for row, annotation in zip(rows, self.annotator.annotate(rows)):
            status = ("awaiting" if annotation.chosen is None else
                      "correct" if annotation.chosen.strip() == row["answer"].strip() else "pair")
            out.append({**{k: row[k] for k in ("id", "idx", "image", "question", "answer", "meta")},
                        "chosen": annotation.chosen, "status": status, "types": json.dumps(list(annotation.types)),
                        "segments": annotation.segments, "info": json.dumps(annotation.info),
                        "model": self.model_name})
        return pd.DataFrame(out)


def to_rlhfv(frame: pd.DataFrame, ds_name: str = "collected") -> pd.DataFrame:
    """RLHF-V records of annotated answers (`chosen` empty where a correction is awaited)."""
    records = [make_record(row.idx, row.image, row.question, row.chosen or "", row.answer, ds_name=ds_name,
                           origin_dataset=ds_name, image_path=f"{row.id}.png",
                           origin_split={"model": row.model, "id": row.id, "types": json.loads(row.types),
                                         "meta": row.meta})
               for row in frame.itertuples()]
    return pd.DataFrame(records, columns=list(RLHFV_COLUMNS))


def feedback_stats(frame: pd.DataFrame) -> dict:
    """Counts of what became of the answers, and the paper's statistics of the pairs (§3.1)."""
    pairs = frame[frame["status"] == "pair"]
    types = Counter(t for row in pairs["types"] for t in json.loads(row))
    total = sum(types.values())
    return {
        "responses": len(frame),
        "pairs": len(pairs),
        "correct": int((frame["status"] == "correct").sum()),
        "awaiting": int((frame["status"] == "awaiting").sum()),
        "pair_share": len(pairs) / len(frame) if len(frame) else 0.0,
        "words_per_answer": mean(len(c.split()) for c in pairs["chosen"]) if len(pairs) else 0.0,
        "corrected_segments_per_answer": float(pairs["segments"].mean()) if len(pairs) else 0.0,
        "type_share": {t: n / total for t, n in types.most_common()} if total else {},
        "paper": {"words_per_answer": 64.4, "corrected_segments_per_answer": 2.65,
                  "type_share": {"object": 0.412, "position": 0.203, "number": 0.165, "attribute": 0.100}},
    }


def write_rlhfv_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Plain parquet as the public dataset has it: without pandas metadata, which would record the
    image struct as a pyarrow-backed pandas dtype that other readers (and pandas itself) reject."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table.replace_schema_metadata(None), path)


def collect_feedback(config: FeedbackConfig) -> dict:
    import ray.data

    from rlhfv_ray.ray_runtime import init_ray

    expand_paths(config.prompts)  # a missing input is said before Ray starts
    init_ray(config.ray)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(config, out)
    folder = config.image_folder
    if folder and "://" not in folder:
        folder = str(Path(folder).resolve())
    prepared = read_rows(config.prompts, PROMPT_COLUMNS).map_batches(
        PreparePrompts(folder, config.max_pixels), batch_size=256, batch_format="pandas").materialize()
    counts = account(prepared, out, PROMPT_REJECTS)
    frame = pd.DataFrame()
    if counts["used"]:
        good = prepared.filter(lambda r: r["status"] == OK).drop_columns(["status", "message"])
        frame = good.map_batches(
            GenerateAndAnnotate,
            fn_constructor_kwargs={"model_path": config.model, "section": config},
            batch_size=config.batch_size, compute=ray.data.ActorPoolStrategy(size=config.actors),
            num_gpus=config.compute.num_gpus,
            batch_format="pandas").to_pandas()
    stats = {"prompts": counts, **(feedback_stats(frame) if len(frame) else {"responses": 0, "pairs": 0})}
    empty = pd.DataFrame(columns=["id", "idx", "image", "question", "answer", "chosen", "types", "model", "meta"])
    for name, status in ((FEEDBACK_FILE, "pair"), (AWAITING_FILE, "awaiting")):
        part = frame[frame["status"] == status] if len(frame) else empty
        write_rlhfv_parquet(to_rlhfv(part), out / name)
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    logger.info(f"collect-feedback: {counts['read']} prompts ({counts['rejected']} rejected); "
                f"{stats.get('pairs', 0)} pairs, {stats.get('correct', 0)} correct, {stats.get('awaiting', 0)} awaiting; "
                f"{stats.get('words_per_answer', 0):.1f} words and {stats.get('corrected_segments_per_answer', 0):.2f} "
                f"corrected segments per pair (paper: 64.4, 2.65)")
    return stats
