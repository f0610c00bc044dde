"""Image + conversation data for SFT (and for rehearsal during DDPO), in the formats users have.

- LLaVA-Instruct JSON / JSON Lines: `{"id", "image": "relative/path.jpg", "conversations": [{"from":
  "human", "value": "<image>\\nWhat is ...?"}, {"from": "gpt", "value": "..."}, ...]}`; `image`
  resolves against `image_folder` (local or a URI), or the JSON file's folder when none is given.
- Parquet with the image inline: `image` as the {bytes, path} struct of the RLHF-V / HF datasets
  layout (or raw bytes), `conversations` as a list of {from, value} structs or its JSON text.

Each row is one image and a conversation about it; the `<image>` marker must be in the first user
turn (the processor's chat template places the image there). Rows that cannot be used are
rejected with a reason (`validate_conversation`, and `too_long` after tokenizing).
"""

from __future__ import annotations

import logging
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.records import checked_image
from rlhfv_ray.data.sources import OK, Paths, RowError, account, parse_raw, read_rows, reject
from rlhfv_ray.images import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

IMAGE_MARKER = "<image>"
USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")
SFT_COLUMNS = ["id", "image", "question", "input_ids", "labels"]  # question: the first, shown with the image


class ConversationData(StrictModel):
    """Where an image + conversation dataset is and how its rows are checked."""

    data: Paths = Field(min_length=1)  # parquet / JSON / JSON Lines: a path, a glob or a list
    image_folder: str | None = None  # what relative image paths resolve against (default: the file's folder)
    max_tokens: int = Field(1024, gt=0)  # a longer conversation (image tokens included) is rejected
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)

    def conversation_data(self) -> "ConversationData":
        """These fields alone, from a config that extends them (SFT's, rehearsal's)."""
        return ConversationData.model_validate(self.model_dump(include=set(ConversationData.model_fields)))


@dataclass(frozen=True)
class ConversationRow:
    id: str
    image_png: bytes
    image: Image.Image  # decoded from image_png by validation
    turns: list[tuple[str, str]]  # (user text, assistant text), image marker removed


def _turn_list(value) -> list[dict]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise RowError("malformed_conversations", f"conversations is not valid JSON: {error}") from None
    if value is None or len(value) == 0:
        raise RowError("missing_turns", "the row has no conversations")
    turns = [dict(t) if not isinstance(t, dict) else t for t in value]  # numpy structs from parquet
    if not all(isinstance(t.get("from"), str) and isinstance(t.get("value"), str) for t in turns):
        raise RowError("malformed_conversations", "every turn needs string 'from' and 'value'")
    return turns


def first_question(value) -> str:
    """The first user turn of a `conversations` list, image marker removed (a prompt set's rows
    may end on it: nothing answered yet)."""
    turns = _turn_list(value)
    if turns[0]["from"] not in USER_ROLES:
        raise RowError("bad_roles", f"the first turn is {turns[0]['from']!r}, not the user's")
    return turns[0]["value"].replace(IMAGE_MARKER, "").strip()


def parse_turns(value) -> list[tuple[str, str]]:
    """(user, assistant) pairs of a LLaVA `conversations` list; RowError names what is wrong."""
    turns = _turn_list(value)
    if len(turns) % 2:
        raise RowError("unpaired_turns", f"{len(turns)} turns: every user turn needs an assistant answer")
    pairs = []
    for user, assistant in zip(turns[0::2], turns[1::2]):
        if user["from"] not in USER_ROLES or assistant["from"] not in ASSISTANT_ROLES:
            raise RowError("bad_roles", f"turns must alternate user/assistant, got {user['from']!r}, "
                                        f"{assistant['from']!r}")
        if not assistant["value"].strip():
            raise RowError("empty_answer", "an assistant turn is empty")
        pairs.append((user["value"], assistant["value"].strip()))
    markers = [q.count(IMAGE_MARKER) for q, _ in pairs]
    if sum(markers) == 0:
        raise RowError("no_image_marker", f"no {IMAGE_MARKER} marker in any user turn")
    if markers[0] != 1 or sum(markers) != 1:
        raise RowError("misplaced_image_marker", f"exactly one {IMAGE_MARKER}, in the first user turn, "
                                                 f"is supported (found {markers})")
    pairs[0] = (pairs[0][0].replace(IMAGE_MARKER, "").strip(), pairs[0][1])
    if not all(q.strip() for q, _ in pairs):
        raise RowError("empty_question", "a user turn has no text")
    return pairs


