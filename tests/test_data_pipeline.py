"""The shard pipeline on Ray Data: bad rows are rejected with reasons and nothing is lost; the
reference log-probs equal what the trainer's own forward computes."""

import base64
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from rlhfv_ray.model.pair_forward import pair_batch, pair_token_logps
from rlhfv_ray.data.pipeline import ShardConfig, build_shards
from rlhfv_ray.data.shards import MANIFEST_NAME, REJECTS_NAME, StaleShardsError, check_shards_match_model, shard_files
from factories import preference_record as good_record

pytestmark = pytest.mark.ray

def noise_png(size: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (size, size), bytes((i * 7919) % 251 for i in range(size * size * 3))).save(buffer, "PNG")
    return buffer.getvalue()


def bad_records() -> list[tuple[dict, str]]:
    rows = []
    def with_(idx, reason, **changes):
        record = good_record(idx)
        record.update(changes)
        rows.append((record, reason))
    text = lambda **kw: json.dumps({"question": "Q?", "chosen": "a b c", "rejected": "a b d", **kw})  # noqa: E731
    with_(101, "not_an_image", image={"bytes": b"GIF89a but not really", "path": None})
    with_(102, "corrupt_image", image={"bytes": noise_png(64)[:300], "path": None})  # of 652 bytes
    with_(103, "too_many_pixels", image={"bytes": noise_png(400), "path": None})
    with_(104, "missing_image", image={"bytes": None, "path": None})
    with_(105, "malformed_text_json", text="{oops")
    with_(106, "missing_question", text=json.dumps({"chosen": "a", "rejected": "b"}))
    with_(107, "missing_chosen", text=text(chosen=""))
    with_(108, "identical_answers", text=text(chosen="same words", rejected="same words"))
    with_(109, "too_long", text=text(chosen=" ".join(["red"] * 300), rejected="blue"))
    return rows


def test_bad_rows_are_rejected_with_reasons_and_counted(ray_session, tiny_model_dir, tmp_path):
    bad = bad_records()
    rows = [good_record(i) for i in range(6)] + [r for r, _ in bad]
    pd.DataFrame(rows).to_parquet(tmp_path / "in.parquet")
    # the same kinds of trouble in JSON Lines, plus a line that is not JSON at all
    lines = [json.dumps({**good_record(50), "image": base64.b64encode(good_record(50)["image"]["bytes"]).decode()}),
             "{this is not json", json.dumps({"idx": 51, "image": "nope"})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")

    config = ShardConfig(input=[str(tmp_path / "in.parquet"), str(tmp_path / "in.jsonl")],
                         model=str(tiny_model_dir), out=str(tmp_path / "shards"), rows_per_shard=4,
                         max_pixels=100_000, max_answer_tokens=64)
    summary = build_shards(config)

    assert summary["read"] == len(rows) + len(lines)
    assert summary["read"] == summary["sharded"] + summary["rejected"]
    assert summary["sharded"] == 7  # 6 parquet + 1 JSONL good rows
    expected = {reason for _, reason in bad} | {"malformed_json_line", "missing_text"}
    assert set(summary["rejects_by_reason"]) == expected
    rejects = pd.read_parquet(tmp_path / "shards" / REJECTS_NAME)
    assert len(rejects) == summary["rejected"]
    by_idx = dict(zip(rejects["id"], rejects["reason"]))
    for record, reason in bad:
        assert by_idx[str(record["idx"])] == reason
    assert all(rejects["message"].str.len() > 0)
    manifest = json.loads((tmp_path / "shards" / MANIFEST_NAME).read_text())
    assert manifest["fingerprint"]["model"] and len(shard_files(tmp_path / "shards")) == 2  # 7 rows / 4 per shard


def test_reference_logps_equal_the_trainers_forward(ray_session, tiny_model_dir, tmp_path):
    pd.DataFrame([good_record(i) for i in range(5)]).to_parquet(tmp_path / "in.parquet")
    # as many reference actors as the session has CPUs: the pipeline must still get its other work done
    config = ShardConfig(input=[str(tmp_path / "in.parquet")], model=str(tiny_model_dir), out=str(tmp_path / "s"),
                         reference_batch_size=2, reference_actors=2)
    build_shards(config)
    check_shards_match_model(tmp_path / "s", tiny_model_dir)
    shard = pd.concat(pd.read_parquet(f) for f in shard_files(tmp_path / "s")).reset_index(drop=True)
    # per-token columns are plain lists any parquet reader iterates, one length per answer
    table = pq.read_table(shard_files(tmp_path / "s"))
    for column in ("chosen_ids", "ref_chosen_logps", "chosen_corrected"):
        assert pa.types.is_list(table.schema.field(column).type), table.schema
    assert len({len(ids) for ids in shard["chosen_ids"]}) == 2  # odd records have a second sentence
    # a corrected segment was found: "red" -> "blue", one token on each side
    assert all(sum(m) == 1 for m in shard["chosen_corrected"]) and all(shard["n_segments"] == 1)

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    batch = pair_batch({c: list(shard[c]) for c in shard.columns}, processor)
    with torch.no_grad():
        logps, chosen_mask, rejected_mask = pair_token_logps(model, batch)
    # stored per answer token, placed back on the trainer's grid: equal to float tolerance
    assert torch.allclose(batch["ref_chosen_logps"][chosen_mask], logps.chosen[chosen_mask], atol=1e-5)
    assert torch.allclose(batch["ref_rejected_logps"][rejected_mask], logps.rejected[rejected_mask], atol=1e-5)
    assert torch.all(batch["ref_chosen_logps"][~chosen_mask] == 0)


def test_stale_shards_are_refused(ray_session, tiny_model_dir, tmp_path):
    pd.DataFrame([good_record(i) for i in range(2)]).to_parquet(tmp_path / "in.parquet")
    build_shards(ShardConfig(input=[str(tmp_path / "in.parquet")], model=str(tiny_model_dir), out=str(tmp_path / "s")))
    other = tmp_path / "other_model"
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(1.01)
    model.save_pretrained(other)
    AutoProcessor.from_pretrained(tiny_model_dir).save_pretrained(other)
    with pytest.raises(StaleShardsError, match="different model"):
        check_shards_match_model(tmp_path / "s", other)