def validate_conversation(row: dict, image_folder: str | None, max_pixels: int) -> ConversationRow:
    """A usable row or RowError. The image is fully decoded once here, so bad bytes never reach a batch."""
    turns = parse_turns(row.get("conversations"))
    if row.get("image") is None:
        raise RowError("missing_image", "the row has no image")
    data, image = checked_image(row["image"], image_folder or row.get("base_dir"), max_pixels)
    return ConversationRow("" if row.get("id") is None else str(row["id"]), data, image, turns)


class PrepareConversations:
    """Ray Data stage on tasks: validate and tokenize each row (one output row per input row).
    `processor_hash`: see `model.io.cached_processor`."""

    def __init__(self, model_path: str, processor_hash: str, data: ConversationData):
        self.model_path, self.processor_hash, self.data = model_path, processor_hash, data

    @property
    def processor(self):
        from rlhfv_ray.model.io import cached_processor

        return cached_processor(self.model_path, self.processor_hash)

    def prepare(self, raw: dict) -> dict:
        from rlhfv_ray.model.encoding import TemplateError, encode_conversations

        row_id = raw.get("id")
        try:
            raw = parse_raw(raw)
            row_id = raw.get("id")
            row = validate_conversation(raw, self.data.image_folder, self.data.max_pixels)
            try:
                [(input_ids, labels)] = encode_conversations(self.processor, [row.image], [row.turns])
            except TemplateError as error:
                raise RowError("template_mismatch", str(error)) from error
            if len(input_ids) > self.data.max_tokens:
                raise RowError("too_long", f"{len(input_ids)} tokens (image included); max_tokens is "
                                           f"{self.data.max_tokens}")
        except RowError as error:
            return reject(row_id, error)
        return {"status": OK, "message": "", "id": row.id, "image": row.image_png, "question": row.turns[0][0],
                "input_ids": input_ids, "labels": labels}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        out = [self.prepare(raw) for raw in batch.to_dict("records")]
        return pd.DataFrame(out, columns=["status", "message", *SFT_COLUMNS])


def prepare_conversations(data: ConversationData, model_path: str, out_dir: str | Path, name: str):
    """(usable rows as a materialized Ray Dataset, summary). Rejects go to `out_dir/{name}_rejects.parquet`
    and the summary, with read = used + rejected, to `out_dir/{name}_summary.json`."""
    from rlhfv_ray.model.io import processor_hash

    if data.image_folder and "://" not in data.image_folder:  # read tasks run elsewhere
        data = data.model_copy(update={"image_folder": str(Path(data.image_folder).resolve())})
    prepare = PrepareConversations(model_path, processor_hash(model_path), data)
    prepared = read_rows(data.data, ["id", "image", "conversations"]).map_batches(
        prepare, batch_size=64, batch_format="pandas").materialize()
    summary = {**account(prepared, out_dir, f"{name}_rejects.parquet"), "data": data.data}
    (Path(out_dir) / f"{name}_summary.json").write_text(json.dumps(summary, indent=2))
    logger.info(f"{name} data: read {summary['read']}, used {summary['used']}, rejected {summary['rejected']} "
                f"{summary['rejects_by_reason']}")
    if not summary["used"]:
        raise ValueError(f"no usable rows in {data.data} (all {summary['read']} rejected: "
                         f"{summary['rejects_by_reason']}); see {Path(out_dir) / f'{name}_rejects.parquet'}")
    return prepared.filter(lambda r: r["status"] == OK).select_columns(SFT_COLUMNS).materialize(), summary
